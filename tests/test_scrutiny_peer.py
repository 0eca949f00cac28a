"""A real Scrutiny server (scrutinydebugger 0.16.0, demo device) seen through Home Assistant."""

from __future__ import annotations

import logging
import os
from pathlib import Path
import signal
import time

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import (
    CONF_HOST,
    CONF_PORT,
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.sources.scrutiny import ScrutinySource

from .helpers import (
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
    wait_until,
)
from .peers import ScrutinyPeer, scrutiny_sdk, scrutiny_server_fixture

pytestmark = pytest.mark.peer
_LOGGER = logging.getLogger(__name__)

scrutiny_peer = scrutiny_server_fixture("scrutiny_peer")

WATCHED = [
    "/Sine Wave",
    "/Counter/Value",
    "/static/main.cpp/counter_enable",
    "/rpv/x2000",
]
WRITABLE = ["/Counter/Value", "/static/main.cpp/counter_enable"]


async def _add_entry(hass: HomeAssistant, host: str, port: int) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "scrutiny"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: host, CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Scrutiny server {host}:{port}"
    found = result["description_placeholders"]
    assert found is not None and found["device"] == "EmulatedDevice"
    assert (
        int(found["watchables"]) >= 2
    )  # the RPVs; variables and aliases once the SFD is loaded
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    return str(entry.entry_id)


async def _choose_watchables(hass: HomeAssistant, entry_id: str) -> None:
    """Pick watchables in the options flow from the list the running server gave."""
    result = await hass.config_entries.options.async_init(entry_id)
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"]
    assert schema is not None
    picker = schema.schema["watchables"]
    listed = {option["value"] for option in picker.config["options"]}
    assert set(WATCHED) <= listed
    assert "/global/device/uptime" in listed
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "watchables": WATCHED,
            "writable": WRITABLE,
            "update_rate": 5,
            "blobs_enabled": True,
            "blob_folder": "scrutiny_exports",
            "blob_max_mb": 10,
            "blob_keep": 5,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()


def _target_uid(entry_id: str, channel: str) -> str:
    return f"{entry_id}:target:{channel}"


async def _sdk(hass: HomeAssistant, port: int, storage: Path, *args: str) -> str:
    return await hass.async_add_executor_job(
        lambda: scrutiny_sdk(port, *args, storage=storage)
    )


async def test_scrutiny_server_through_home_assistant(
    hass: HomeAssistant, scrutiny_peer: ScrutinyPeer, tmp_path: Path
) -> None:
    """Add the server; watch, write, lose and regain the target, run and save an acquisition."""
    host, port, _process = scrutiny_peer
    storage = tmp_path / "scrutiny"
    hass.config.config_dir = str(tmp_path)
    entry_id = await _add_entry(hass, host, port)
    firmware = await wait_for_entity(hass, "sensor", _target_uid(entry_id, "firmware"))
    await wait_for_state(hass, firmware, state_is("Scrutiny Demo Device 0.16.0"))

    registry = dr.async_get(hass)
    server = registry.async_get_device_by_identifier((DOMAIN, entry_id), entry_id)
    target = registry.async_get_device_by_identifier(
        (DOMAIN, f"{entry_id}:target"), entry_id
    )
    assert server is not None and target is not None
    assert server.model == "Scrutiny server"
    assert target.via_device_id == server.id
    assert (target.name, target.model, target.sw_version) == (
        "Scrutiny Demo Device",
        "EmulatedDevice",
        "0.16.0",
    )

    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    source = entry.runtime_data.source
    assert isinstance(source, ScrutinySource)
    # The options list what the server listed: wait for that list, not for the firmware's name.
    await wait_until(hass, lambda: set(WATCHED) <= set(source.catalog))
    await _choose_watchables(hass, entry_id)
    sine = await wait_for_entity(hass, "sensor", _target_uid(entry_id, "w./Sine Wave"))
    counter = await wait_for_entity(
        hass, "number", _target_uid(entry_id, "w./Counter/Value")
    )
    enable = await wait_for_entity(
        hass, "switch", _target_uid(entry_id, "w./static/main%2Ecpp/counter_enable")
    )
    rpv = await wait_for_entity(hass, "sensor", _target_uid(entry_id, "w./rpv/x2000"))
    datalogger = await wait_for_entity(
        hass, "sensor", _target_uid(entry_id, "datalogger.state")
    )
    completion = await wait_for_entity(
        hass, "sensor", _target_uid(entry_id, "datalogger.completion")
    )

    # Watched values follow the server's pushes.
    first = await wait_for_state(hass, sine, state_not(STATE_UNAVAILABLE))
    assert first is not None
    await wait_for_state(hass, sine, lambda s: s is not None and s.state != first.state)
    await wait_for_state(hass, rpv, lambda s: s is not None and s.state in {"1", "-1"})

    # Writes resolve on the server's completion; the entity shows the written value by then.
    await hass.services.async_call(
        "number", "set_value", {"entity_id": counter, "value": 42}, blocking=True
    )
    assert float(state_of(hass, counter)) == 42.0
    await wait_for_state(hass, enable, state_not(STATE_UNAVAILABLE))
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": enable}, blocking=True
    )
    assert state_of(hass, enable) == STATE_OFF
    response = await hass.services.async_call(
        DOMAIN,
        "write_variable",
        {"config_entry_id": entry_id, "path": "/static/main.cpp/counter", "value": "7"},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["success"] is True and response["value"] == 7.0
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN,
            "write_variable",
            {"config_entry_id": entry_id, "path": "/no/such/thing", "value": 1},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "unknown_target"
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": enable}, blocking=True
    )
    assert state_of(hass, enable) == STATE_ON

    # An acquisition run by another client moves the datalogger through its states.
    seen: list[str] = []
    ratios: list[str] = []

    @callback  # on the loop: a plain function would run in the executor and miss states
    def record(_event: Event[EventStateChangedData]) -> None:
        for entity_id, values in ((datalogger, seen), (completion, ratios)):
            state = state_of(hass, entity_id)
            if not values or values[-1] != state:
                values.append(state)

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    complete = await wait_for_entity(
        hass, "event", f"{entry_id}:event.acquisition_complete"
    )
    try:
        answer = await _sdk(hass, port, storage, "acquire", "/Sine Wave")
        await wait_for_state(hass, complete, state_not("unknown"))
        await wait_for_state(hass, datalogger, state_is("standby"))
    finally:
        unsubscribe()
    assert "acquiring" in seen and seen[-1] == "standby"
    assert any(ratio not in {"unknown", "0.0", "0"} for ratio in ratios)
    reference = hass.states.get(complete)
    assert reference is not None
    assert reference.attributes["reference_id"] in answer

    saved = await hass.services.async_call(
        DOMAIN,
        "save_acquisition",
        {"config_entry_id": entry_id},
        blocking=True,
        return_response=True,
    )
    assert saved is not None
    path = Path(str(saved["path"]))
    assert path.is_relative_to(tmp_path / "scrutiny_exports")
    rows = path.read_text().splitlines()
    assert rows[0] == "Time (ms),signal" or rows[0].endswith(",signal")
    assert len(rows) > 100
    assert saved["reference_id"] == reference.attributes["reference_id"]

    # Demo off: the target is gone (its entities unavailable), the device-gone event fires.
    gone = await wait_for_entity(hass, "event", f"{entry_id}:event.device_gone")
    ready = await wait_for_entity(hass, "event", f"{entry_id}:event.device_ready")
    session = hass.states.get(ready)
    assert session is not None
    old_session = session.attributes["session_id"]
    await _sdk(hass, port, storage, "demo", "off")
    await wait_for_state(hass, gone, state_not("unknown"))
    gone_state = hass.states.get(gone)
    assert gone_state is not None and gone_state.attributes["session_id"] == old_session
    for entity_id in (sine, counter, enable, datalogger, firmware):
        await wait_for_state(hass, entity_id, state_is(STATE_UNAVAILABLE))
    sfd_unloaded = await wait_for_entity(
        hass, "event", f"{entry_id}:event.sfd_unloaded"
    )
    await wait_for_state(hass, sfd_unloaded, state_not("unknown"))

    # On again: the same entities are back, with a new session.
    registered = sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry_id)
    )
    await _sdk(hass, port, storage, "demo", "on")
    for entity_id in (sine, counter, enable, datalogger, firmware):
        await wait_for_state(hass, entity_id, state_not(STATE_UNAVAILABLE))
    new_ready = await wait_for_state(
        hass,
        ready,
        lambda s: s is not None and s.attributes.get("session_id") != old_session,
    )
    assert new_ready is not None and new_ready.attributes["session_id"]
    await wait_for_state(hass, firmware, state_is("Scrutiny Demo Device 0.16.0"))
    assert (
        sorted(
            e.entity_id
            for e in er.async_entries_for_config_entry(er.async_get(hass), entry_id)
        )
        == registered
    )


