"""Real hololinked 0.4.2 Things (simulators/hololinked_things.py) seen through Home Assistant.

Everything goes through the config flow and is checked where a user looks: states, attributes,
availability, the registries, action results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
from pathlib import Path
import time
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_UNIT_OF_MEASUREMENT,
    CONF_API_KEY,
    CONF_PASSWORD,
    CONF_URL,
    CONF_USERNAME,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.instrument_hub.const import DOMAIN

from .helpers import state_is, state_not, state_of, wait_for_state, wait_until
from .hololinked_peer import (
    PASSWORD_ENV,
    ThingPeer,
    hololinked_fixture,
    hololinked_thing,
)

pytestmark = pytest.mark.peer

meter = hololinked_fixture("meter", "maestro", gap=0.2, nan_every=4, autostart=False)
stage = hololinked_fixture("stage", "bench")
PASSWORD = "c0rrect-h0rse"
locked = hololinked_fixture(
    "locked", "maestro", gap=0.5, basic_user="lab", password=PASSWORD
)

ENERGY = "sensor.energy_meter_energy"
DATA_POINT = "event.energy_meter_data_point_event"
STATISTICS = "event.energy_meter_statistics_event"
WAVELENGTH = "number.energy_meter_wavelength"
KILL_BOUND = 5.0  # seconds: the issue's bound for "unavailable" after SIGKILL


async def _add(hass: HomeAssistant, url: str, **credentials: str) -> ConfigEntry:
    """Add the Thing through the config flow as a user does; it must load."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "hololinked"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: url, **credentials}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def _press(hass: HomeAssistant, entity_id: str) -> None:
    await hass.services.async_call(
        "button", "press", {"entity_id": entity_id}, blocking=True
    )


async def _invoke(
    hass: HomeAssistant, entry: ConfigEntry, action: str, data: object = None
) -> Any:
    service_data: dict[str, object] = {
        "config_entry_id": entry.entry_id,
        "action": action,
    }
    if data is not None:
        service_data["input"] = data
    response = await hass.services.async_call(
        DOMAIN, "invoke_action", service_data, blocking=True, return_response=True
    )
    assert response is not None
    return response["output"]


class StateLog:
    """Every state an entity takes (state_changed events), in order."""

    def __init__(self, hass: HomeAssistant, entity_id: str) -> None:
        """Start listening."""
        self.states: list[str] = []
        self.attributes: list[dict[str, Any]] = []

        @callback
        def changed(event: Event[EventStateChangedData]) -> None:
            new = event.data["new_state"]
            if new is not None:
                self.states.append(new.state)
                self.attributes.append(dict(new.attributes))

        self.close: Callable[[], None] = async_track_state_change_event(
            hass, [entity_id], changed
        )


def _number(state: str) -> float | None:
    return None if state == STATE_UNKNOWN else float(state)


def _ha_float(value: float | None) -> float | None:
    """Return a float as its sensor state reads back (Home Assistant keeps 15 digits)."""
    return None if value is None else float(f"{value:.15g}")


