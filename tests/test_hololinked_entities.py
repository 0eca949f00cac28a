"""The entities of hololinked Things, pinned; bad input in a stream; unload; diagnostics."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_URL, STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
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

from custom_components.instrument_hub.const import CONF_SOURCE_KIND, DOMAIN
from custom_components.instrument_hub.hub import Hub
from custom_components.instrument_hub.sources.hololinked import HololinkedSource

from .fake_thing import FakeThing, fake_thing
from .helpers import state_is, state_of, wait_for_state
from .hololinked_peer import ThingPeer, shared_hololinked_fixture

# Nothing pushes (no acquisition): the states are the Things' defaults, the same on every run.
meter = shared_hololinked_fixture("meter", "maestro", autostart=False)
stage = shared_hololinked_fixture("stage", "bench")
PLATFORMS = (
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
)
METER_PLATFORMS = tuple(
    p for p in PLATFORMS if p not in (Platform.SELECT, Platform.TEXT)
)

ENTRY_ID = "01JHOLOLINKEDENTRY00000000"
QUIET_QUEUE = {
    "depth": 0,
    "rate": 2.5,
    "wait_time": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
}


async def _setup(
    hass: HomeAssistant, url: str, thing_id: str, title: str, thing_title: str
) -> MockConfigEntry:
    """Set up an entry (fixed id and title, so that the snapshots do not depend on the port)."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title=title,
        unique_id=f"hololinked:{url.split('/')[2]}/{thing_id}",
        data={
            CONF_SOURCE_KIND: "hololinked",
            CONF_URL: url,
            "thing_id": thing_id,
            "thing_title": thing_title,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    await entry.runtime_data.async_flush()
    await hass.async_block_till_done()
    return entry


@pytest.mark.peer
@pytest.mark.usefixtures("all_entities_enabled", "socket_enabled")
@pytest.mark.parametrize("platform", METER_PLATFORMS)
async def test_entities_of_the_meter(
    hass: HomeAssistant,
    meter: ThingPeer,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """The seed's meter: sensors, events, controls and buttons, with names, units and classes."""
    with (
        patch("custom_components.instrument_hub.PLATFORMS", [platform]),
        patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
    ):
        entry = await _setup(
            hass, meter.url, "energy-meter", "Bench meter", "GentecMaestroEnergyMeter"
        )
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


@pytest.mark.peer
@pytest.mark.usefixtures("socket_enabled")
async def test_devices_of_the_meter(
    hass: HomeAssistant,
    meter: ThingPeer,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The endpoint's device and the Thing's, linked to it."""
    entry = await _setup(
        hass, meter.url, "energy-meter", "Bench meter", "GentecMaestroEnergyMeter"
    )
    devices = sorted(
        dr.async_entries_for_config_entry(device_registry, entry.entry_id),
        key=lambda device: device.name or "",
    )
    assert devices == snapshot


@pytest.mark.peer
@pytest.mark.usefixtures("all_entities_enabled", "socket_enabled")
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_entities_of_the_stage(
    hass: HomeAssistant,
    stage: ThingPeer,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Another Thing: an enum, texts, an integer, an object and a scalar event."""
    with (
        patch("custom_components.instrument_hub.PLATFORMS", [platform]),
        patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
    ):
        entry = await _setup(hass, stage.url, "thermal-stage", "Stage", "ThermalStage")
        await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_bad_input_in_a_stream_leaves_the_entities_updating(
    hass: HomeAssistant, thing: FakeThing
) -> None:
    """Malformed lines and non-JSON data are skipped; the next good event still shows."""
    await _setup(hass, thing.url, "energy-meter", "Meter", "FakeMaestro")
    energy = "sensor.energy_meter_energy"
    await thing.wait_subscribed("data-point-event")
    thing.send("data-point-event", b'data: {"timestamp": 1.0, "energy": 0.001}\n\n')
    await wait_for_state(hass, energy, state_is("0.001"))
    thing.send(
        "data-point-event", b'\xff\xfe garbage\n\ndata: <html>\n\ndata: {"energy"'
    )
    thing.send(
        "data-point-event",
        b': 0.5}\nnonsense\n\ndata: {"timestamp": 2.0, "energy": null}\n\n',
    )
    await wait_for_state(hass, energy, state_is(STATE_UNKNOWN))
    thing.send("data-point-event", b'data: {"timestamp": 3.0, "energy": 0.002}\n\n')
    await wait_for_state(hass, energy, state_is("0.002"))
    event = hass.states.get("event.energy_meter_data_point_event")
    assert event is not None and event.attributes["energy"] == 0.002


async def test_unload_leaves_nothing_running(
    hass: HomeAssistant, thing: FakeThing
) -> None:
    """Unloading stops every subscription and task; the entities become unavailable."""
    entry = await _setup(hass, thing.url, "energy-meter", "Meter", "FakeMaestro")
    source = entry.runtime_data.source
    assert isinstance(source, HololinkedSource)
    await thing.wait_subscribed("data-point-event")
    streams = source.diagnostics()["streams"]
    assert len(streams) == 4 and all(stream["open"] for stream in streams.values())
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert source.diagnostics()["streams"] == {}
    assert source.diagnostics()["link_up"] is False
    await thing.wait_unsubscribed()  # the server saw every subscription end
    assert state_of(hass, "sensor.energy_meter_energy") == STATE_UNAVAILABLE


async def test_diagnostics_are_redacted(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, socket_enabled: None
) -> None:
    """URL and credentials are redacted; the Thing's model and the streams' figures are there."""
    async with fake_thing(credentials=("lab", "pa55word")) as thing:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=f"FakeMaestro (127.0.0.1:{thing.port})",
            data={
                CONF_SOURCE_KIND: "hololinked",
                CONF_URL: thing.url,
                "username": "lab",
                "password": "pa55word",
                "thing_id": "energy-meter",
                "thing_title": "FakeMaestro",
            },
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
            hass, hass_client, entry
        )
        source = diagnostics["hub"]["source"]
        assert source["events"] == ["data_point_event", "statistics_event"]
        assert source["buttons"] == ["start_acquisition", "stop_acquisition"]
        assert source["credentials"] == "Credentials(basic)"
        assert set(source["streams"]) == {
            "data_point_event",
            "statistics_event",
            "state/change-event",
            "wavelength/change-event",
        }
        text = str(diagnostics)
        for secret in ("pa55word", str(thing.port), "127.0.0.1"):
            assert secret not in text, secret
        assert diagnostics["entry"]["data"]["username"] == "**REDACTED**"


async def test_refused_credentials_at_setup_ask_for_new_ones(
    hass: HomeAssistant, socket_enabled: None
) -> None:
    """Stored credentials the Thing refuses: the setup fails for reauthentication, not for a retry."""
    async with fake_thing(credentials=("lab", "new")) as thing:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title="Meter",
            data={
                CONF_SOURCE_KIND: "hololinked",
                CONF_URL: thing.url,
                "username": "lab",
                "password": "old",
                "thing_id": "energy-meter",
                "thing_title": "FakeMaestro",
            },
        )
        entry.add_to_hass(hass)
        assert not await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state in {
            ConfigEntryState.SETUP_ERROR
        }  # no narrowing: it loads below
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [(f["context"]["source"], f["step_id"]) for f in flows] == [
            ("reauth", "hololinked_reauth")
        ]
        result = await hass.config_entries.flow.async_configure(
            flows[0]["flow_id"], {"username": "lab", "password": "new"}
        )
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_to_the_moved_thing_keeps_its_entities(
    hass: HomeAssistant, entity_registry: er.EntityRegistry, socket_enabled: None
) -> None:
    """The Thing now answers at another port: same device, same entity ids, values from there."""
    async with fake_thing() as old, fake_thing() as new:
        entry = await _setup(hass, old.url, "energy-meter", "Meter", "FakeMaestro")
        before = sorted(
            (e.entity_id, e.unique_id)
            for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        )
        new.properties["wavelength"] = 633
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: new.url}
        )
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        await wait_for_state(hass, "number.energy_meter_wavelength", state_is("633"))
        after = sorted(
            (e.entity_id, e.unique_id)
            for e in er.async_entries_for_config_entry(entity_registry, entry.entry_id)
        )
        assert after == before
        assert new.subscribers("data-point-event") == 1
