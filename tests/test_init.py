"""Setup, unload, actions, device removal and diagnostics of an INDI entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.instrument_hub import async_remove_config_entry_device
from custom_components.instrument_hub.const import DOMAIN

from .fake_indi import FakeIndiServer, lines_matching, server_lines
from .helpers import (
    indi_entry,
    set_property,
    setup_indi_entry,
    state_is,
    state_of,
    wait_for_entity,
    wait_for_state,
)
from .peers import free_port

THERMO = server_lines("capture_thermo.txt")
THERMO_DEFS = lines_matching(THERMO, r"^<def")[:4]
TARGET_OK = (
    '<setNumberVector device="Thermostat" name="targetvector" state="Ok" timeout="0">'
    '<oneNumber name="target">18.50</oneNumber></setNumberVector>'
)
TARGET_ALERT = (
    '<setNumberVector device="Thermostat" name="targetvector" state="Alert" timeout="0" '
    'message="Invalid target"><oneNumber name="target">18.50</oneNumber></setNumberVector>'
)


@pytest.mark.usefixtures("socket_enabled")
async def test_server_down_means_setup_retry(hass: HomeAssistant) -> None:
    """An unreachable server leaves the entry in setup-retry, with no entity created."""
    entry = indi_entry(hass, free_port())
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert hass.states.async_entity_ids(DOMAIN) == []


async def test_unload_closes_the_connection(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Unloading removes the entities' availability and closes the socket (server sees EOF)."""
    indi_server.definitions = THERMO_DEFS
    entry = await setup_indi_entry(hass, indi_server)
    temperature = await wait_for_entity(
        hass, "sensor", f"{entry.entry_id}:Thermostat:temperaturevector.temperature"
    )
    assert len(indi_server.connections) == 1

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert state_of(hass, temperature) == "unavailable"
    await (
        indi_server.drop_clients()
    )  # returns only once every client handler saw its connection end


async def test_number_write_confirmed_and_alert_raised(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A target the server accepts shows its reply; an Alert raises the server's message."""
    indi_server.definitions = THERMO_DEFS
    replies = [TARGET_OK, TARGET_ALERT]
    indi_server.reply_rules.append(
        lambda data: replies.pop(0).encode()
        if b"<newNumberVector" in data and replies
        else None
    )
    entry = await setup_indi_entry(hass, indi_server)
    target = await wait_for_entity(
        hass, "number", f"{entry.entry_id}:Thermostat:targetvector.target"
    )

    await hass.services.async_call(
        "number", "set_value", {"entity_id": target, "value": 18.5}, blocking=True
    )
    assert state_of(hass, target) == "18.5"
    assert b'<oneNumber name="target">18.5</oneNumber>' in indi_server.received

    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            "number", "set_value", {"entity_id": target, "value": 20}, blocking=True
        )
    assert err.value.translation_key == "command_rejected"
    assert "Invalid target" in str(err.value)


