"""Captured INDI traffic, replayed by a scripted server, as a user sees it in Home Assistant."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
import zlib

from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.events import join_key

from .fake_indi import FakeIndiServer, lines_matching, server_lines
from .helpers import (
    setup_indi_entry,
    state_is,
    state_of,
    wait_for_entity,
    wait_for_state,
)

THERMO = server_lines("capture_thermo.txt")
EXTRAS = server_lines("capture_extras.txt")
THERMO_DEFS = lines_matching(THERMO, r"^<def")[:4]
EXTRAS_DEFS = lines_matching(EXTRAS, r"^<def")[:3]


async def test_thermostat_definitions_become_a_device_with_entities(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """One device 'Thermostat' under the server, with typed entities and the captured values."""
    indi_server.definitions = THERMO_DEFS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id

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

    assert temperature == "sensor.thermostat_temperature"
    state = hass.states.get(temperature)
    assert state is not None
    assert state.state == "19.6"
    # The captured driver names no unit ("temperature" could be °C, °F or K): none is guessed.
    assert "unit_of_measurement" not in state.attributes
    assert "device_class" not in state.attributes
    assert state.attributes["state_class"] == "measurement"
    assert state.attributes["property_state"] == "ok"

    state = hass.states.get(target)
    assert state is not None
    assert state.state == "15.0"
    assert state.attributes["min"] == -50
    assert state.attributes["max"] == 99
    assert state.attributes["step"] == pytest.approx(0.1)

    assert state_of(hass, log_switch) == STATE_OFF
    assert state_of(hass, logs) == STATE_UNKNOWN

    devices = dr.async_get(hass)
    thermostat = devices.async_get_device_by_identifier(
        (DOMAIN, f"{entry_id}:Thermostat"), entry_id
    )
    server = devices.async_get_device_by_identifier((DOMAIN, entry_id), entry_id)
    assert thermostat is not None and server is not None
    assert thermostat.name == "Thermostat"
    assert thermostat.via_device_id == server.id
    connected = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{entry_id}:_link"
    )
    assert connected is not None
    assert state_of(hass, connected) == STATE_ON

    # Pushed values update the state.
    await indi_server.push(
        lines_matching(THERMO, r"setNumberVector.*temperaturevector")[0]
    )
    await wait_for_state(hass, temperature, state_is("19.4"))


async def test_light_text_and_sexagesimal(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Light → enum sensor; rw Text → text entity; '%010.6m' number → plain float sensor."""
    indi_server.definitions = EXTRAS_DEFS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    light = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:heaterlight.heater"
    )
    note = await wait_for_entity(hass, "text", f"{entry_id}:Extras:notevector.note")
    hour_angle = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:havector.hourangle"
    )

    state = hass.states.get(light)
    assert state is not None
    assert state.state == "idle"
    assert state.attributes["options"] == ["idle", "ok", "busy", "alert"]
    assert state.attributes["device_class"] == "enum"
    assert state_of(hass, note) == "hello"
    assert float(state_of(hass, hour_angle)) == pytest.approx(3.7625)

    await indi_server.push(lines_matching(EXTRAS, r"setLightVector.*>Ok<")[0])
    await wait_for_state(hass, light, state_is("ok"))
    await indi_server.push(
        '<setNumberVector device="Extras" name="havector" state="Ok"><oneNumber name="hourangle">-10:30:18</oneNumber></setNumberVector>'
    )
    state = await wait_for_state(
        hass, hour_angle, lambda s: s is not None and s.state.startswith("-10.50")
    )
    assert state is not None and float(state.state) == pytest.approx(-10.505)