def _dedup(values: list[Any]) -> list[Any]:
    """Drop consecutive repeats (an unchanged state writes no state_changed)."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


async def test_the_meter_pushes_exactly_what_the_thing_pushed(
    hass: HomeAssistant, meter: ThingPeer, device_registry: dr.DeviceRegistry
) -> None:
    """Sensors from the events' fields, one event entity fire per data point, values as pushed."""
    entry = await _add(hass, meter.url)
    assert entry.title == f"GentecMaestroEnergyMeter (127.0.0.1:{meter.port})"
    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, f"{entry.entry_id}:energy-meter"), entry.entry_id
    )
    assert device is not None
    assert (device.name, device.model, device.manufacturer) == (
        "Energy meter",
        "GentecMaestroEnergyMeter",
        "hololinked",
    )
    hub_device = device_registry.async_get_device_by_identifier(
        (DOMAIN, entry.entry_id), entry.entry_id
    )
    assert hub_device is not None and device.via_device_id == hub_device.id
    state = hass.states.get(ENERGY)
    assert state is not None and state.state == STATE_UNKNOWN
    assert state.attributes[ATTR_UNIT_OF_MEASUREMENT] == "J"
    assert state.attributes[ATTR_DEVICE_CLASS] == "energy"
    assert (
        "state_class" not in state.attributes
    )  # Home Assistant allows no measurement for energy
    for entity_id in (
        "sensor.energy_meter_min",
        "sensor.energy_meter_max",
        "sensor.energy_meter_avg",
    ):
        assert state_of(hass, entity_id) == STATE_UNKNOWN
    assert state_of(hass, "sensor.energy_meter_pulse_count") == STATE_UNKNOWN
    assert state_of(hass, "binary_sensor.energy_meter_acquiring") == STATE_OFF
    assert hass.states.get("button.energy_meter_exit") is None
    assert hass.states.get("button.energy_meter_ping") is None

    energies = StateLog(hass, ENERGY)
    fired = StateLog(hass, DATA_POINT)
    try:
        await _press(hass, "button.energy_meter_start_acquisition")
        await wait_for_state(
            hass, "binary_sensor.energy_meter_acquiring", state_is(STATE_ON)
        )
        await wait_until(hass, lambda: len(fired.states) >= 9, timeout=15)
        await _press(hass, "button.energy_meter_stop_acquisition")
        # Once stop_acquisition returned the Thing pushes nothing more: every push must arrive.
        pushed: list[dict[str, Any]] = meter.pushed("data_point_event")  # type: ignore[assignment]
        await wait_until(hass, lambda: len(fired.states) == len(pushed), timeout=10)
    finally:
        energies.close()
        fired.close()
    assert len(pushed) >= 9
    # One fire per data point, with the whole payload (null kept: no data for that pulse).
    assert [
        {key: attributes[key] for key in ("timestamp", "energy")}
        for attributes in fired.attributes
    ] == pushed
    assert {a["event_type"] for a in fired.attributes} == {"data_point_event"}
    # A sensor's state is the value as Home Assistant writes floats (15 significant digits).
    assert _dedup([_number(s) for s in energies.states]) == _dedup(
        [_ha_float(p["energy"]) for p in pushed]
    )
    assert None in [p["energy"] for p in pushed]  # every fourth pulse: unknown, never 0
    stats: dict[str, Any] = meter.pushed("statistics_event")[-1]  # type: ignore[assignment]
    await wait_for_state(
        hass,
        "sensor.energy_meter_pulse_count",
        lambda s: s is not None and _number(s.state) == stats["pulse_count"],
    )
    for key in ("min", "max", "avg"):
        assert _number(state_of(hass, f"sensor.energy_meter_{key}")) == _ha_float(
            stats[key]
        )
    assert state_of(hass, "binary_sensor.energy_meter_acquiring") == STATE_OFF


async def test_writes_actions_and_the_things_errors(
    hass: HomeAssistant, meter: ThingPeer
) -> None:
    """Number and switch round-trip; the Thing's own refusal surfaces; actions answer."""
    entry = await _add(hass, meter.url)
    assert state_of(hass, WAVELENGTH) == "1064.0"
    await hass.services.async_call(
        "number", "set_value", {"entity_id": WAVELENGTH, "value": 800}, blocking=True
    )
    assert state_of(hass, WAVELENGTH) == "800.0"  # read back before the call returned
    # Inside the TD's bounds (190..25000) but outside what the detector head takes: the Thing says no.
    with pytest.raises(
        HomeAssistantError, match="outside the detector head's range"
    ) as err:
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": WAVELENGTH, "value": 3000},
            blocking=True,
        )
    assert err.value.translation_key == "command_rejected"
    assert state_of(hass, WAVELENGTH) == "800.0"
    # Outside the TD's bounds: Home Assistant refuses before sending.
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": WAVELENGTH, "value": 30000},
            blocking=True,
        )
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.energy_meter_measurement_gap", "value": 0.3},
        blocking=True,
    )
    assert state_of(hass, "number.energy_meter_measurement_gap") == "0.3"
    switch = "switch.energy_meter_statistics_enabled"
    assert state_of(hass, switch) == STATE_ON
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": switch}, blocking=True
    )
    assert state_of(hass, switch) == STATE_OFF
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": switch}, blocking=True
    )
    assert state_of(hass, switch) == STATE_ON

    assert (
        await _invoke(hass, entry, "set_trigger_level", {"level": 15.4}) == "*STL15.4"
    )
    await wait_for_state(hass, "sensor.energy_meter_trigger_level", state_is("15.4"))
    with pytest.raises(HomeAssistantError, match=r"outside 0.1-99.9"):
        await _invoke(hass, entry, "set_trigger_level", {"level": 150})
    with pytest.raises(ServiceValidationError):
        await _invoke(hass, entry, "set_trigger_level", {"lvl": 1})
    with pytest.raises(ServiceValidationError):
        await _invoke(hass, entry, "no_such_action")
    await _press(hass, "button.energy_meter_reset_statistics")
    assert await _invoke(hass, entry, "reset_statistics") is None


