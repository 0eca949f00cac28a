"""The hub without any protocol: a fake source pushes normalized events, the user sees entities.

Every test sets up a real config entry of the kind "fake" (tests/fake_source.py) and looks at what
a user would: states, attributes, availability, the device and entity registries, action results.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
import logging
import math
import os
from pathlib import Path
import shutil
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import (
    Event as HassEvent,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.instrument_hub.blob_store import (
    FileStoreSettings,
    create_spool_file,
    spool_folder,
)
from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.events import (
    CONNECTION_MAC,
    BlobData,
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
    DeviceConnection,
    DeviceFound,
    DeviceLost,
    Event,
    EventData,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
    StateClass,
    join_key,
)
from custom_components.instrument_hub.hub import FIRES_PER_GROUP, Hub
from custom_components.instrument_hub.sources.base import (
    AuthenticationFailed,
    CommandRejected,
    CommandResult,
    CommandTimeout,
    InvalidValue,
)

from .fake_source import ACTION, FAKE_ENTRY_ID, FakeKind, FakeSource, Write, fake_entry
from .helpers import state_of

PLUG = DeviceFound(
    "plug-1",
    "Kitchen plug",
    manufacturer="Acme",
    model="Plug X",
    sw_version="1.2",
    serial_number="SN-123",
    hardware_id="aabbccddeeff",
    connections=((CONNECTION_MAC, "AA:BB:CC:DD:EE:FF"),),
)
RELAYED = DeviceFound(
    "sensor-1",
    "Mains sensor",
    manufacturer="Acme",
    model="Sensor (house mains)",
    hardware_id="112233445566",
    connections=((CONNECTION_MAC, "11:22:33:44:55:66"),),
    via_device_key="plug-1",
)
BENCH = DeviceFound("bench", "Bench", manufacturer="Lab", model="Bench rig")
RESET_AT = datetime(2026, 11, 1, tzinfo=UTC)
QUIET_QUEUE = {
    "depth": 0,
    "rate": 2.5,
    "wait_time": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
}


def _channel(device: str, key: str, kind: ChannelKind, **kwargs: Any) -> ChannelDefined:
    kwargs.setdefault("writable", False)
    kwargs.setdefault("label", key.replace("_", " ").capitalize())
    return ChannelDefined(device, join_key(key), kind, **kwargs)


PLUG_CHANNELS: tuple[ChannelDefined, ...] = (
    _channel(
        "plug-1",
        "power",
        ChannelKind.NUMERIC,
        unit="W",
        device_class_hint="power",
        precision=1,
        value=12.5,
    ),
    _channel(
        "plug-1",
        "energy",
        ChannelKind.NUMERIC,
        unit="kWh",
        device_class_hint="energy",
        state_class=StateClass.TOTAL_INCREASING,
        value=3.25,
    ),
    _channel(
        "plug-1",
        "water",
        ChannelKind.NUMERIC,
        unit="L",
        device_class_hint="water",
        state_class=StateClass.TOTAL,
        last_reset=RESET_AT,
        value=40.0,
    ),
    _channel(
        "plug-1",
        "signal",
        ChannelKind.NUMERIC,
        unit="dBm",
        device_class_hint="signal_strength",
        category=ChannelCategory.DIAGNOSTIC,
        enabled_by_default=False,
        value=-61,
    ),
    _channel("plug-1", "broken", ChannelKind.NUMERIC, value=math.nan),
    _channel("plug-1", "relay", ChannelKind.BOOLEAN, writable=True, value=True),
    _channel(
        "plug-1",
        "online",
        ChannelKind.BOOLEAN,
        device_class_hint="connectivity",
        value=False,
    ),
    _channel(
        "plug-1", "role", ChannelKind.ENUM, options=("mains", "solar"), value="solar"
    ),
    _channel(
        "plug-1",
        "mode",
        ChannelKind.ENUM,
        writable=True,
        options=("eco", "boost"),
        value="eco",
        category=ChannelCategory.CONFIG,
    ),
    _channel("plug-1", "firmware_note", ChannelKind.TEXT, value="stable"),
    _channel("plug-1", "note", ChannelKind.TEXT, writable=True, value="hello"),
    _channel(
        "plug-1",
        "target",
        ChannelKind.NUMERIC,
        writable=True,
        minimum=0,
        maximum=30,
        step=0.5,
        unit="°C",
        device_class_hint="temperature",
        value=18.5,
    ),
    _channel("plug-1", "log", ChannelKind.BLOB),
    _channel("plug-1", "pulse", ChannelKind.EVENT, options=("pulse", "over_range")),
    _channel(
        "plug-1",
        "reset",
        ChannelKind.ACTION,
        writable=True,
        device_class_hint="restart",
    ),
)
RELAYED_CHANNELS = (
    _channel(
        "sensor-1",
        "power",
        ChannelKind.NUMERIC,
        unit="W",
        device_class_hint="power",
        value=-250.0,
    ),
)
BENCH_CHANNELS = (
    _channel("bench", "voltage", ChannelKind.NUMERIC, unit="V", value=5.02),
    _channel(
        "bench",
        "port",
        ChannelKind.TEXT,
        writable=True,
        value="/dev/ttyUSB0",
        keeps_available=True,
    ),
)
EVERYTHING: tuple[Event, ...] = (
    LinkUp(),
    PLUG,
    *PLUG_CHANNELS,
    RELAYED,
    *RELAYED_CHANNELS,
    BENCH,
    *BENCH_CHANNELS,
)


async def _settle(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Wait until the hub applied every event pushed so far and the entities were written."""
    await entry.runtime_data.async_flush()
    await hass.async_block_till_done()


