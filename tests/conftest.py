"""Fixtures shared by the Home Assistant level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from homeassistant.core import HomeAssistant
import pytest

from .indi_replay import IndiReplayServer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load the integration from custom_components in every test."""
    return


@pytest.fixture
async def indi_replay(
    hass: HomeAssistant, socket_enabled: None
) -> AsyncIterator[IndiReplayServer]:
    """Run a scripted INDI server on 127.0.0.1 (captured traffic); closed after the test.

    ``socket_enabled`` lifts the test plugin's socket block; connections stay limited to 127.0.0.1.
    """
    server = IndiReplayServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