async def test_set_property_action(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The raw action writes a vector and responds with the server's state and values."""
    indi_server.definitions = THERMO_DEFS
    indi_server.reply_rules.append(
        lambda data: TARGET_OK.encode() if b"<newNumberVector" in data else None
    )
    entry = await setup_indi_entry(hass, indi_server)
    target = await wait_for_entity(
        hass, "number", f"{entry.entry_id}:Thermostat:targetvector.target"
    )

    response = await set_property(
        hass, entry.entry_id, "Thermostat", "targetvector", {"target": 18.5}
    )
    assert response is not None
    assert response["state"] == "Ok"
    values = response["values"]
    assert isinstance(values, dict)
    assert values["target"] == pytest.approx(18.5)
    await wait_for_state(hass, target, state_is("18.5"))

    with pytest.raises(ServiceValidationError) as err:
        await set_property(hass, entry.entry_id, "Nope", "x", {"a": 1})
    assert err.value.translation_key == "unknown_target"

    with pytest.raises(ServiceValidationError) as err:
        await set_property(hass, "missing", "T", "x", {"a": 1})
    assert err.value.translation_key == "entry_not_found"

    await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await set_property(hass, entry.entry_id, "T", "x", {"a": 1})
    assert err.value.translation_key == "entry_not_loaded"


async def test_stale_device_can_be_removed_present_one_cannot(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A device the server deleted can be removed by the user; a present one and the hub cannot."""
    assert await async_setup_component(hass, "config", {})
    indi_server.definitions = THERMO_DEFS
    entry = await setup_indi_entry(hass, indi_server)
    temperature = await wait_for_entity(
        hass, "sensor", f"{entry.entry_id}:Thermostat:temperaturevector.temperature"
    )
    devices = dr.async_get(hass)
    thermostat = devices.async_get_device_by_identifier(
        (DOMAIN, f"{entry.entry_id}:Thermostat"), entry.entry_id
    )
    hub_device = devices.async_get_device_by_identifier(
        (DOMAIN, entry.entry_id), entry.entry_id
    )
    assert thermostat is not None and hub_device is not None

    assert not await async_remove_config_entry_device(hass, entry, thermostat)
    assert not await async_remove_config_entry_device(hass, entry, hub_device)
    await indi_server.push('<delProperty device="Thermostat" message="gone"/>')
    await wait_for_state(hass, temperature, state_is("unavailable"))
    assert await async_remove_config_entry_device(hass, entry, thermostat)


async def test_diagnostics_redacted(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    indi_server: FakeIndiServer,
) -> None:
    """Diagnostics show the model and queue figures, without the host or BLOB bytes."""
    indi_server.definitions = THERMO_DEFS
    entry = await setup_indi_entry(hass, indi_server)
    await wait_for_entity(
        hass, "sensor", f"{entry.entry_id}:Thermostat:temperaturevector.temperature"
    )

    diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
        hass, hass_client, entry
    )
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert diagnostics["entry"]["title"] == "**REDACTED**"
    hub = diagnostics["hub"]
    assert hub["link_up"] is True
    channels = hub["devices"]["Thermostat"]["channels"]
    assert channels["temperaturevector.temperature"]["value"] == pytest.approx(19.6)
    assert channels["targetvector.target"]["platform"] == "number"
    assert hub["event_queue"]["processed"] >= 5
    assert "127.0.0.1" not in str(diagnostics)


async def test_queue_sensors_disabled_by_default_and_sampled_when_enabled(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The event queue's figures are diagnostic sensors, off by default; enabled, they report the queue."""
    indi_server.definitions = THERMO_DEFS
    entry = await setup_indi_entry(hass, indi_server)
    await wait_for_entity(
        hass, "sensor", f"{entry.entry_id}:Thermostat:temperaturevector.temperature"
    )
    registry = er.async_get(hass)
    ids = {
        key: registry.async_get_entity_id("sensor", DOMAIN, f"{entry.entry_id}:_{key}")
        for key in ("event_queue_depth", "event_rate", "event_wait_p95")
    }
    for entity_id in ids.values():
        assert entity_id is not None
        registry_entry = registry.async_get(entity_id)
        assert registry_entry is not None
        assert registry_entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert registry_entry.entity_category is EntityCategory.DIAGNOSTIC
        assert hass.states.get(entity_id) is None
        registry.async_update_entity(entity_id, disabled_by=None)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for_state(hass, "sensor.thermostat_temperature", state_is("19.6"))

    await indi_server.push(
        '<setNumberVector device="Thermostat" name="temperaturevector" state="Ok">'
        '<oneNumber name="temperature">20.00</oneNumber></setNumberVector>'
    )
    await wait_for_state(hass, "sensor.thermostat_temperature", state_is("20.0"))
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    await hass.async_block_till_done()
    assert float(state_of(hass, str(ids["event_queue_depth"]))) == 0
    assert float(state_of(hass, str(ids["event_wait_p95"]))) > 0
    assert state_of(hass, str(ids["event_rate"])) != "unknown"


async def test_home_assistant_stop_closes_the_connection(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """When Home Assistant stops, the connection is closed at once; a later unload is still clean."""
    indi_server.definitions = THERMO_DEFS
    entry = await setup_indi_entry(hass, indi_server)
    await wait_for_entity(
        hass, "sensor", f"{entry.entry_id}:Thermostat:temperaturevector.temperature"
    )
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    await indi_server.wait_disconnected()
    assert await hass.config_entries.async_unload(entry.entry_id)
