"""The Maestro emulator for the tests (in-process, on the test's loop) and a flow helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_DEVICE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest

from custom_components.instrument_hub.const import DOMAIN
from simulators.gentec_maestro import MaestroEmulator, MaestroMeter

SOURCE_GENTEC = "gentec"


@pytest.fixture
async def maestro(tmp_path: Path) -> AsyncIterator[MaestroEmulator]:
    """Serve a MAESTRO with an energy head on a pty behind a by-id-like link (pulses: see start_pulses)."""
    emulator = MaestroEmulator(
        rate=10.0, link=tmp_path / "usb-Gentec-EO_MAESTRO-if00", pulses=False
    )
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def maestro_tcp(socket_enabled: None) -> AsyncIterator[MaestroEmulator]:
    """Serve a MAESTRO as ser2net would: TCP on 127.0.0.1 only (socket:// URL), no pulses yet."""
    emulator = MaestroEmulator(rate=10.0, pty=False, tcp=True, pulses=False)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


def energy_meter(**changes: object) -> MaestroMeter:
    """Return a meter with changes (legacy replies, the manual's spacing, another model)."""
    return MaestroMeter(**changes)  # type: ignore[arg-type]


async def add_gentec_entry(hass: HomeAssistant, port: str) -> str:
    """Add an entry through the menu and the kind's form as a user would; return its id."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SOURCE_GENTEC}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    entry_id: str = result["result"].entry_id
    return entry_id
