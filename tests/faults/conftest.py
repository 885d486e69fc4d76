"""The fault suite's kit: one real broker bus of each kind, and the raw client beside it.

A scenario takes ``kit`` and runs once per broker bus (``kit.kind`` says which). ``kit.make()``
builds buses in a namespace of the test's own (stream prefix, exchange, topic prefix and group
names), all shut down at the end; ``kit.inject(bus, body, event_type)`` puts raw bytes straight
onto the stream, queue or topic ``bus`` consumes, as a hostile or broken producer would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from eventsource_lab.brokers import Broker
from eventsource_lab.bus import BrokerEventBus
from tests.faults._support import KINDS, inject_many, own_broker
from tests.support.scenarios import bus_factory


@dataclass
class Kit:
    """What a fault scenario needs of one broker bus kind."""

    kind: str
    broker: Broker
    make: Callable[..., BrokerEventBus]
    inject: Callable[[BrokerEventBus, bytes, str | None], Awaitable[None]]


@pytest.fixture(params=KINDS)
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    kind: str = request.param
    broker: Broker = request.getfixturevalue(f"{kind}_broker")
    async with bus_factory(broker) as make:
        yield Kit(kind, broker, make, _inject)


async def _inject(bus: BrokerEventBus, body: bytes, event_type: str | None) -> None:
    await inject_many(bus, [(body, None if event_type is None else event_type.encode())])


@pytest.fixture(scope="module", params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker of the module's own, once per kind, that its tests may stop, pause and restart
    (never the session's, nor one from a URL); each test leaves it running."""
    with own_broker(request.param) as started:
        yield started