async def test_killed_thing_is_unavailable_and_comes_back(
    hass: HomeAssistant, meter: ThingPeer, entity_registry: er.EntityRegistry
) -> None:
    """SIGKILL: unavailable within 5 s (Connected off); restarted: back, same ids, no reload."""
    entry = await _add(hass, meter.url)
    hub = entry.runtime_data
    entities = er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    entity_ids = sorted(e.entity_id for e in entities)
    connected = next(e for e in entity_ids if e.endswith("_connected"))
    assert state_of(hass, connected) == STATE_ON
    killed = time.monotonic()
    meter.kill()
    await wait_for_state(
        hass, WAVELENGTH, state_is(STATE_UNAVAILABLE), timeout=KILL_BOUND
    )
    unavailable_after = time.monotonic() - killed
    logging.getLogger(__name__).info(
        "unavailable %.3f s after SIGKILL", unavailable_after
    )
    assert unavailable_after < KILL_BOUND
    assert state_of(hass, ENERGY) == STATE_UNAVAILABLE
    assert state_of(hass, connected) == STATE_OFF

    restarted = time.monotonic()
    meter.restart()
    await wait_for_state(hass, WAVELENGTH, state_not(STATE_UNAVAILABLE), timeout=30)
    logging.getLogger(__name__).info(
        "available %.3f s after the restart was started", time.monotonic() - restarted
    )
    assert state_of(hass, WAVELENGTH) == "1064.0"
    assert state_of(hass, connected) == STATE_ON
    assert entry.runtime_data is hub  # no reload
    after = sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    )
    assert after == entity_ids  # same entity ids, no duplicates
    # Pushes flow again.
    fired = StateLog(hass, DATA_POINT)
    try:
        await _press(hass, "button.energy_meter_start_acquisition")
        await wait_until(hass, lambda: len(fired.states) >= 2)
    finally:
        fired.close()


async def test_a_different_thing_maps_generically(
    hass: HomeAssistant, stage: ThingPeer
) -> None:
    """Other events (object and scalar), an enum, texts, integers: every type maps by the TD."""
    entry = await _add(hass, stage.url)
    assert entry.title == f"ThermalStage (127.0.0.1:{stage.port})"
    expected = {
        "number.thermal_stage_setpoint": "25.0",
        "select.thermal_stage_ramp_mode": "linear",
        "text.thermal_stage_operator": "",
        "sensor.thermal_stage_sample_id": "S-0042",
        "sensor.thermal_stage_heater_power": "0.0",
        "binary_sensor.thermal_stage_interlock": STATE_OFF,
        "switch.thermal_stage_enabled": STATE_ON,
        "number.thermal_stage_cycles": "3",
        "sensor.thermal_stage_temperature": STATE_UNKNOWN,
        "binary_sensor.thermal_stage_heater_on": STATE_UNKNOWN,
        "sensor.thermal_stage_phase": STATE_UNKNOWN,
        "sensor.thermal_stage_alarm": STATE_UNKNOWN,
        "event.thermal_stage_temperature_event": STATE_UNKNOWN,
        "event.thermal_stage_alarm_event": STATE_UNKNOWN,
        "button.thermal_stage_abort": STATE_UNKNOWN,
    }
    assert {entity_id: state_of(hass, entity_id) for entity_id in expected} == expected
    phase = hass.states.get("sensor.thermal_stage_phase")
    assert phase is not None and phase.attributes["options"] == ["ramp", "hold", "cool"]
    power = hass.states.get("sensor.thermal_stage_heater_power")
    assert power is not None and power.attributes[ATTR_DEVICE_CLASS] == "power"
    temperature = hass.states.get("sensor.thermal_stage_temperature")
    assert (
        temperature is not None
        and temperature.attributes[ATTR_UNIT_OF_MEASUREMENT] == "°C"
    )
    assert hass.states.get("number.thermal_stage_cycles").attributes["step"] == 1  # type: ignore[union-attr]

    await _invoke(
        hass,
        entry,
        "emit_reading",
        {"temperature": 42.5, "heater_on": True, "phase": "hold"},
    )
    await wait_for_state(hass, "sensor.thermal_stage_temperature", state_is("42.5"))
    assert state_of(hass, "binary_sensor.thermal_stage_heater_on") == STATE_ON
    assert state_of(hass, "sensor.thermal_stage_phase") == "hold"
    event = hass.states.get("event.thermal_stage_temperature_event")
    assert event is not None and event.attributes["temperature"] == 42.5
    await _invoke(hass, entry, "raise_alarm", {"text": "door open"})
    await wait_for_state(hass, "sensor.thermal_stage_alarm", state_is("door open"))
    alarm = hass.states.get("event.thermal_stage_alarm_event")
    assert alarm is not None and alarm.attributes["value"] == "door open"

    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": "select.thermal_stage_ramp_mode", "option": "step"},
        blocking=True,
    )
    assert state_of(hass, "select.thermal_stage_ramp_mode") == "step"
    await hass.services.async_call(
        "text",
        "set_value",
        {"entity_id": "text.thermal_stage_operator", "value": "Ada"},
        blocking=True,
    )
    assert state_of(hass, "text.thermal_stage_operator") == "Ada"
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.thermal_stage_cycles", "value": 7},
        blocking=True,
    )
    assert state_of(hass, "number.thermal_stage_cycles") == "7"
    await hass.services.async_call(
        "switch",
        "turn_off",
        {"entity_id": "switch.thermal_stage_enabled"},
        blocking=True,
    )
    assert state_of(hass, "switch.thermal_stage_enabled") == STATE_OFF
    output = await _invoke(hass, entry, "ramp_to", {"target": 85, "rate": 2})
    assert output == {"target": 85.0, "eta_s": 1800.0}
    await wait_for_state(hass, "sensor.thermal_stage_heater_power", state_is("12.5"))
    await _press(hass, "button.thermal_stage_abort")
    await wait_for_state(hass, "sensor.thermal_stage_heater_power", state_is("0.0"))


