"""Fixtures for the protocol-source tests: pure asyncio, no Home Assistant instance.

The scripted INDI server is the package-wide ``indi_server`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from custom_components.instrument_hub.events import Event
from tests.fake_indi import WAIT_SECONDS


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the package-wide autouse fixture: source tests need no Home Assistant instance."""


class EventRecorder:
    """An event sink that records events and lets a test wait for one."""

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[Event] = []
        self._new = asyncio.Event()

    def __call__(self, event: Event) -> None:
        """Record one event (the sink interface)."""
        self.events.append(event)
        self._new.set()

    def of_type[T](self, kind: type[T]) -> list[T]:
        """Return the recorded events of one type, in order."""
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for[T](
        self,
        kind: type[T],
        predicate: Callable[[T], bool] = lambda _event: True,
        count: int = 1,
    ) -> T:
        """Wait (bounded) until ``count`` events of ``kind`` match ``predicate``; return the last."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                found = [event for event in self.of_type(kind) if predicate(event)]
                if len(found) >= count:
                    return found[count - 1]
                self._new.clear()
                await self._new.wait()


@pytest.fixture
def recorder() -> EventRecorder:
    """Return an event sink recording everything a source emits."""
    return EventRecorder()


@pytest.fixture
async def session(socket_enabled: None) -> AsyncIterator[aiohttp.ClientSession]:
    """Give the test an aiohttp session of its own (Home Assistant passes its shared one)."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session