async def test_scrutiny_server_killed_and_restarted(
    hass: HomeAssistant, scrutiny_peer: ScrutinyPeer, tmp_path: Path
) -> None:
    """SIGKILL: Connected off and entities unavailable within 2 s; a restart recovers without reload."""
    host, port, process = scrutiny_peer
    storage = tmp_path / "scrutiny"
    entry_id = await _add_entry(hass, host, port)
    firmware = await wait_for_entity(hass, "sensor", _target_uid(entry_id, "firmware"))
    datalogger = await wait_for_entity(
        hass, "sensor", _target_uid(entry_id, "datalogger.state")
    )
    await wait_for_state(hass, datalogger, state_is("standby"))
    registry = er.async_get(hass)
    connected = registry.async_get_entity_id(
        "binary_sensor", DOMAIN, f"{entry_id}:_link"
    )
    assert connected is not None and state_of(hass, connected) == STATE_ON
    registered = sorted(
        e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
    )

    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    await wait_until(
        hass,
        lambda: state_of(hass, connected) == STATE_OFF
        and all(state_of(hass, e) == STATE_UNAVAILABLE for e in (firmware, datalogger)),
        timeout=2.0,
    )
    unavailable_after = time.monotonic() - killed
    await hass.async_add_executor_job(process.stop)

    restarted = time.monotonic()
    await hass.async_add_executor_job(process.restart)
    await wait_for_state(hass, connected, state_is(STATE_ON), timeout=30)
    await _sdk(hass, port, storage, "demo", "on")
    await wait_for_state(hass, datalogger, state_is("standby"), timeout=30)
    await wait_for_state(hass, firmware, state_is("Scrutiny Demo Device 0.16.0"))
    back_after = time.monotonic() - restarted
    assert sorted(
        e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
    ) == (registered)
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None and entry.state is ConfigEntryState.LOADED
    _LOGGER.info(
        "Scrutiny: unavailable %.0f ms after SIGKILL; back %.1f s after the restart began",
        unavailable_after * 1000,
        back_after,
    )
