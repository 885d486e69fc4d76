"""The conformance suite on InMemoryEventBus."""

from collections.abc import AsyncIterator

import pytest

from eventsource_lab import InMemoryEventBus

from .suite import BusConformance


class TestInMemoryConformance(BusConformance):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[InMemoryEventBus]:
        async with InMemoryEventBus() as bus:
            yield bus
