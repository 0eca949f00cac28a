"""Fixtures shared by the Home Assistant level tests and the protocol-source tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .fake_indi import FakeIndiServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load the integration from custom_components in every test."""
    return


@pytest.fixture
async def indi_server(socket_enabled: None) -> AsyncIterator[FakeIndiServer]:
    """Serve a scripted INDI server on 127.0.0.1, closed (every connection ended) after the test.

    It needs no Home Assistant instance, so the source tests use it too. ``socket_enabled`` lifts
    the test plugin's socket block; connections stay limited to 127.0.0.1.
    """
    server = FakeIndiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
