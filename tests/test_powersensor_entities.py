"""A Powersensor household in Home Assistant: devices, entities, availability, events, actions.

The emulator runs in this process on the test's 127.x subnet (plugs every 0.2 s, sensors every
1 s); the entry is the one the flow makes. What is asserted is what a user sees: states, units,
device and state classes, registry entries and links, availability, event entities.
"""

from __future__ import annotations

import json
import os
from typing import Any
from unittest.mock import patch

from homeassistant.components.sensor import ATTR_LAST_RESET, ATTR_STATE_CLASS
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.hub import Hub
from custom_components.instrument_hub.kinds.powersensor import CONF_PLUGS
from custom_components.instrument_hub.sources.powersensor import PowersensorSource
from simulators.powersensor_plugs import PlugNetwork

from .helpers import (
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
    wait_until,
)
from .powersensor_ha import entity_id_of, household_entry, setup_household
from .powersensor_net import HOUSE, PLUG_A, PLUG_B, SOLAR, WATER, Subnet, control

pytestmark = pytest.mark.usefixtures("loopback_only", "ha_network")

QUIET_QUEUE = {
    "depth": 0,
    "rate": 2.5,
    "wait_time": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
}
HOUSEHOLD = "powersensor_household"


async def _ready(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    """Wait until every device's main entities exist; return their entity ids by short name."""
    ids = {
        "plug_a_power": await wait_for_entity(hass, "sensor", f"{PLUG_A}:power"),
        "plug_b_power": await wait_for_entity(hass, "sensor", f"{PLUG_B}:power"),
        "house_power": await wait_for_entity(hass, "sensor", f"{HOUSE}:power"),
        "solar_power": await wait_for_entity(hass, "sensor", f"{SOLAR}:power"),
        "water_flow": await wait_for_entity(hass, "sensor", f"{WATER}:water_flow"),
        "water_volume": await wait_for_entity(hass, "sensor", f"{WATER}:water_volume"),
        "grid_export": await wait_for_entity(
            hass, "sensor", f"{HOUSEHOLD}:grid_export_energy"
        ),
        "found": await wait_for_entity(hass, "event", f"{entry.entry_id}:device_found"),
        "lost": await wait_for_entity(hass, "event", f"{entry.entry_id}:device_lost"),
    }
    connected = entity_id_of(hass, "binary_sensor", f"{entry.entry_id}:_link")
    assert connected is not None
    ids["connected"] = connected
    return ids


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize("platform", [Platform.SENSOR, Platform.BINARY_SENSOR])
async def test_entities_of_a_household(
    hass: HomeAssistant,
    subnet: Subnet,
    held_household: PlugNetwork,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Every plug, sensor and household entity, pinned (values held by the emulator)."""
    entry = household_entry(hass, subnet)
    with (
        patch("custom_components.instrument_hub.PLATFORMS", [platform]),
        patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
    ):
        await setup_household(hass, entry)
        last = "grid_export_energy" if platform is Platform.SENSOR else "_link"
        device = HOUSEHOLD if platform is Platform.SENSOR else entry.entry_id
        await wait_for_entity(hass, platform, f"{device}:{last}")
        await wait_for_entity(
            hass, "sensor", f"{WATER}:water_volume"
        ) if platform is Platform.SENSOR else None
        await entry.runtime_data.async_flush()
        await hass.async_block_till_done()
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


@pytest.mark.usefixtures("all_entities_enabled")
async def test_states_are_the_raw_messages_converted(
    hass: HomeAssistant, subnet: Subnet, held_household: PlugNetwork
) -> None:
    """Each state, unit, device class and state class, computed here from the emulator's last report."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    await _ready(hass, entry)
    await entry.runtime_data.async_flush()
    state = await control(held_household, "state")
    raw = {
        **{p["mac"]: p["last"] for p in state["plugs"]},
        **{s["mac"]: s["last"] for s in state["sensors"]},
    }

    def check(
        unique_id: str,
        value: float,
        unit: str,
        device_class: str,
        state_class: str | None,
    ) -> None:
        entity_id = entity_id_of(hass, "sensor", unique_id)
        assert entity_id is not None, unique_id
        current = hass.states.get(entity_id)
        assert current is not None
        assert float(current.state) == pytest.approx(value), unique_id
        assert current.attributes[ATTR_UNIT_OF_MEASUREMENT] == unit
        assert current.attributes[ATTR_DEVICE_CLASS] == device_class
        assert current.attributes.get(ATTR_STATE_CLASS) == state_class

    plug = raw[PLUG_A]
    check(f"{PLUG_A}:power", round(plug["power"]), "W", "power", "measurement")
    check(
        f"{PLUG_A}:energy",
        round(plug["summation"]) / 3.6e6,
        "kWh",
        "energy",
        "total_increasing",
    )
    house = raw[HOUSE]
    check(f"{HOUSE}:power", house["power"], "W", "power", "measurement")
    check(f"{HOUSE}:energy", house["summation"] / 3.6e6, "kWh", "energy", "total")
    volts = house["batteryMicrovolt"] / 1e6
    check(
        f"{HOUSE}:battery_level",
        round((volts - 3.3) / 0.85 * 100, 1),
        "%",
        "battery",
        "measurement",
    )
    check(f"{HOUSE}:battery_voltage", volts, "V", "voltage", "measurement")
    solar = raw[SOLAR]
    assert solar["power"] < 0  # the solar sensor measures generation as negative
    check(f"{SOLAR}:power", solar["power"], "W", "power", "measurement")
    check(f"{SOLAR}:energy", solar["summation"] / 3.6e6, "kWh", "energy", "total")
    water = raw[WATER]
    check(
        f"{WATER}:water_flow",
        water["average_flow"],
        "L/min",
        "volume_flow_rate",
        "measurement",
    )
    check(f"{WATER}:water_volume", water["summation_volume"], "L", "water", "total")
    # The household view: net house = consumption - solar, so the gross figures follow.
    net, generation = house["power"], -solar["power"]
    check(f"{HOUSEHOLD}:grid_import_power", max(net, 0), "W", "power", "measurement")
    check(f"{HOUSEHOLD}:grid_export_power", max(-net, 0), "W", "power", "measurement")
    check(
        f"{HOUSEHOLD}:solar_generation_power", generation, "W", "power", "measurement"
    )
    check(
        f"{HOUSEHOLD}:home_consumption_power",
        max(net + generation, 0),
        "W",
        "power",
        "measurement",
    )
    check(f"{HOUSEHOLD}:grid_import_energy", 0.0, "kWh", "energy", "total_increasing")
    energy = hass.states.get(entity_id_of(hass, "sensor", f"{HOUSE}:energy") or "")
    assert energy is not None
    assert (
        energy.attributes[ATTR_LAST_RESET] == "2026-02-01T18:54:24+00:00"
    )  # summation_start
    role = hass.states.get(entity_id_of(hass, "sensor", f"{HOUSE}:sensor_role") or "")
    assert role is not None and role.state == "house_net"


async def test_devices_and_their_links(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    device_registry: dr.DeviceRegistry,
) -> None:
    """A device per plug and sensor, keyed by MAC, each sensor via the plug relaying it now."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    await _ready(hass, entry)
    by_id = {
        next(iter(d.identifiers))[1]: d
        for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    }
    hub = by_id[entry.entry_id]
    plug_a, plug_b = by_id[PLUG_A], by_id[PLUG_B]
    assert plug_a.connections == {(dr.CONNECTION_NETWORK_MAC, "24:6f:28:04:87:a4")}
    assert (plug_a.name, plug_a.model, plug_a.manufacturer) == (
        "Powersensor plug 0487a4",
        "Plug",
        "Powersensor",
    )
    assert plug_a.via_device_id == hub.id
    assert by_id[HOUSE].via_device_id == plug_a.id
    assert by_id[SOLAR].via_device_id == plug_b.id
    assert by_id[WATER].via_device_id == plug_b.id
    assert by_id[HOUSE].model == "Sensor (house mains)"
    assert by_id[SOLAR].name == "Powersensor solar sensor 47d289"
    assert by_id[HOUSEHOLD].name == "Powersensor household"
    assert by_id[HOUSEHOLD].model == "Household view"
    assert hub.name == "Powersensor network"

    # The solar sensor moves to plug A: the same device, re-linked.
    await control(household, "move", sensor=SOLAR, plug=PLUG_A)
    await wait_until(
        hass,
        lambda: isinstance(
            device := device_registry.async_get(by_id[SOLAR].id), dr.DeviceEntry
        )
        and device.via_device_id == plug_a.id,
    )
    assert len(
        dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    ) == len(by_id)
    # What the source learnt is kept in the entry.
    assert entry.data[CONF_PLUGS] == {PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b}
    assert entry.data["with_solar"] is True


async def test_a_silent_plug_goes_unavailable_and_returns(
    hass: HomeAssistant, subnet: Subnet, household: PlugNetwork
) -> None:
    """Plug A silent for the threshold: it and its sensor unavailable, 'device lost' fired; then back."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    ids = await _ready(hass, entry)
    registered = sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    )
    await control(household, "silence", plug=PLUG_A)
    await wait_for_state(
        hass, ids["plug_a_power"], state_is(STATE_UNAVAILABLE), timeout=5
    )
    await wait_for_state(
        hass, ids["house_power"], state_is(STATE_UNAVAILABLE), timeout=5
    )
    await wait_for_state(
        hass, ids["grid_export"], state_is(STATE_UNAVAILABLE), timeout=5
    )
    lost = [hass.states.get(ids["lost"])]
    await wait_until(
        hass,
        lambda: (state := hass.states.get(ids["lost"])) is not None
        and state.attributes.get("mac") == HOUSE,
    )
    assert state_of(hass, ids["plug_b_power"]) not in (STATE_UNAVAILABLE, STATE_UNKNOWN)
    assert state_of(hass, ids["connected"]) == STATE_ON
    lost_state = hass.states.get(ids["lost"])
    assert lost_state is not None and lost[0] is not None
    assert lost_state.attributes["event_type"] == "device_lost"
    assert lost_state.attributes["role"] == "house_net"
    assert lost_state.attributes["device_type"] == "sensor"

    await control(household, "silence", plug=PLUG_B)
    await wait_for_state(hass, ids["connected"], state_is(STATE_OFF), timeout=5)
    assert state_of(hass, ids["water_flow"]) == STATE_UNAVAILABLE

    await control(household, "resume", plug=PLUG_A)
    await control(household, "resume", plug=PLUG_B)
    for key in ("plug_a_power", "house_power", "water_flow", "grid_export"):
        await wait_for_state(hass, ids[key], state_not(STATE_UNAVAILABLE), timeout=15)
    assert state_of(hass, ids["connected"]) == STATE_ON
    found = hass.states.get(ids["found"])
    assert found is not None and found.attributes["event_type"] == "device_found"
    assert (
        sorted(
            e.entity_id
            for e in er.async_entries_for_config_entry(
                er.async_get(hass), entry.entry_id
            )
        )
        == registered
    )


async def test_a_disabled_device_is_unsubscribed_at_the_source(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Disabling the water sensor's device stops its readings at the source; enabling resumes them."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    await _ready(hass, entry)
    source = entry.runtime_data.source
    assert isinstance(source, PowersensorSource)
    water = device_registry.async_get_device_by_identifier(
        (DOMAIN, WATER), entry.entry_id
    )
    assert water is not None

    def muted() -> bool:
        return any(
            d["muted"]
            for d in source.diagnostics()["devices"].values()
            if d["mac"] == WATER
        )

    device_registry.async_update_device(
        water.id, disabled_by=dr.DeviceEntryDisabler.USER
    )
    await hass.async_block_till_done()
    assert muted()
    device_registry.async_update_device(water.id, disabled_by=None)
    await hass.async_block_till_done()
    assert not muted()
    # A device of another entry being disabled is none of this household's business.
    other = MockConfigEntry(domain="other")
    other.add_to_hass(hass)
    stranger = device_registry.async_get_or_create(
        config_entry_id=other.entry_id, identifiers={("other", WATER)}
    )
    device_registry.async_update_device(
        stranger.id, disabled_by=dr.DeviceEntryDisabler.USER
    )
    await hass.async_block_till_done()
    assert not muted()
    # Already disabled when the entry starts: muted from the start.
    device_registry.async_update_device(
        water.id, disabled_by=dr.DeviceEntryDisabler.USER
    )
    assert await hass.config_entries.async_reload(entry.entry_id)
    reloaded = entry.runtime_data.source
    assert isinstance(reloaded, PowersensorSource)
    assert "bcddc247d338" in reloaded._muted


async def test_disabled_entities_are_muted_at_the_source(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    entity_registry: er.EntityRegistry,
) -> None:
    """Voltage and currents start disabled: their readings stop at the source until enabled."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    await _ready(hass, entry)
    source = entry.runtime_data.source
    assert isinstance(source, PowersensorSource)
    voltage = entity_id_of(hass, "sensor", f"{PLUG_A}:voltage")
    assert voltage is not None
    registered = entity_registry.async_get(voltage)
    assert registered is not None
    assert registered.disabled_by is er.RegistryEntryDisabler.INTEGRATION

    def muted(mac: str) -> list[str]:
        return next(
            d["muted_channels"]
            for d in source.diagnostics()["devices"].values()
            if d["mac"] == mac
        )

    assert muted(PLUG_A) == [
        "active_current",
        "apparent_current",
        "reactive_current",
        "voltage",
    ]
    assert "average_rssi" in muted(HOUSE)
    entity_registry.async_update_entity(voltage, disabled_by=None)
    await hass.async_block_till_done()
    assert "voltage" not in muted(PLUG_A)
    entity_registry.async_update_entity(
        voltage, name="Mains voltage"
    )  # not about enabling
    await hass.async_block_till_done()
    assert "voltage" not in muted(PLUG_A)


async def test_rescan_action(
    hass: HomeAssistant, subnet: Subnet, household: PlugNetwork
) -> None:
    """instrument_hub.rescan scans again and says how many plugs answered."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    with patch("custom_components.instrument_hub.kinds.powersensor.SCAN_SECONDS", 0.4):
        response = await hass.services.async_call(
            DOMAIN,
            "rescan",
            {"config_entry_id": entry.entry_id},
            blocking=True,
            return_response=True,
        )
    assert response == {"plugs_answered": 2}


async def test_diagnostics_hide_addresses_and_macs(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    hass_client: ClientSessionGenerator,
) -> None:
    """The download has the model and counters, but no MAC, no IP address, no device name."""
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    await _ready(hass, entry)
    diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
        hass, hass_client, entry
    )
    text = json.dumps(diagnostics)
    for secret in (
        PLUG_A,
        PLUG_B,
        HOUSE,
        SOLAR,
        WATER,
        subnet.prefix,
        "0487a4",
        "47d289",
    ):
        assert secret not in text, secret
    source = diagnostics["hub"]["source"]
    assert source["link_up"] is True
    assert {d["type"] for d in source["devices"].values()} == {
        "plug",
        "sensor",
        "household",
    }
    assert len(source["links"]) == 2
    assert source["links"][0]["subscribes_sent"] >= 1


async def test_unload_leaves_no_socket_and_re_adding_keeps_entity_ids(
    hass: HomeAssistant, subnet: Subnet, household: PlugNetwork
) -> None:
    """Unload: every plug unsubscribed, the process's fds back to before. Re-added: same entity ids."""
    fds = len(os.listdir("/proc/self/fd"))
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    ids = await _ready(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert len(os.listdir("/proc/self/fd")) == fds
    state = await control(household, "state")
    assert all(plug["subscribers"] == [] for plug in state["plugs"])
    assert state_of(hass, ids["plug_a_power"]) == STATE_UNAVAILABLE

    await hass.config_entries.async_remove(entry.entry_id)
    again = household_entry(hass, subnet)
    await setup_household(hass, again)
    assert (
        await wait_for_entity(hass, "sensor", f"{PLUG_A}:power") == ids["plug_a_power"]
    )
    assert (
        await wait_for_entity(hass, "sensor", f"{HOUSEHOLD}:grid_export_energy")
        == ids["grid_export"]
    )