async def _setup(
    hass: HomeAssistant, fake_kind: FakeKind, initial: tuple[Event, ...] = EVERYTHING
) -> tuple[MockConfigEntry, FakeSource]:
    source = FakeSource(initial=list(initial))
    fake_kind.next_sources.append(source)
    entry = fake_entry(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    await _settle(hass, entry)
    return entry, source


def _entity_id(hass: HomeAssistant, platform: str, unique_id: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, unique_id)
    assert entity_id is not None, f"no {platform} entity {unique_id}"
    return entity_id


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize(
    "platform",
    [
        Platform.BINARY_SENSOR,
        Platform.BUTTON,
        Platform.EVENT,
        Platform.NUMBER,
        Platform.SELECT,
        Platform.SENSOR,
        Platform.SWITCH,
        Platform.TEXT,
    ],
)
async def test_entities_of_each_platform(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Every channel kind becomes the entity a user expects: states and registry entries pinned."""
    # The queue's own figures (rate, wait time) vary from run to run: pinned at fixed values here.
    with (
        patch("custom_components.instrument_hub.PLATFORMS", [platform]),
        patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
    ):
        entry, _source = await _setup(hass, fake_kind)
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_devices_by_hardware_id_mac_and_relay(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Devices: identified by hardware id where there is one, MAC connections, relayed via the plug."""
    entry, _source = await _setup(hass, fake_kind)
    devices = sorted(
        dr.async_entries_for_config_entry(device_registry, entry.entry_id),
        key=lambda device: device.name or "",
    )
    assert devices == snapshot
    by_name = {device.name: device for device in devices}
    plug, relayed = by_name["Kitchen plug"], by_name["Mains sensor"]
    assert plug.identifiers == {(DOMAIN, "aabbccddeeff")}
    assert plug.connections == {(dr.CONNECTION_NETWORK_MAC, "aa:bb:cc:dd:ee:ff")}
    assert relayed.via_device_id == plug.id
    assert by_name["Bench"].identifiers == {(DOMAIN, f"{FAKE_ENTRY_ID}:bench")}
    assert by_name["Bench"].via_device_id == by_name["Fake bench"].id


async def test_noisy_channel_disabled_by_default_and_categories(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """A channel marked noisy starts disabled; diagnostic and config channels get their category."""
    await _setup(hass, fake_kind)
    signal = entity_registry.async_get(
        _entity_id(hass, "sensor", f"aabbccddeeff:{join_key('signal')}")
    )
    assert signal is not None
    assert signal.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert signal.entity_category == "diagnostic"
    assert hass.states.get(signal.entity_id) is None
    mode = entity_registry.async_get(_entity_id(hass, "select", "aabbccddeeff:mode"))
    assert mode is not None and mode.entity_category == "config"


async def test_readings_none_and_nan_are_unknown(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A value the device marks invalid shows unknown, never 0; a valid one shows again after."""
    entry, source = await _setup(hass, fake_kind)
    power = _entity_id(hass, "sensor", "aabbccddeeff:power")
    assert state_of(hass, power) == "12.5"
    for invalid in (math.nan, None, math.inf, "12"):
        source.push(Reading("plug-1", "power", invalid))
        await _settle(hass, entry)
        assert state_of(hass, power) == STATE_UNKNOWN, invalid
    source.push(Reading("plug-1", "power", 7))
    await _settle(hass, entry)
    assert state_of(hass, power) == "7"  # an integer reading stays one


async def test_meters_carry_state_class_and_last_reset(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Energy counters are total_increasing, a resettable total has its last reset: Energy-dashboard ready."""
    entry, source = await _setup(hass, fake_kind)
    energy = hass.states.get(_entity_id(hass, "sensor", "aabbccddeeff:energy"))
    assert energy is not None
    assert energy.attributes["state_class"] == "total_increasing"
    assert energy.attributes["unit_of_measurement"] == "kWh"
    water_id = _entity_id(hass, "sensor", "aabbccddeeff:water")
    water = hass.states.get(water_id)
    assert water is not None
    assert water.attributes["state_class"] == "total"
    assert water.attributes["last_reset"] == RESET_AT.isoformat()
    power = hass.states.get(_entity_id(hass, "sensor", "aabbccddeeff:power"))
    assert power is not None and power.attributes["state_class"] == "measurement"

    # The meter was reset: the source re-defines the channel with the new last reset.
    later = datetime(2026, 12, 1, tzinfo=UTC)
    water_channel = next(c for c in PLUG_CHANNELS if c.channel_key == "water")
    source.push(
        ChannelDefined(
            **{
                **{f: getattr(water_channel, f) for f in water_channel.__slots__},
                "last_reset": later,
                "value": 0.0,
            }
        )
    )
    await _settle(hass, entry)
    water = hass.states.get(water_id)
    assert water is not None
    assert (water.state, water.attributes["last_reset"]) == ("0.0", later.isoformat())


async def test_link_device_channel_and_connection_availability(
    hass: HomeAssistant, fake_kind: FakeKind, caplog: pytest.LogCaptureFixture
) -> None:
    """Link down: all unavailable but Connected (off); device lost: its entities; channel removed: it."""
    caplog.set_level(logging.INFO, logger="custom_components.instrument_hub.hub")
    entry, source = await _setup(hass, fake_kind)
    connected = _entity_id(hass, "binary_sensor", f"{FAKE_ENTRY_ID}:_link")
    plug_power = _entity_id(hass, "sensor", "aabbccddeeff:power")
    relayed_power = _entity_id(hass, "sensor", "112233445566:power")
    voltage = _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:voltage")
    port = _entity_id(hass, "text", f"{FAKE_ENTRY_ID}:bench:port")
    assert state_of(hass, connected) == STATE_ON

    source.push(LinkDown("cable pulled"), LinkDown("still down"))
    await _settle(hass, entry)
    assert state_of(hass, connected) == STATE_OFF
    for entity_id in (plug_power, relayed_power, voltage, port):
        assert state_of(hass, entity_id) == STATE_UNAVAILABLE
    source.push(LinkUp())
    await _settle(hass, entry)
    assert state_of(hass, plug_power) == "12.5"
    logged = [r.getMessage() for r in caplog.records if r.name.endswith(".hub")]
    assert logged.count("Fake bench is unavailable: cable pulled") == 1
    assert logged.count("Fake bench is available again") == 1

    source.push(DeviceLost("sensor-1", "out of range"))
    await _settle(hass, entry)
    assert state_of(hass, relayed_power) == STATE_UNAVAILABLE
    assert state_of(hass, plug_power) == "12.5"
    source.push(RELAYED)
    await _settle(hass, entry)
    assert state_of(hass, relayed_power) == "-250.0"

    source.push(ChannelRemoved("plug-1", "power"))
    await _settle(hass, entry)
    assert state_of(hass, plug_power) == STATE_UNAVAILABLE
    assert state_of(hass, _entity_id(hass, "sensor", "aabbccddeeff:energy")) == "3.25"

    # The device's hardware link is off: everything but what must be set before connecting goes.
    source.push(DeviceConnection("bench", connected=False))
    await _settle(hass, entry)
    assert state_of(hass, voltage) == STATE_UNAVAILABLE
    assert state_of(hass, port) == "/dev/ttyUSB0"


async def test_redefinition_updates_in_place_and_a_new_platform_replaces(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """Re-defining a channel updates its entity (no duplicate); read-only to writable swaps the platform."""
    entry, source = await _setup(hass, fake_kind)
    before = len(er.async_entries_for_config_entry(entity_registry, entry.entry_id))
    target = next(c for c in PLUG_CHANNELS if c.channel_key == "target")
    changed = {f: getattr(target, f) for f in target.__slots__}
    source.push(ChannelDefined(**{**changed, "maximum": 40.0, "label": "Set point"}))
    await _settle(hass, entry)
    number = hass.states.get(_entity_id(hass, "number", "aabbccddeeff:target"))
    assert number is not None
    assert number.attributes["max"] == 40.0
    assert number.attributes["friendly_name"] == "Kitchen plug Set point"

    firmware = next(c for c in PLUG_CHANNELS if c.channel_key == "firmware_note")
    fields = {f: getattr(firmware, f) for f in firmware.__slots__}
    source.push(ChannelDefined(**{**fields, "writable": True}))
    await _settle(hass, entry)
    assert (
        entity_registry.async_get_entity_id(
            "sensor", DOMAIN, "aabbccddeeff:firmware_note"
        )
        is None
    )
    assert (
        state_of(hass, _entity_id(hass, "text", "aabbccddeeff:firmware_note"))
        == "stable"
    )
    assert (
        len(er.async_entries_for_config_entry(entity_registry, entry.entry_id))
        == before
    )


async def test_removed_device_comes_back_with_the_same_entity_ids(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    hass_ws_client: WebSocketGenerator,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """A device the user removed while it was gone returns, entities and ids, when it is defined again."""
    assert await async_setup_component(hass, "config", {})
    entry, source = await _setup(hass, fake_kind)
    bench_before = sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        if ":bench:" in e.unique_id
    )
    plug_power = _entity_id(hass, "sensor", "aabbccddeeff:power")
    client = await hass_ws_client(hass)

    async def remove(name: str) -> dict[str, Any]:
        device = next(
            d
            for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
            if d.name == name
        )
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": entry.entry_id,
                "device_id": device.id,
            }
        )
        response: dict[str, Any] = await client.receive_json()
        return response

    # A present device cannot be removed.
    assert not (await remove("Kitchen plug"))["success"]
    source.push(DeviceLost("plug-1", "unplugged"))
    await _settle(hass, entry)
    assert (await remove("Kitchen plug"))["success"]
    await hass.async_block_till_done()
    assert hass.states.get(plug_power) is None
    assert entity_registry.async_get(plug_power) is None

    source.push(PLUG, *PLUG_CHANNELS)
    await _settle(hass, entry)
    assert state_of(hass, plug_power) == "12.5"
    assert _entity_id(hass, "sensor", "aabbccddeeff:power") == plug_power

    # Removed while the link was down; after reconnecting the endpoint only re-defines its channels.
    source.push(LinkDown("restart"))
    await _settle(hass, entry)
    assert (await remove("Bench"))["success"]
    await hass.async_block_till_done()
    source.push(LinkUp(), *BENCH_CHANNELS)
    await _settle(hass, entry)
    bench = next(
        d
        for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        if d.name == "Bench"
    )
    assert (bench.manufacturer, bench.model) == ("Lab", "Bench rig")
    bench_after = sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        if ":bench:" in e.unique_id
    )
    assert bench_after == bench_before


async def test_hardware_ids_survive_deleting_and_re_adding_the_entry(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """Entities of a device with a hardware id keep their entity ids in a new entry (statistics stay)."""
    entry, _source = await _setup(hass, fake_kind)
    energy = _entity_id(hass, "sensor", "aabbccddeeff:energy")
    entity_registry.async_update_entity(
        energy, new_entity_id="sensor.kitchen_energy_meter"
    )
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()

    fake_kind.next_sources.append(FakeSource(initial=list(EVERYTHING)))
    again = fake_entry(hass, entry_id="01JFAKEENTRY0000000000000B")
    assert await hass.config_entries.async_setup(again.entry_id)
    await _settle(hass, again)
    assert (
        _entity_id(hass, "sensor", "aabbccddeeff:energy")
        == "sensor.kitchen_energy_meter"
    )
    assert state_of(hass, "sensor.kitchen_energy_meter") == "3.25"


async def test_event_channel_fires_declared_types_only(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A pushed happening fires the event entity with its attributes; an undeclared type is ignored."""
    entry, source = await _setup(hass, fake_kind)
    pulse = _entity_id(hass, "event", "aabbccddeeff:pulse")
    assert state_of(hass, pulse) == STATE_UNKNOWN
    source.push(Reading("plug-1", "pulse", EventData("pulse", {"energy": 0.81})))
    await _settle(hass, entry)
    state = hass.states.get(pulse)
    assert state is not None
    assert (state.attributes["event_type"], state.attributes["energy"]) == (
        "pulse",
        0.81,
    )
    fired_at = state.state
    source.push(Reading("plug-1", "pulse", EventData("exploded", {})))
    await _settle(hass, entry)
    assert state_of(hass, pulse) == fired_at


async def test_messages_fire_the_event_and_show_as_last_message(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """A device that speaks gets a Last message sensor; one that never does has none."""
    entry, source = await _setup(hass, fake_kind)
    assert (
        entity_registry.async_get_entity_id(
            "sensor", DOMAIN, "112233445566:_last_message"
        )
        is None
    )
    source.push(Message("sensor-1", "battery low", MessageLevel.WARNING))
    await _settle(hass, entry)
    last = _entity_id(hass, "sensor", "112233445566:_last_message")
    assert state_of(hass, last) == "battery low"
    registry_entry = entity_registry.async_get(last)
    assert registry_entry is not None and registry_entry.entity_category == "diagnostic"
    event = hass.states.get(_entity_id(hass, "event", "112233445566:_messages"))
    assert event is not None
    assert (event.attributes["event_type"], event.attributes["message"]) == (
        "warning",
        "battery low",
    )
    assert (
        entity_registry.async_get_entity_id(
            "sensor", DOMAIN, "aabbccddeeff:_last_message"
        )
        is None
    )


async def test_a_file_channel_fires_with_where_the_file_went(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A kind without file saving still tells of each file: the event fires with path null and why."""
    entry, source = await _setup(hass, fake_kind)
    log = _entity_id(hass, "event", "aabbccddeeff:log")
    source.push(Reading("plug-1", "log", BlobData(b"a,b\n", ".csv", 4)))
    await _settle(hass, entry)
    state = hass.states.get(log)
    assert state is not None
    assert state.attributes["event_type"] == "received"
    assert (state.attributes["path"], state.attributes["size"]) == (None, 4)
    assert state.attributes["reason"] == "saving files is disabled"


async def test_a_spooled_file_that_is_not_saved_is_removed(
    hass: HomeAssistant, fake_kind: FakeKind, tmp_path: Path
) -> None:
    """A file a source spooled while saving is off: the event tells why, and the spool file goes."""
    entry, source = await _setup(hass, fake_kind)
    fd, spooled = create_spool_file(spool_folder(tmp_path))
    os.write(fd, b"a,b\n")
    os.close(fd)
    log = _entity_id(hass, "event", "aabbccddeeff:log")
    source.push(Reading("plug-1", "log", BlobData(b"", ".csv", 4, spooled=spooled)))
    await _settle(hass, entry)
    state = hass.states.get(log)
    assert state is not None
    assert (state.attributes["path"], state.attributes["size"]) == (None, 4)
    assert state.attributes["reason"] == "saving files is disabled"
    assert not spooled.exists()


async def test_writes_to_different_channels_do_not_wait_for_each_other(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A write the device answers at once completes while another channel's write still waits."""
    entry, source = await _setup(hass, fake_kind)
    gate = asyncio.Event()

    async def answer(device: str, channel: str, value: object) -> CommandResult:
        if channel == "relay":
            await gate.wait()
        return CommandResult("Ok")

    source.handler = answer
    relay = _entity_id(hass, "switch", "aabbccddeeff:relay")
    target = _entity_id(hass, "number", "aabbccddeeff:target")
    slow = hass.async_create_task(
        hass.services.async_call(
            "switch", "turn_off", {"entity_id": relay}, blocking=True
        )
    )
    await source.wait_writes(1)
    async with asyncio.timeout(5):
        await hass.services.async_call(
            "number", "set_value", {"entity_id": target, "value": 20}, blocking=True
        )
    assert not slow.done()
    gate.set()
    async with asyncio.timeout(5):
        await slow
    assert [(w.channel_key, w.value) for w in source.writes] == [
        ("relay", False),
        ("target", 20.0),
    ]


async def test_writes_to_one_channel_stay_in_order(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Two writes to the same channel reach the device one after the other, in order."""
    entry, source = await _setup(hass, fake_kind)
    running = 0
    overlapped = False
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def answer(device: str, channel: str, value: object) -> CommandResult:
        nonlocal running, overlapped
        running += 1
        overlapped |= running > 1
        first_started.set()
        await release.wait()
        running -= 1
        return CommandResult("Ok")

    source.handler = answer
    note = _entity_id(hass, "text", "aabbccddeeff:note")
    calls = [
        hass.async_create_task(
            hass.services.async_call(
                "text", "set_value", {"entity_id": note, "value": text}, blocking=True
            )
        )
        for text in ("one", "two")
    ]
    await first_started.wait()
    # Let the second call run as far as it can (loop iterations, not time): it must wait its turn.
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(source.writes) == 1
    release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*calls)
    assert not overlapped
    assert [w.value for w in source.writes] == ["one", "two"]


@pytest.mark.parametrize(
    ("error", "raised", "key"),
    [
        (
            CommandRejected("Out of range", device="plug-1"),
            HomeAssistantError,
            "command_rejected",
        ),
        (CommandTimeout("no answer in 5 s"), HomeAssistantError, "command_timeout"),
        (
            InvalidValue("not a mode", value="x"),
            ServiceValidationError,
            "invalid_value",
        ),
    ],
)
async def test_command_failures_are_translated_and_not_logged(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    raised: type[HomeAssistantError],
    key: str,
) -> None:
    """A refusal, a timeout or a bad value reaches the user translated, with no traceback logged."""
    entry, source = await _setup(hass, fake_kind)

    async def answer(device: str, channel: str, value: object) -> CommandResult:
        raise error

    source.handler = answer
    caplog.clear()
    with pytest.raises(raised) as err:
        await hass.services.async_call(
            "select",
            "select_option",
            {
                "entity_id": _entity_id(hass, "select", "aabbccddeeff:mode"),
                "option": "boost",
            },
            blocking=True,
        )
    assert err.value.translation_key == key
    assert str(error) in str(err.value)
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info
    ]


async def test_button_press_runs_the_action(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Pressing an action button sends the action; a refusal fails the press with the device's reason."""
    entry, source = await _setup(hass, fake_kind)
    button = _entity_id(hass, "button", "aabbccddeeff:reset")
    await hass.services.async_call(
        "button", "press", {"entity_id": button}, blocking=True
    )
    assert source.writes == [Write("plug-1", "reset", ACTION)]

    async def refuse(device: str, channel: str, value: object) -> CommandResult:
        raise CommandRejected("busy measuring")

    source.handler = refuse
    with pytest.raises(HomeAssistantError, match="busy measuring"):
        await hass.services.async_call(
            "button", "press", {"entity_id": button}, blocking=True
        )


async def test_kind_actions_dispatch_to_the_entry_kind(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A kind's own action answers for its entries; the same action on another kind's entry is refused."""
    entry, _source = await _setup(hass, fake_kind)
    response = await hass.services.async_call(
        DOMAIN,
        "fake_ping",
        {"config_entry_id": entry.entry_id},
        blocking=True,
        return_response=True,
    )
    assert response == {"title": "Fake bench"}
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "set_property",
            {
                "config_entry_id": entry.entry_id,
                "device": "bench",
                "property": "p",
                "values": {"a": 1},
            },
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "not_supported"


async def test_endpoint_down_at_setup_retries(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """An endpoint that refuses the connection leaves the entry retrying, with no entity."""
    fake_kind.next_sources.append(FakeSource(refuse_start=True))
    entry = fake_entry(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert fake_kind.sources[entry.entry_id].stopped


async def test_refused_credentials_at_setup_start_reauthentication(
    hass: HomeAssistant, fake_kind: FakeKind, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint that refuses the credentials fails the setup for reauth, not for a retry."""
    refused = FakeSource(
        start_error=AuthenticationFailed("wrong password", host="fake")
    )
    fake_kind.next_sources.append(refused)
    entry = fake_entry(hass)
    with patch.object(
        hass.config_entries.flow,
        "async_init",
        wraps=hass.config_entries.flow.async_init,
    ) as flow_init:
        # The setup fails; the reauth it starts may already have reloaded the entry when it returns.
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    assert refused.stopped
    assert (
        "could not authenticate: The endpoint refused the credentials: wrong"
        in caplog.text
    )
    assert [call.kwargs["context"]["source"] for call in flow_init.call_args_list] == [
        "reauth"
    ]
    # The kind's reauth step ran (the fake one accepts at once) and reloaded the entry.
    assert entry.state is ConfigEntryState.LOADED
    assert fake_kind.sources[entry.entry_id] is not refused


async def test_unknown_kind_is_a_setup_error(hass: HomeAssistant) -> None:
    """An entry of a kind this version does not know (after a downgrade) fails with a clear error."""
    entry = MockConfigEntry(domain=DOMAIN, data={"source_kind": "teleporter"})
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert entry.reason is not None and "teleporter" in entry.reason


async def test_diagnostics(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    hass_client: ClientSessionGenerator,
    snapshot: SnapshotAssertion,
) -> None:
    """Diagnostics: the model and the source's state, with the kind's identifying keys redacted."""
    entry, source = await _setup(hass, fake_kind)
    source.push(Message(None, "server restarted"))
    await _settle(hass, entry)
    diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
        hass, hass_client, entry
    )
    assert diagnostics == snapshot(
        exclude=props("timestamp", "event_queue", "command_queue")
    )
    assert "bench" not in str(diagnostics["entry"])
    assert diagnostics["hub"]["source"]["host"] == "**REDACTED**"
    assert diagnostics["hub"]["event_queue"]["processed"] >= len(EVERYTHING)


async def test_unknown_device_class_hints_are_ignored(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A hint no platform knows gives an entity without a device class (never a failed entity)."""
    odd = "flux_capacitance"
    channels = (
        _channel("bench", "a", ChannelKind.NUMERIC, device_class_hint=odd, value=1),
        _channel(
            "bench",
            "b",
            ChannelKind.NUMERIC,
            writable=True,
            device_class_hint=odd,
            value=1,
        ),
        _channel("bench", "c", ChannelKind.BOOLEAN, device_class_hint=odd, value=True),
        _channel(
            "bench", "d", ChannelKind.EVENT, device_class_hint=odd, options=("x",)
        ),
        _channel(
            "bench", "e", ChannelKind.ACTION, writable=True, device_class_hint=odd
        ),
    )
    await _setup(hass, fake_kind, (LinkUp(), BENCH, *channels))
    for platform, key in (
        ("sensor", "a"),
        ("number", "b"),
        ("binary_sensor", "c"),
        ("event", "d"),
        ("button", "e"),
    ):
        state = hass.states.get(
            _entity_id(hass, platform, f"{FAKE_ENTRY_ID}:bench:{key}")
        )
        assert state is not None
        assert "device_class" not in state.attributes, platform


async def test_last_message_survives_a_reload(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """After a reload the Last message sensor is there at once, with the text from before."""
    entry, source = await _setup(hass, fake_kind)
    source.push(Message("bench", "calibrated"))
    await _settle(hass, entry)
    last = _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:_last_message")
    assert state_of(hass, last) == "calibrated"

    fake_kind.next_sources.append(FakeSource(initial=list(EVERYTHING)))
    assert await hass.config_entries.async_reload(entry.entry_id)
    await _settle(hass, entry)
    assert state_of(hass, last) == "calibrated"
    source = fake_kind.sources[entry.entry_id]
    source.push(Message("bench", "drifting", MessageLevel.WARNING))
    await _settle(hass, entry)
    assert state_of(hass, last) == "drifting"


async def test_attributes_come_with_the_definition_and_readings(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A channel's attributes show on its entity; a reading with attributes replaces them, one without keeps them."""
    state_channel = _channel(
        "bench",
        "slew",
        ChannelKind.NUMERIC,
        writable=True,
        value=1.0,
        attributes={"property_state": "idle"},
    )
    entry, source = await _setup(hass, fake_kind, (*EVERYTHING, state_channel))
    slew = _entity_id(hass, "number", f"{FAKE_ENTRY_ID}:bench:slew")
    state = hass.states.get(slew)
    assert state is not None
    assert state.attributes["property_state"] == "idle"

    source.push(Reading("bench", "slew", 2.0, attributes={"property_state": "busy"}))
    await _settle(hass, entry)
    state = hass.states.get(slew)
    assert state is not None
    assert (state.state, state.attributes["property_state"]) == ("2.0", "busy")
    source.push(Reading("bench", "slew", 3.0))
    await _settle(hass, entry)
    state = hass.states.get(slew)
    assert state is not None
    assert (state.state, state.attributes["property_state"]) == ("3.0", "busy")


SAVE_REPLACING_CONFIG = ChannelDefined(
    "bench",
    join_key("config", "save"),
    ChannelKind.ACTION,
    writable=True,
    label="Save",
    replaces=(join_key("config"),),
)
"""A button of what was one select (INDI's CONFIG_PROCESS as buttons): the select's entity goes."""


async def test_registry_entries_a_channel_supersedes_are_removed(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """An entry left on another platform by an earlier run (switch -> button), and replaced channels, go."""
    entry = fake_entry(hass)
    old_switch = entity_registry.async_get_or_create(
        "switch", DOMAIN, f"{FAKE_ENTRY_ID}:bench:abort", config_entry=entry
    )
    old_select = entity_registry.async_get_or_create(
        "select", DOMAIN, f"{FAKE_ENTRY_ID}:bench:config", config_entry=entry
    )
    kept = entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{FAKE_ENTRY_ID}:bench:voltage", config_entry=entry
    )
    abort = _channel("bench", "abort", ChannelKind.ACTION, writable=True)
    source = FakeSource(initial=[*EVERYTHING, abort, SAVE_REPLACING_CONFIG])
    fake_kind.next_sources.append(source)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await _settle(hass, entry)
    assert entity_registry.async_get(old_switch.entity_id) is None
    assert entity_registry.async_get(old_select.entity_id) is None
    assert entity_registry.async_get(kept.entity_id) is not None
    assert _entity_id(hass, "button", f"{FAKE_ENTRY_ID}:bench:abort")
    assert _entity_id(hass, "button", f"{FAKE_ENTRY_ID}:bench:config.save")

    # A channel replaced within the run leaves the model too: its readings are ignored.
    ignored = entry.runtime_data.ignored_readings
    source.push(Reading("bench", "config", "x"))
    await _settle(hass, entry)
    assert entry.runtime_data.ignored_readings == ignored + 1


async def test_a_channel_replaced_in_the_same_run_loses_its_entity(
    hass: HomeAssistant, fake_kind: FakeKind, entity_registry: er.EntityRegistry
) -> None:
    """A select shown in this run, then replaced by buttons: its entity goes, although no earlier run had it."""
    config = _channel(
        "bench", "config", ChannelKind.ENUM, writable=True, options=("a", "b")
    )
    entry, source = await _setup(hass, fake_kind, (*EVERYTHING, config))
    select = _entity_id(hass, "select", f"{FAKE_ENTRY_ID}:bench:config")
    source.push(SAVE_REPLACING_CONFIG)
    await _settle(hass, entry)
    assert entity_registry.async_get(select) is None
    assert hass.states.get(select) is None
    assert _entity_id(hass, "button", f"{FAKE_ENTRY_ID}:bench:config.save")


async def test_messages_of_a_disconnected_device_still_arrive(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A device whose hardware link is off keeps its Message event and Last message (why connecting failed)."""
    entry, source = await _setup(hass, fake_kind)
    source.push(DeviceConnection("bench", connected=False))
    source.push(Message("bench", "Port not found", MessageLevel.ERROR))
    await _settle(hass, entry)
    event = hass.states.get(
        _entity_id(hass, "event", f"{FAKE_ENTRY_ID}:bench:_messages")
    )
    assert event is not None
    assert (event.attributes["event_type"], event.attributes["message"]) == (
        "error",
        "Port not found",
    )
    last = _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:_last_message")
    assert state_of(hass, last) == "Port not found"


def _count_changes(hass: HomeAssistant, entity_id: str) -> list[str]:
    """Collect the states an entity goes through (one entry per state_changed)."""
    seen: list[str] = []

    @callback
    def changed(event: HassEvent[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        seen.append("" if new is None else new.state)

    async_track_state_change_event(hass, [entity_id], changed)
    return seen


async def test_a_burst_of_one_channel_is_one_write_of_the_newest_value(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Many values of a channel in one push: the state shows the newest once; the rest are coalesced."""
    entry, source = await _setup(hass, fake_kind)
    power = _entity_id(hass, "sensor", "aabbccddeeff:power")
    energy = _entity_id(hass, "sensor", "aabbccddeeff:energy")
    power_states = _count_changes(hass, power)
    energy_states = _count_changes(hass, energy)
    before = entry.runtime_data.coalesced_writes
    source.push(
        *(Reading("plug-1", "power", float(n)) for n in range(100)),
        Reading("plug-1", "energy", 4.0),
    )
    await _settle(hass, entry)
    assert power_states == ["99.0"]
    assert energy_states == ["4.0"]
    assert entry.runtime_data.coalesced_writes - before == 99
    # Values pushed in separate passes are each written.
    source.push(Reading("plug-1", "power", 1.5))
    await _settle(hass, entry)
    source.push(Reading("plug-1", "power", 2.5))
    await _settle(hass, entry)
    assert power_states == ["99.0", "1.5", "2.5"]


async def test_happenings_in_a_burst_all_fire(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Pulses pushed at once each fire, in order: a happening is never coalesced.

    More than two groups' worth: the hub fires them a group at a time, and the rest at the end of
    the loop pass.
    """
    entry, source = await _setup(hass, fake_kind)
    pulse = _entity_id(hass, "event", "aabbccddeeff:pulse")
    fired: list[object] = []

    @callback
    def changed(event: HassEvent[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if new is not None and "n" in new.attributes:
            fired.append(new.attributes["n"])

    async_track_state_change_event(hass, [pulse], changed)
    count = 2 * FIRES_PER_GROUP + 22
    source.push(
        *(
            Reading("plug-1", "pulse", EventData("pulse", {"n": n}))
            for n in range(count)
        )
    )
    assert fired == list(
        range(2 * FIRES_PER_GROUP)
    )  # two groups fired in the push itself
    await _settle(hass, entry)
    assert fired == list(range(count))


async def test_happenings_are_shown_before_what_came_after_them(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Pulses waiting to fire go out before a later event is applied: the device's loss here."""
    entry, source = await _setup(hass, fake_kind)
    pulse = _entity_id(hass, "event", "aabbccddeeff:pulse")
    shown: list[tuple[str, object]] = []

    @callback
    def changed(event: HassEvent[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if new is not None:
            shown.append((new.state, new.attributes.get("n")))

    async_track_state_change_event(hass, [pulse], changed)
    source.push(
        *(Reading("plug-1", "pulse", EventData("pulse", {"n": n})) for n in range(3)),
        DeviceLost("plug-1", "unplugged"),
    )
    await _settle(hass, entry)
    assert [n for _state, n in shown[:3]] == [0, 1, 2]
    assert all(state != STATE_UNAVAILABLE for state, _n in shown[:3])
    assert shown[-1][0] == STATE_UNAVAILABLE


async def test_lifecycle_events_survive_an_overfull_queue(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """Behind a file being saved the queue fills past its bound: values coalesce, nothing else is lost."""
    entry, source = await _setup(hass, fake_kind)
    hub = entry.runtime_data
    power = _entity_id(hass, "sensor", "aabbccddeeff:power")
    new_channels = [
        _channel("bench", f"extra_{n}", ChannelKind.NUMERIC, value=n) for n in range(50)
    ]
    # The file goes to the async path; everything pushed after it queues behind it, in order.
    burst: list[Event] = [Reading("plug-1", "log", BlobData(b"x", ".csv", 1))]
    for n in range(3000):
        burst.append(Reading("plug-1", "power", float(n)))
        if n % 60 == 0:
            burst.append(new_channels[n // 60])
    source.push(*burst)
    assert hub.event_queue_stats()["depth"] > 2000  # it really queued past the bound
    await _settle(hass, entry)
    assert state_of(hass, power) == "2999.0"
    assert hub.event_queue_stats()["coalesced"] > 0
    for n in range(50):
        assert state_of(
            hass, _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:extra_{n}")
        ) == str(n)


async def test_state_writes_per_loop_pass_are_bounded(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A value for each of 600 channels in one push is written over several passes, 200 at a time."""
    channels = [
        _channel("bench", f"c{n}", ChannelKind.NUMERIC, value=0) for n in range(600)
    ]
    entry, source = await _setup(hass, fake_kind, (LinkUp(), BENCH, *channels))
    hub = entry.runtime_data
    written: list[int] = []
    source.push(*(Reading("bench", f"c{n}", n + 1) for n in range(600)))
    assert len(hub._due) == 600  # nothing written inside the push itself
    while hub._due:
        before = len(hub._due)
        hub._write_due()
        written.append(before - len(hub._due))
    assert written == [200, 200, 200]
    await _settle(hass, entry)
    assert (
        state_of(hass, _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:c599"))
        == "600"
    )


async def test_entities_over_the_entry_limit_are_withheld_and_reported(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    entity_registry: er.EntityRegistry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Past Home Assistant's entity limit the last-defined channels are left out, and a repair says so."""
    channels = [
        _channel("bench", f"c{n:02}", ChannelKind.NUMERIC, value=n) for n in range(30)
    ]
    with patch("custom_components.instrument_hub.hub.ENTITY_LIMIT", 20):
        entry, _source = await _setup(hass, fake_kind, (LinkUp(), BENCH, *channels))
        enabled = entity_registry.entities.get_enabled_count_for_config_entry_id(
            entry.entry_id
        )
        assert enabled == 20
        shown = {
            e.unique_id.rsplit(":", 1)[1]
            for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
            if ":bench:c" in e.unique_id
        }
        # Deterministic: the first channels the endpoint defined, never a random set.
        assert shown == {f"c{n:02}" for n in range(len(shown))}
        hub = entry.runtime_data
        assert len(hub.withheld) == 30 - len(shown)
        issue = issue_registry.async_get_issue(DOMAIN, hub.entity_limit_issue_id())
        assert issue is not None
        assert issue.translation_placeholders is not None
        assert issue.translation_placeholders["count"] == str(len(hub.withheld))
        assert "Bench C" in issue.translation_placeholders["examples"]

        # The user disables ten; after a reload, ten more fit.
        for n in range(10):
            entity_id = _entity_id(hass, "sensor", f"{FAKE_ENTRY_ID}:bench:c{n:02}")
            entity_registry.async_update_entity(
                entity_id, disabled_by=er.RegistryEntryDisabler.USER
            )
        fake_kind.next_sources.append(FakeSource(initial=[LinkUp(), BENCH, *channels]))
        assert await hass.config_entries.async_reload(entry.entry_id)
        await _settle(hass, entry)
        hub = entry.runtime_data
        assert len(hub.withheld) == 30 - len(shown) - 10


async def test_files_are_saved_and_a_refused_save_says_why(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With file saving on, the event names the saved file; a channel folder that is a file: why."""
    folder = tmp_path / "files"
    settings = FileStoreSettings(folder=folder, max_bytes=1 << 20, keep=10)
    with patch.object(FakeKind, "file_settings", return_value=settings):
        entry, source = await _setup(hass, fake_kind)
        log = _entity_id(hass, "event", "aabbccddeeff:log")
        source.push(Reading("plug-1", "log", BlobData(b"a,b\n", ".csv", 4)))
        await _settle(hass, entry)
        state = hass.states.get(log)
        assert state is not None
        saved = Path(state.attributes["path"])
        assert saved.is_relative_to(folder)
        assert saved.read_bytes() == b"a,b\n"
        assert "reason" not in state.attributes

        # The channel's folder is now a file: nothing can be written beneath it.
        shutil.rmtree(saved.parent)
        saved.parent.write_bytes(b"in the way")
        source.push(Reading("plug-1", "log", BlobData(b"c,d\n", ".csv", 4)))
        source.push(Reading("plug-1", "log", BlobData(b"e,f\n", ".csv", 4)))
        await _settle(hass, entry)
        state = hass.states.get(log)
        assert state is not None
        assert state.attributes["path"] is None
        assert state.attributes["reason"] == "not a folder: log"
        assert saved.parent.read_bytes() == b"in the way"  # nothing overwritten
        warnings = [
            record
            for record in caplog.records
            if record.levelno == logging.WARNING
            and "not a folder" in record.getMessage()
        ]
        assert len(warnings) == 1  # once per channel, not per file


async def test_a_device_lost_twice_is_logged_once_and_a_new_hardware_id_keeps_its_identity(
    hass: HomeAssistant,
    fake_kind: FakeKind,
    device_registry: dr.DeviceRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Repeated losses log once; a device whose hardware id changes keeps its device and entities."""
    caplog.set_level(logging.INFO, logger="custom_components.instrument_hub.hub")
    entry, source = await _setup(hass, fake_kind)
    relayed_power = _entity_id(hass, "sensor", "112233445566:power")
    source.push(DeviceLost("sensor-1", "out of range"))
    source.push(DeviceLost("sensor-1", "still out of range"))
    source.push(DeviceLost("no-such-device", "never seen"))
    await _settle(hass, entry)
    assert state_of(hass, relayed_power) == STATE_UNAVAILABLE
    logged = [r.getMessage() for r in caplog.records if r.name.endswith(".hub")]
    assert sum("Mains sensor is unavailable" in line for line in logged) == 1
    assert not any("never seen" in line for line in logged)

    source.push(dataclasses.replace(RELAYED, hardware_id="ffeeddccbbaa"))
    await _settle(hass, entry)
    assert state_of(hass, relayed_power) == "-250.0"
    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, "112233445566"), entry.entry_id
    )
    assert device is not None
    assert relayed_power in {
        entity.entity_id
        for entity in er.async_entries_for_device(er.async_get(hass), device.id)
    }
    assert (
        device_registry.async_get_device_by_identifier(
            (DOMAIN, "ffeeddccbbaa"), entry.entry_id
        )
        is None
    )
    assert _entity_id(hass, "sensor", "112233445566:power") == relayed_power