async def test_text_write_is_escaped_and_confirmed(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Setting a text sends escaped XML; the entity shows what the server confirmed."""
    indi_server.definitions = EXTRAS_DEFS
    reply = lines_matching(EXTRAS, r"^<setTextVector")[0].encode()
    indi_server.reply_rules.append(
        lambda data: reply if b"<newTextVector" in data else None
    )
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    note = await wait_for_entity(hass, "text", f"{entry_id}:Extras:notevector.note")

    await hass.services.async_call(
        "text",
        "set_value",
        {"entity_id": note, "value": "changed & <ok>"},
        blocking=True,
    )
    assert state_of(hass, note) == "changed & <ok>"
    assert b"changed &amp; &lt;ok&gt;</oneText>" in indi_server.received


async def test_delete_and_redefine(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """DelProperty of a vector or a device → unavailable; re-definition → back, no duplicates."""
    indi_server.definitions = EXTRAS_DEFS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    light = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:heaterlight.heater"
    )
    note = await wait_for_entity(hass, "text", f"{entry_id}:Extras:notevector.note")
    hour_angle = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:havector.hourangle"
    )
    registry = er.async_get(hass)
    entities_before = len(er.async_entries_for_config_entry(registry, entry_id))

    await indi_server.push(
        lines_matching(EXTRAS, r'^<delProperty device="Extras" name="havector"')[0]
    )
    await wait_for_state(hass, hour_angle, state_is(STATE_UNAVAILABLE))
    assert state_of(hass, light) == "idle"

    await indi_server.push(
        lines_matching(EXTRAS, r'^<delProperty device="Extras" timestamp')[0]
    )
    await wait_for_state(hass, light, state_is(STATE_UNAVAILABLE))
    await wait_for_state(hass, note, state_is(STATE_UNAVAILABLE))

    for line in lines_matching(EXTRAS, r'message="re-defined"><def'):
        await indi_server.push(line)
    await wait_for_state(hass, light, state_is("ok"))
    await wait_for_state(hass, note, state_is("changed & <ok>"))
    await wait_for_state(
        hass, hour_angle, lambda s: s is not None and s.state != STATE_UNAVAILABLE
    )
    # No entity duplicated; the one new entity is the device's last message (the re-definition spoke).
    after = er.async_entries_for_config_entry(registry, entry_id)
    assert len(after) == entities_before + 1
    assert sum(e.unique_id == f"{entry_id}:Extras:_last_message" for e in after) == 1
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    assert sorted(d.name or "" for d in devices) == sorted(
        ["Extras", f"INDI server 127.0.0.1:{indi_server.port}"]
    )


async def test_malformed_xml_is_logged_once_and_skipped(
    hass: HomeAssistant, indi_server: FakeIndiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Broken or truncated elements mid-stream are skipped, logged once; later elements still apply."""
    indi_server.definitions = THERMO_DEFS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    temperature = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Thermostat:temperaturevector.temperature"
    )
    caplog.clear()
    caplog.set_level(logging.DEBUG)

    def reading(value: str) -> str:
        return (
            '<setNumberVector device="Thermostat" name="temperaturevector" state="Ok">'
            f'<oneNumber name="temperature">{value}</oneNumber></setNumberVector>'
        )

    await indi_server.push(reading("19.40"))
    await wait_for_state(hass, temperature, state_is("19.4"))
    await indi_server.push(
        # truncated element, then garbage, then a mismatched close tag, then an unparsable number
        '<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temperature">1'
        "\x00<<>> garbage &&"
        '<setNumberVector device="Thermostat" name="temperaturevector" state="Ok"><oneNumber name="temperature">20.0</oneNumbr></setNumberVector>'
        + reading("not-a-number")
        + reading("21.50")
    )
    await wait_for_state(hass, temperature, state_is("21.5"))
    await indi_server.push(reading("<<truncated") + reading("22.00"))
    await wait_for_state(hass, temperature, state_is("22.0"))
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("custom_components")
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "malformed" in warnings[0].getMessage().lower()


