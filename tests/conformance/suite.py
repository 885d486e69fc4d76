"""The conformance suite: every behaviour of :mod:`eventsource_lab.conformance`, as pytest tests.

A bus's test module subclasses :class:`BusConformance` and provides an async ``bus`` fixture: a
bus that is connected and delivering (consuming, for a broker bus). The same checks feed
``python -m eventsource_lab conformance``, the matrix across buses.
"""

from __future__ import annotations

import pytest

from eventsource_lab.bus import EventBus
from eventsource_lab.conformance import BEHAVIOURS, Behaviour


class BusConformance:
    """Subclass in a ``test_*.py`` module and define an async ``bus`` fixture."""

    @pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda b: b.name)
    async def test_behaviour(self, bus: EventBus, behaviour: Behaviour) -> None:
        await behaviour.check(bus)
