"""Every INDI property shape a driver may define, mapped to the entity a user expects."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from homeassistant.components.number import NumberMode
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.instrument_hub.const import DOMAIN

from .fake_indi import FakeIndiServer
from .helpers import (
    StatePredicate,
    set_property,
    setup_indi_entry,
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
)

CCD = "CCD Simulator"
DEFINITIONS = [
    # indilib's standard CONNECTION switch
    f'<defSwitchVector device="{CCD}" name="CONNECTION" label="Connection" group="Main Control" state="Ok" perm="rw" rule="OneOfMany" timeout="60">'
    '<defSwitch name="CONNECT" label="Connect">On</defSwitch><defSwitch name="DISCONNECT" label="Disconnect">Off</defSwitch></defSwitchVector>',
    # a mode choice: OneOfMany with three members → select
    f'<defSwitchVector device="{CCD}" name="CCD_FRAME_TYPE" label="Frame type" group="Options" state="Idle" perm="rw" rule="OneOfMany" timeout="0">'
    '<defSwitch name="FRAME_LIGHT" label="Light">On</defSwitch><defSwitch name="FRAME_BIAS" label="Bias">Off</defSwitch>'
    '<defSwitch name="FRAME_DARK" label="Dark">Off</defSwitch></defSwitchVector>',
    # independent options: AnyOfMany → one switch each
    f'<defSwitchVector device="{CCD}" name="OPTIONS" label="Options" group="Options" state="Idle" perm="rw" rule="AnyOfMany" timeout="0">'
    '<defSwitch name="COOLER" label="Cooler">Off</defSwitch><defSwitch name="FAN" label="Fan">On</defSwitch></defSwitchVector>',
    # read-only switch → binary sensor
    f'<defSwitchVector device="{CCD}" name="PARKED" label="Parked" group="Status" state="Ok" perm="ro" rule="AtMostOne">'
    '<defSwitch name="IS_PARKED" label="Parked">On</defSwitch></defSwitchVector>',
    # read-only text → sensor; a number without range, and one with a step
    f'<defTextVector device="{CCD}" name="DRIVER_INFO" label="Driver info" group="General" state="Ok" perm="ro">'
    '<defText name="DRIVER_NAME" label="Name">CCD Simulator</defText><defText name="DRIVER_VERSION" label="Version">1.0</defText></defTextVector>',
    f'<defNumberVector device="{CCD}" name="CCD_EXPOSURE" label="Exposure" group="Main Control" state="Idle" perm="rw" timeout="60">'
    '<defNumber name="CCD_EXPOSURE_VALUE" label="Duration (s)" format="%5.2f" min="0" max="0" step="0">1</defNumber></defNumberVector>',
    f'<defNumberVector device="{CCD}" name="CCD_GAIN" label="Gain" group="Main Control" state="Idle" perm="rw" timeout="0">'
    '<defNumber name="GAIN" label="Gain" format="%g" min="0" max="300" step="10">100</defNumber></defNumberVector>',
]


def _uid(entry_id: str, channel: str) -> str:
    return f"{entry_id}:{CCD}:{channel}"


async def test_switch_shapes_text_and_numbers(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """OneOfMany → select, AnyOfMany → switches, ro switch → binary sensor, ro text → sensor, numbers."""
    indi_server.definitions = DEFINITIONS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id

    frame = await wait_for_entity(hass, "select", _uid(entry_id, "CCD_FRAME_TYPE"))
    state = hass.states.get(frame)
    assert state is not None
    assert state.state == "Light"
    assert state.attributes["options"] == ["Light", "Bias", "Dark"]
    cooler = await wait_for_entity(hass, "switch", _uid(entry_id, "OPTIONS.COOLER"))
    fan = await wait_for_entity(hass, "switch", _uid(entry_id, "OPTIONS.FAN"))
    assert (state_of(hass, cooler), state_of(hass, fan)) == (STATE_OFF, STATE_ON)
    parked = await wait_for_entity(
        hass, "binary_sensor", _uid(entry_id, "PARKED.IS_PARKED")
    )
    assert state_of(hass, parked) == STATE_ON
    driver_name = await wait_for_entity(
        hass, "sensor", _uid(entry_id, "DRIVER_INFO.DRIVER_NAME")
    )
    assert state_of(hass, driver_name) == "CCD Simulator"

    exposure = await wait_for_entity(
        hass, "number", _uid(entry_id, "CCD_EXPOSURE.CCD_EXPOSURE_VALUE")
    )
    state = hass.states.get(exposure)
    assert state is not None
    assert state.attributes["mode"] == NumberMode.BOX  # min == max: no range declared
    assert state.attributes["step"] == pytest.approx(0.01)
    gain = await wait_for_entity(hass, "number", _uid(entry_id, "CCD_GAIN.GAIN"))
    state = hass.states.get(gain)
    assert state is not None
    assert (
        state.attributes["min"],
        state.attributes["max"],
        state.attributes["step"],
    ) == (0, 300, 10)

    # A select sends the chosen member On and the others Off (Off first), confirmed by the device.
    indi_server.reply_rules.append(
        lambda data: (
            f'<setSwitchVector device="{CCD}" name="CCD_FRAME_TYPE" state="Ok"><oneSwitch name="FRAME_LIGHT">Off</oneSwitch>'
            '<oneSwitch name="FRAME_BIAS">Off</oneSwitch><oneSwitch name="FRAME_DARK">On</oneSwitch></setSwitchVector>'
        ).encode()
        if b'name="CCD_FRAME_TYPE"' in data
        else None
    )
    await hass.services.async_call(
        "select", "select_option", {"entity_id": frame, "option": "Dark"}, blocking=True
    )
    assert state_of(hass, frame) == "Dark"
    sent = indi_server.received.decode()
    new_vector = sent[
        sent.index('<newSwitchVector device="CCD Simulator" name="CCD_FRAME_TYPE"') :
    ]
    assert new_vector.index('"FRAME_LIGHT">Off') < new_vector.index('"FRAME_DARK">On')
    assert new_vector.index('"FRAME_BIAS">Off') < new_vector.index('"FRAME_DARK">On')

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "select",
            "select_option",
            {"entity_id": frame, "option": "Flat"},
            blocking=True,
        )


async def test_connection_switch_off_makes_the_device_unavailable(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A CONNECTION switch Off (indilib): the device's entities go unavailable, except the control that reconnects."""
    indi_server.definitions = DEFINITIONS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    connection = await wait_for_entity(hass, "select", _uid(entry_id, "CONNECTION"))
    gain = await wait_for_entity(hass, "number", _uid(entry_id, "CCD_GAIN.GAIN"))
    assert state_of(hass, connection) == "Connect"

    await indi_server.push(
        f'<setSwitchVector device="{CCD}" name="CONNECTION" state="Ok"><oneSwitch name="CONNECT">Off</oneSwitch>'
        '<oneSwitch name="DISCONNECT">On</oneSwitch></setSwitchVector>'
    )
    await wait_for_state(hass, gain, state_is(STATE_UNAVAILABLE))
    assert state_of(hass, connection) == "Disconnect"

    await indi_server.push(
        f'<setSwitchVector device="{CCD}" name="CONNECTION" state="Ok"><oneSwitch name="CONNECT">On</oneSwitch>'
        '<oneSwitch name="DISCONNECT">Off</oneSwitch></setSwitchVector>'
    )
    await wait_for_state(hass, gain, state_is("100.0"))