async def test_blobs_saved_and_event_fired(
    hass: HomeAssistant, indi_server: FakeIndiServer, tmp_path: Path
) -> None:
    """EnableBLOB is sent; a pushed BLOB (plain or .z) is saved under the config folder and fires the event."""
    hass.config.config_dir = str(tmp_path)
    indi_server.definitions = THERMO_DEFS
    entry_id = (
        await setup_indi_entry(
            hass, indi_server, {"blob_folder": "blobs", "blob_keep": 2}
        )
    ).entry_id
    logs = await wait_for_entity(
        hass, "event", f"{entry_id}:Thermostat:logsvector.templogs"
    )
    await indi_server.wait_received(
        b'<enableBLOB device="Thermostat" name="logsvector">Also</enableBLOB>'
    )

    blob_line = lines_matching(THERMO, r"^<setBLOBVector")[0]
    await indi_server.push(blob_line)
    state = await wait_for_state(
        hass, logs, lambda s: s is not None and s.state != STATE_UNKNOWN
    )
    assert state is not None
    assert state.attributes["event_type"] == "received"
    # indipydriver's size attribute says 84 but the base64 holds 112 bytes (four 28-byte rows):
    # the size reported is what was actually received.
    assert state.attributes["size"] == 112
    assert state.attributes["format"] == ".csv"
    saved = Path(state.attributes["path"])
    assert saved.is_relative_to(tmp_path / "blobs")
    assert saved.suffix == ".csv"
    assert saved.read_bytes().startswith(b"2026-11-21T04:40:45.0,18.20\n")
    assert len(saved.read_bytes()) == 112

    csv = b"2026-11-21T05:00:00.0,18.00\n" * 50
    packed = base64.b64encode(zlib.compress(csv)).decode()
    await indi_server.push(
        '<setBLOBVector device="Thermostat" name="logsvector" state="Ok" timestamp="2026-11-21T05:00:01">'
        f'<oneBLOB name="templogs" format=".csv.z" size="{len(csv)}">{packed}</oneBLOB></setBLOBVector>'
    )
    state = await wait_for_state(
        hass, logs, lambda s: s is not None and s.attributes.get("size") == len(csv)
    )
    assert state is not None
    assert state.attributes["format"] == ".csv"
    assert Path(state.attributes["path"]).read_bytes() == csv


async def test_blob_names_cannot_escape_the_folder(
    hass: HomeAssistant, indi_server: FakeIndiServer, tmp_path: Path
) -> None:
    """A device called '../../x' still saves inside the configured folder."""
    hass.config.config_dir = str(tmp_path / "config")
    indi_server.definitions = [
        '<defBLOBVector device="../../x" name="../up" label="Evil" group="G" state="Ok" perm="ro">'
        '<defBLOB name="/etc/passwd" label="E"/></defBLOBVector>'
    ]
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    # Dots in names are escaped in the channel key (keys of distinct names never collide).
    evil = await wait_for_entity(
        hass, "event", f"{entry_id}:../../x:{join_key('../up', '/etc/passwd')}"
    )
    await indi_server.wait_received(b"<enableBLOB")
    payload = base64.b64encode(b"owned").decode()
    await indi_server.push(
        '<setBLOBVector device="../../x" name="../up" state="Ok">'
        f'<oneBLOB name="/etc/passwd" format="/../../.sh" size="5">{payload}</oneBLOB></setBLOBVector>'
    )
    state = await wait_for_state(
        hass, evil, lambda s: s is not None and s.state != STATE_UNKNOWN
    )
    assert state is not None
    saved = Path(state.attributes["path"]).resolve()
    assert saved.is_relative_to((tmp_path / "config" / "instrument_hub").resolve())
    assert saved.read_bytes() == b"owned"
    assert not list(tmp_path.glob("x*")) and not (tmp_path / "up").exists()


async def test_property_gone_during_an_outage_stays_unavailable(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """After a reconnect only what the server defines again comes back; a vanished property stays unavailable."""
    indi_server.definitions = EXTRAS_DEFS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    light = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:heaterlight.heater"
    )
    hour_angle = await wait_for_entity(
        hass, "sensor", f"{entry_id}:Extras:havector.hourangle"
    )

    indi_server.definitions = [d for d in EXTRAS_DEFS if 'name="havector"' not in d]
    await indi_server.drop_clients()
    await wait_for_state(hass, light, state_is(STATE_UNAVAILABLE))
    await wait_for_state(hass, light, state_is("idle"), timeout=15)
    assert len(indi_server.connections) == 2
    assert state_of(hass, hour_angle) == STATE_UNAVAILABLE
