"""The real INDI thermostat (indipydriver 3.1.2 served by indipyserver 0.0.6) seen through Home Assistant."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
import signal
import time

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import (
    CONF_HOST,
    CONF_PORT,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.instrument_hub.const import DOMAIN

from .helpers import (
    SOURCE_INDI,
    set_property,
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
    wait_until,
)
from .peers import ThermostatPeer, indi_thermostat_fixture

pytestmark = pytest.mark.peer
_LOGGER = logging.getLogger(__name__)

thermostat = indi_thermostat_fixture("thermostat", poll=0.2, logperiod=1.0)


async def _server_value(host: str, port: int, vector: str, member: str) -> str:
    """Ask the server itself (a second, raw client) for a member's current value."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f'<getProperties version="1.7" device="Thermostat" name="{vector}"/>'.encode()
        )
        await writer.drain()
        data = b""
        async with asyncio.timeout(5):
            while b"</defNumberVector>" not in data:
                data += await reader.read(4096)
        text = data.decode()
        start = text.index(f'<defNumber name="{member}"')
        return text[
            text.index(">", start) + 1 : text.index("</defNumber>", start)
        ].strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def _add_entry_through_the_flow(hass: HomeAssistant, host: str, port: int) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SOURCE_INDI}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: host, CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    return str(entry.entry_id)


async def test_thermostat_through_home_assistant(
    hass: HomeAssistant, thermostat: ThermostatPeer, tmp_path: Path
) -> None:
    """Add the server in the UI flow; read, write, switch logs on, receive BLOB files."""
    host, port, _process = thermostat
    hass.config.config_dir = str(tmp_path)
    entry_id = await _add_entry_through_the_flow(hass, host, port)

    temperature = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Thermostat:temperaturevector.temperature"
    )
    target = await wait_for_entity(
        hass, "number", f"{entry_id}:Thermostat:targetvector.target"
    )
    log_switch = await wait_for_entity(
        hass, "switch", f"{entry_id}:Thermostat:switchvector.switchmember"
    )
    logs = await wait_for_entity(
        hass, "event", f"{entry_id}:Thermostat:logsvector.templogs"
    )

    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    assert sorted(d.name or "" for d in devices) == sorted(
        ["Thermostat", f"INDI server {host}:{port}"]
    )

    # The temperature follows the server's pushes (every 0.2 s, ±0.2 °C).
    first = hass.states.get(temperature)
    assert first is not None
    # Both are °C, as the simulator's labels state ("Temperature (C)", "Target (C)"): a user whose unit
    # system is °F sees both in °F and sets the target in °F.
    target_state = hass.states.get(target)
    assert target_state is not None
    for shown in (first, target_state):
        assert shown.attributes["unit_of_measurement"] == "°C"
        assert shown.attributes["device_class"] == "temperature"
    await wait_for_state(hass, temperature, state_not(first.state))

    # Setting the target changes the server's value; the state is the server's reply.
    await hass.services.async_call(
        "number", "set_value", {"entity_id": target, "value": 18.5}, blocking=True
    )
    assert state_of(hass, target) == "18.5"
    assert float(await _server_value(host, port, "targetvector", "target")) == 18.5

    # An invalid target is refused by the server: its Alert message reaches the user.
    with pytest.raises(HomeAssistantError) as err:
        await set_property(
            hass, entry_id, "Thermostat", "targetvector", {"target": "abc"}
        )
    assert err.value.translation_key == "command_rejected"
    assert "Invalid target" in str(err.value)
    assert state_of(hass, target) == "18.5"

    # Logs on: the server starts pushing CSV log files as BLOBs; they are saved and fire the event.
    assert state_of(hass, log_switch) == STATE_OFF
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": log_switch}, blocking=True
    )
    assert state_of(hass, log_switch) == STATE_ON
    state = await wait_for_state(hass, logs, state_not(STATE_UNKNOWN), timeout=15)
    assert state is not None
    assert state.attributes["event_type"] == "received"
    assert state.attributes["format"] == ".csv"
    saved = Path(state.attributes["path"])
    assert saved.is_relative_to(tmp_path / "instrument_hub")
    rows = saved.read_text().splitlines()
    assert rows and all(len(row.split(",")) == 2 for row in rows)
    assert state.attributes["size"] == saved.stat().st_size

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": log_switch}, blocking=True
    )
    assert state_of(hass, log_switch) == STATE_OFF


async def test_server_killed_and_restarted(
    hass: HomeAssistant, thermostat: ThermostatPeer
) -> None:
    """Killing the server makes every entity unavailable within 2 s; a restart brings the same ones back."""
    host, port, process = thermostat
    entry_id = await _add_entry_through_the_flow(hass, host, port)
    uids = {
        "sensor": "temperaturevector.temperature",
        "number": "targetvector.target",
        "switch": "switchvector.switchmember",
        "event": "logsvector.templogs",
    }
    entity_ids = [
        await wait_for_entity(hass, platform, f"{entry_id}:Thermostat:{key}")
        for platform, key in uids.items()
    ]
    registry = er.async_get(hass)
    registered = sorted(
        e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
    )
    connected = registry.async_get_entity_id(
        "binary_sensor", DOMAIN, f"{entry_id}:_link"
    )
    assert connected is not None

    # A crash: SIGKILL to the server's own PID, the clock starting at the kill.
    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    await wait_until(
        hass,
        lambda: all(state_of(hass, e) == STATE_UNAVAILABLE for e in entity_ids),
        timeout=2.0,
    )
    unavailable_after = time.monotonic() - killed
    assert state_of(hass, connected) == STATE_OFF
    await hass.async_add_executor_job(
        process.stop
    )  # reaps the killed process (blocking: off the loop)
    assert not process.running

    restarted = time.monotonic()
    await hass.async_add_executor_job(process.restart)
    for entity_id in entity_ids:
        await wait_for_state(hass, entity_id, state_not(STATE_UNAVAILABLE), timeout=30)
    await wait_for_state(hass, connected, state_is(STATE_ON))
    back_after = time.monotonic() - restarted
    assert (
        sorted(
            e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
        )
        == registered
    )
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None and entry.state is ConfigEntryState.LOADED
    _LOGGER.info(
        "entities unavailable %.0f ms after SIGKILL; back %.1f s after the restart began",
        unavailable_after * 1000,
        back_after,
    )