async def test_messages_fire_event_entities(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A device's message fires its device's Message event; a server message fires the server's."""
    indi_server.definitions = DEFINITIONS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    device_messages = await wait_for_entity(hass, "event", _uid(entry_id, "_messages"))
    server_messages = await wait_for_entity(hass, "event", f"{entry_id}:_messages")
    assert state_of(hass, device_messages) == STATE_UNKNOWN

    await indi_server.push(
        f'<message device="{CCD}" timestamp="2026-11-21T04:40:41" message="Exposure done"/>'
    )
    state = await wait_for_state(hass, device_messages, state_not(STATE_UNKNOWN))
    assert state is not None
    assert state.attributes["event_type"] == "info"
    assert state.attributes["message"] == "Exposure done"

    await indi_server.push(
        '<message timestamp="2026-11-21T04:40:42" message="Server restarting soon"/>'
    )
    state = await wait_for_state(hass, server_messages, state_not(STATE_UNKNOWN))
    assert state is not None
    assert state.attributes["message"] == "Server restarting soon"

    # A vector's Alert message is a warning of its device.
    await indi_server.push(
        f'<setNumberVector device="{CCD}" name="CCD_GAIN" state="Alert" message="Gain not supported">'
        '<oneNumber name="GAIN">100</oneNumber></setNumberVector>'
    )
    state = await wait_for_state(
        hass,
        device_messages,
        lambda s: s is not None and s.attributes.get("message") == "Gain not supported",
    )
    assert state is not None
    assert state.attributes["event_type"] == "warning"


async def test_link_loss_and_recovery_logged_once(
    hass: HomeAssistant, indi_server: FakeIndiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Dropping the connection makes everything unavailable; the reconnect restores it, logging once each way."""
    indi_server.definitions = DEFINITIONS
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    gain = await wait_for_entity(hass, "number", _uid(entry_id, "CCD_GAIN.GAIN"))
    connected = await wait_for_entity(hass, "binary_sensor", f"{entry_id}:_link")
    caplog.set_level(logging.INFO, logger="custom_components.instrument_hub")
    caplog.clear()

    await indi_server.drop_clients()
    await wait_for_state(hass, gain, state_is(STATE_UNAVAILABLE))
    assert state_of(hass, connected) == STATE_OFF
    await wait_for_state(hass, gain, state_is("100.0"), timeout=15)
    assert state_of(hass, connected) == STATE_ON
    assert len(indi_server.connections) == 2
    assert indi_server.received.count(b'<getProperties version="1.7"') == 2

    hub_lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "custom_components.instrument_hub.hub"
    ]
    assert len([line for line in hub_lines if "is unavailable" in line]) == 1
    assert len([line for line in hub_lines if "is available again" in line]) == 1

    # Writing while the link is down fails with a translated error, not a traceback.
    await indi_server.drop_clients()
    await wait_for_state(hass, gain, state_is(STATE_UNAVAILABLE))
    with pytest.raises(HomeAssistantError) as err:
        await set_property(hass, entry_id, CCD, "CCD_GAIN", {"GAIN": 120})
    assert err.value.translation_key == "not_connected"


BLOB_DEF = (
    f'<defBLOBVector device="{CCD}" name="CCD1" label="Image" group="Image" state="Idle" perm="ro">'
    '<defBLOB name="CCD1" label="Image"/></defBLOBVector>'
)


def _blob(data: bytes, index: int) -> str:
    return (
        f'<setBLOBVector device="{CCD}" name="CCD1" state="Ok" timestamp="2026-11-21T05:00:{index:02d}">'
        f'<oneBLOB name="CCD1" format=".fits" size="{len(data)}">{base64.b64encode(data).decode()}</oneBLOB></setBLOBVector>'
    )


def _saved(data: bytes) -> StatePredicate:
    """Predicate: the event's file holds ``data`` (files are named by arrival, not device time)."""

    def saved(state: State | None) -> bool:
        path = state.attributes.get("path") if state is not None else None
        return path is not None and Path(path).read_bytes() == data

    return saved


async def test_blob_options_cap_and_retention(
    hass: HomeAssistant,
    indi_server: FakeIndiServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Files over the size cap are not saved (warned once); only the newest N are kept."""
    hass.config.config_dir = str(tmp_path)
    indi_server.definitions = [BLOB_DEF]
    entry_id = (
        await setup_indi_entry(
            hass,
            indi_server,
            {"blob_folder": "frames", "blob_max_mb": 1, "blob_keep": 2},
        )
    ).entry_id
    image = await wait_for_entity(hass, "event", _uid(entry_id, "CCD1.CCD1"))
    await indi_server.wait_received(b"<enableBLOB")

    for index in range(3):
        await indi_server.push(_blob(b"frame%d" % index, index))
        await wait_for_state(hass, image, _saved(b"frame%d" % index))
    state = hass.states.get(image)
    assert state is not None
    assert "reason" not in state.attributes  # saved: nothing to explain
    folder = Path(state.attributes["path"]).parent
    assert {p.read_bytes() for p in folder.iterdir()} == {b"frame1", b"frame2"}

    # Over the cap: not transferred into a file, warned once, the next small file still arrives.
    big = b"x" * (1024 * 1024 + 1)
    caplog.clear()
    await indi_server.push(_blob(big, 9))
    await indi_server.push(_blob(big, 10))
    await indi_server.push(_blob(b"frame11", 11))
    await wait_for_state(hass, image, _saved(b"frame11"))
    assert {p.read_bytes() for p in folder.iterdir()} == {b"frame2", b"frame11"}
    skipped = [
        r
        for r in caplog.records
        if "BLOB" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(skipped) == 1


async def test_blobs_disabled_sends_no_enable(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """With file reception off, the server is never asked for BLOBs."""
    indi_server.definitions = [BLOB_DEF, *DEFINITIONS[-1:]]
    entry_id = (
        await setup_indi_entry(hass, indi_server, {"blobs_enabled": False})
    ).entry_id
    await wait_for_entity(hass, "number", _uid(entry_id, "CCD_GAIN.GAIN"))
    image = await wait_for_entity(hass, "event", _uid(entry_id, "CCD1.CCD1"))
    assert b"<enableBLOB" not in indi_server.received

    # A server that pushes files anyway: the event still tells, nothing is written.
    await indi_server.push(_blob(b"unwanted", 1))
    state = await wait_for_state(hass, image, state_not(STATE_UNKNOWN))
    assert state is not None
    assert state.attributes["size"] == 8
    assert state.attributes["path"] is None


async def test_unwritable_blob_folder_is_reported_not_fatal(
    hass: HomeAssistant,
    indi_server: FakeIndiServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the folder cannot be created, the event fires without a path and a warning says why."""
    hass.config.config_dir = str(tmp_path)
    (tmp_path / "frames").write_text("a file where the folder should be")
    indi_server.definitions = [BLOB_DEF]
    entry_id = (
        await setup_indi_entry(hass, indi_server, {"blob_folder": "frames"})
    ).entry_id
    image = await wait_for_entity(hass, "event", _uid(entry_id, "CCD1.CCD1"))
    await indi_server.wait_received(b"<enableBLOB")
    await indi_server.push(_blob(b"frame", 1))
    state = await wait_for_state(hass, image, state_not(STATE_UNKNOWN))
    assert state is not None
    assert state.attributes["path"] is None
    assert state.attributes["reason"] == "not a folder: frames"
    assert any(
        "not saved" in r.getMessage() and r.levelno == logging.WARNING
        for r in caplog.records
    )
    await indi_server.push(_blob(b"frame", 2))
    await indi_server.push(f'<message device="{CCD}" message="still alive"/>')
    messages = await wait_for_entity(hass, "event", _uid(entry_id, "_messages"))
    await wait_for_state(hass, messages, state_not(STATE_UNKNOWN))


async def test_redefinition_that_changes_the_platform_replaces_the_entity(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A read-only number redefined as writable becomes a number entity; the sensor goes, no duplicate."""
    read_only = (
        f'<defNumberVector device="{CCD}" name="CCD_OFFSET" label="Offset" group="Main" state="Ok" perm="ro">'
        '<defNumber name="OFFSET" label="Offset" format="%g" min="0" max="100" step="1">10</defNumber></defNumberVector>'
    )
    indi_server.definitions = [read_only]
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    sensor = await wait_for_entity(hass, "sensor", _uid(entry_id, "CCD_OFFSET.OFFSET"))
    assert state_of(hass, sensor) == "10.0"

    await indi_server.push(
        read_only.replace('perm="ro"', 'perm="rw"').replace(">10<", ">12<")
    )
    number = await wait_for_entity(hass, "number", _uid(entry_id, "CCD_OFFSET.OFFSET"))
    assert state_of(hass, number) == "12.0"
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    assert (
        registry.async_get_entity_id(
            "sensor", DOMAIN, _uid(entry_id, "CCD_OFFSET.OFFSET")
        )
        is None
    )
    assert hass.states.get(sensor) is None