async def test_basic_auth_through_the_flow_and_no_password_anywhere(
    hass: HomeAssistant,
    locked: ThingPeer,
    hass_client: ClientSessionGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Wrong password: invalid_auth; right: it works; the password is in no log, not in diagnostics."""
    caplog.set_level(logging.DEBUG)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "hololinked"}
    )
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: locked.url}
    )
    assert result["errors"] == {"base": "auth_required"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: locked.url, CONF_USERNAME: "lab", CONF_PASSWORD: "wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: locked.url, CONF_USERNAME: "lab", CONF_PASSWORD: PASSWORD}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    await wait_until(hass, lambda: len(locked.pushed("data_point_event")) > 0)
    await wait_for_state(
        hass, ENERGY, lambda s: s is not None and s.state != STATE_UNKNOWN
    )
    diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
        hass, hass_client, entry
    )
    assert diagnostics["entry"]["data"][CONF_PASSWORD] == "**REDACTED**"
    assert diagnostics["entry"]["data"][CONF_URL] == "**REDACTED**"
    assert diagnostics["hub"]["source"]["url"] == "**REDACTED**"
    assert diagnostics["hub"]["source"]["credentials"] == "Credentials(basic)"
    assert PASSWORD not in str(diagnostics)
    assert str(locked.port) not in str(diagnostics)
    assert PASSWORD not in caplog.text
    assert "c0rrect" not in caplog.text


async def test_new_password_on_the_thing_starts_reauthentication(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> None:
    """The Thing restarted with another password: unavailable, and Home Assistant asks for it."""
    asked = asyncio.Event()
    start_reauth = ConfigEntry.async_start_reauth

    def spy(entry: ConfigEntry, *args: Any, **kwargs: Any) -> None:
        start_reauth(entry, *args, **kwargs)
        asked.set()

    with (
        hololinked_thing(
            "maestro", basic_user="lab", password="first", log_dir=tmp_path
        ) as thing,
        patch.object(ConfigEntry, "async_start_reauth", spy),
    ):
        entry = await _add(hass, thing.url, username="lab", password="first")
        thing.kill()
        await wait_for_state(
            hass, WAVELENGTH, state_is(STATE_UNAVAILABLE), timeout=KILL_BOUND
        )
        thing.restart(env={PASSWORD_ENV: "second"})
        async with asyncio.timeout(30):
            await asked.wait()
        await hass.async_block_till_done()
        flows = [
            flow
            for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            if flow["context"]["source"] == "reauth"
        ]
        assert len(flows) == 1
        result = await hass.config_entries.flow.async_configure(
            flows[0]["flow_id"], {CONF_USERNAME: "lab", CONF_PASSWORD: "second"}
        )
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert entry.data[CONF_PASSWORD] == "second"
        await wait_for_state(hass, WAVELENGTH, state_is("1064.0"))


async def test_api_key_through_the_flow(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> None:
    """The API key scheme of hololinked (X-API-Key): missing, wrong, right."""
    key = "wotdat-k3y01.AbCdEf0123456789xyz_key"
    with hololinked_thing("maestro", gap=0.5, api_key=key, log_dir=tmp_path) as thing:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "hololinked"}
        )
        flow_id = result["flow_id"]
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: thing.url}
        )
        assert result["errors"] == {"base": "auth_required"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: thing.url, CONF_API_KEY: "wotdat-k3y01.wrong"}
        )
        assert result["errors"] == {"base": "invalid_auth"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: thing.url, CONF_API_KEY: key}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        await wait_for_state(
            hass, ENERGY, lambda s: s is not None and s.state != STATE_UNKNOWN
        )
