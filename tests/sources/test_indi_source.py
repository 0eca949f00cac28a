"""Tests of the INDI source against a scripted INDI server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
import json
import logging
from pathlib import Path
import random
import threading
from typing import Any
import zlib

from defusedxml.ElementTree import fromstring
import pytest

from custom_components.instrument_hub.blob_store import spool_folder
from custom_components.instrument_hub.events import (
    BlobData,
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
    DeviceConnection,
    DeviceFound,
    DeviceLost,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
)
from custom_components.instrument_hub.sources.base import (
    CannotConnect,
    CommandRejected,
    CommandTimeout,
    InvalidValue,
    NotConnected,
    UnknownTarget,
)
from custom_components.instrument_hub.sources.indi import (
    IndiSource,
    blobs as blobs_module,
    commands as commands_module,
    source as source_module,
)
from custom_components.instrument_hub.sources.indi.client import FEED_BYTES
from custom_components.instrument_hub.sources.indi.mapping import DEVICE_STATE_CHANNEL
from custom_components.instrument_hub.sources.indi.stream import parse_element
from tests.fake_indi import WAIT_SECONDS, FakeIndiServer, ReplyRule, server_lines

from .conftest import EventRecorder

THERMO = server_lines("capture_thermo.txt")
EXTRAS = server_lines("capture_extras.txt")
THERMO_DEFS = "".join(THERMO[:4])
EXTRAS_DEFS = "".join(EXTRAS[:3])

MOUNT_DEFS = (
    '<defSwitchVector device="Mount" name="CONNECTION" label="Connection" group="Main" state="Idle" '
    'perm="rw" rule="OneOfMany" timeout="60"><defSwitch name="CONNECT" label="Connect">On</defSwitch>'
    '<defSwitch name="DISCONNECT" label="Disconnect">Off</defSwitch></defSwitchVector>'
    '<defTextVector device="Mount" name="DRIVER_INFO" label="Driver Info" group="General" state="Idle" '
    'perm="ro"><defText name="DRIVER_NAME" label="Name">Telescope Simulator</defText>'
    '<defText name="DRIVER_EXEC" label="Exec">indi_simulator_telescope</defText>'
    '<defText name="DRIVER_VERSION" label="Version">1.0</defText></defTextVector>'
    '<defNumberVector device="Mount" name="EQUATORIAL_EOD_COORD" label="Eq. Coordinates" group="Main" '
    'state="Idle" perm="rw" timeout="60"><defNumber name="RA" label="RA" format="%010.6m" min="0" '
    'max="24" step="0">3:45:45</defNumber><defNumber name="DEC" label="DEC" format="%010.6m" '
    'min="-90" max="90" step="0">-10:30:18</defNumber></defNumberVector>'
    '<defSwitchVector device="Mount" name="SLEW_RATE" label="Slew Rate" group="Motion" state="Idle" '
    'perm="rw" rule="OneOfMany" timeout="0"><defSwitch name="1x" label="Guide">On</defSwitch>'
    '<defSwitch name="2x" label="Centering">Off</defSwitch><defSwitch name="3x" label="Find">Off'
    "</defSwitch></defSwitchVector>"
    '<defSwitchVector device="Mount" name="DUP" label="Dup" group="Motion" state="Idle" perm="rw" '
    'rule="OneOfMany"><defSwitch name="A" label="Same">Off</defSwitch>'
    '<defSwitch name="B" label="Same">On</defSwitch></defSwitchVector>'
    '<defSwitchVector device="Mount" name="OPTIONS" label="Options" group="Options" state="Idle" '
    'perm="rw" rule="AnyOfMany"><defSwitch name="BEEP" label="Beep">On</defSwitch>'
    '<defSwitch name="TRACK" label="Track">Off</defSwitch></defSwitchVector>'
    '<defSwitchVector device="Mount" name="PARK_MODE" label="Park mode" group="Options" state="Idle" '
    'perm="rw" rule="AtMostOne"><defSwitch name="PARK" label="Park">Off</defSwitch>'
    '<defSwitch name="UNPARK" label="Unpark">Off</defSwitch></defSwitchVector>'
    '<defNumberVector device="Mount" name="CCD_TEMPERATURE" label="Cooler" group="Main" state="Idle" '
    'perm="rw" timeout="0"><defNumber name="CCD_TEMPERATURE_VALUE" label="Set point" format="%5.2f" '
    'min="-50" max="50" step="0.5">20</defNumber></defNumberVector>'
)
MOUNT_VECTORS = 8

type StartSource = Callable[..., Awaitable[IndiSource]]


@pytest.fixture
async def start_source(
    indi_server: FakeIndiServer, recorder: EventRecorder
) -> AsyncIterator[StartSource]:
    """Start IndiSources against the fake server (fast back-off); all are stopped afterwards."""
    sources: list[IndiSource] = []

    async def start(definitions: str = "", **kwargs: Any) -> IndiSource:
        indi_server.definitions = [definitions]
        options: dict[str, Any] = {
            "backoff_min": 0.05,
            "backoff_max": 0.2,
            "connect_timeout": 2.0,
        }
        source = IndiSource("127.0.0.1", indi_server.port, **(options | kwargs))
        sources.append(source)
        await source.async_start(recorder)
        return source

    try:
        yield start
    finally:
        for source in sources:
            await source.async_stop()


def answer(
    vector: str,
    state: str = "Ok",
    message: str | None = None,
    device: str | None = None,
) -> ReplyRule:
    """Reply to new*Vector of ``vector`` with the matching set*Vector (same members) and a state."""

    def rule(element: bytes) -> bytes | None:
        if not element.startswith(b"<new"):
            return None
        root = fromstring(element)
        if root.get("name") != vector or (
            device is not None and root.get("device") != device
        ):
            return None
        tag = root.tag.replace("new", "set", 1)
        attributes = f'device="{root.get("device")}" name="{vector}" state="{state}"'
        if message is not None:
            attributes += f' message="{message}"'
        members = "".join(
            f'<{child.tag} name="{child.get("name")}">{child.text}</{child.tag}>'
            for child in root
        )
        return f"<{tag} {attributes}>{members}</{tag}>".encode()

    return rule


def sent_members(element: bytes) -> list[tuple[str | None, str | None]]:
    """Return (member, value) of a new*Vector in the order sent."""
    return [(child.get("name"), child.text) for child in fromstring(element)]


def channel(recorder: EventRecorder, device: str, key: str) -> ChannelDefined:
    """Return the latest definition of a channel."""
    return [
        e
        for e in recorder.of_type(ChannelDefined)
        if (e.device_key, e.channel_key) == (device, key)
    ][-1]


async def wait_defined(
    recorder: EventRecorder, device: str, key: str, count: int = 1
) -> ChannelDefined:
    """Wait until a channel was defined ``count`` times."""
    return await recorder.wait_for(
        ChannelDefined,
        lambda e: (e.device_key, e.channel_key) == (device, key),
        count=count,
    )


def value_readings(recorder: EventRecorder) -> list[Reading]:
    """Return the readings of properties' channels (not the devices' property-state summaries)."""
    return [
        e for e in recorder.of_type(Reading) if e.channel_key != DEVICE_STATE_CHANNEL
    ]


async def wait_reading(
    recorder: EventRecorder, device: str, key: str, count: int = 1
) -> Reading:
    """Wait for the ``count``-th reading of a channel."""
    return await recorder.wait_for(
        Reading, lambda e: (e.device_key, e.channel_key) == (device, key), count=count
    )


# --------------------------------------------------------------------------------------------------
# Connection, definitions, readings


async def test_get_properties_sent_on_connect(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """The first thing the client sends is getProperties version 1.7; LinkUp precedes any def."""
    await start_source(THERMO_DEFS)
    received = await indi_server.wait_received(b"<getProperties")
    assert fromstring(received[0]).attrib == {"version": "1.7"}
    assert indi_server.all_received(0)[0] == received[0]
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    assert isinstance(recorder.events[0], LinkUp)
    assert isinstance(recorder.events[1], DeviceFound)


async def test_captured_definitions_become_channels(
    start_source: StartSource, recorder: EventRecorder
) -> None:
    """The captured defs map to channels with the right kinds, ranges, precision and hints."""
    await start_source(THERMO_DEFS + EXTRAS_DEFS)
    await wait_defined(recorder, "Extras", "havector.hourangle")

    # Without DRIVER_INFO the model says what it is; INDI names no manufacturer.
    assert recorder.of_type(DeviceFound) == [
        DeviceFound("Thermostat", "Thermostat", model="INDI device"),
        DeviceFound("Extras", "Extras", model="INDI device"),
    ]
    # Its labels state no unit and its names are not indilib's standard ones: no unit is guessed.
    assert channel(
        recorder, "Thermostat", "temperaturevector.temperature"
    ) == ChannelDefined(
        device_key="Thermostat",
        channel_key="temperaturevector.temperature",
        kind=ChannelKind.NUMERIC,
        writable=False,
        label="Temperature",
        group="Values",
        unit=None,
        device_class_hint=None,
        minimum=-50.0,
        maximum=99.0,
        step=None,
        precision=1,
        value=19.6,
        attributes={"property_state": "ok"},
    )
    target = channel(recorder, "Thermostat", "targetvector.target")
    assert (target.kind, target.writable, target.value, target.unit) == (
        ChannelKind.NUMERIC,
        True,
        15.0,
        None,
    )
    logs = channel(recorder, "Thermostat", "logsvector.templogs")
    assert (logs.kind, logs.writable, logs.value, logs.label) == (
        ChannelKind.BLOB,
        False,
        None,
        "Logs",
    )
    switch = channel(recorder, "Thermostat", "switchvector.switchmember")
    assert (switch.kind, switch.writable, switch.value, switch.label) == (
        ChannelKind.BOOLEAN,
        True,
        False,
        "Logs Control",
    )
    light = channel(recorder, "Extras", "heaterlight.heater")
    assert (
        light.kind,
        light.writable,
        light.options,
        light.translation_key,
        light.value,
        light.label,
    ) == (
        ChannelKind.ENUM,
        False,
        ("idle", "ok", "busy", "alert"),
        "light_state",
        "idle",
        "Heater status",
    )
    note = channel(recorder, "Extras", "notevector.note")
    assert (note.kind, note.writable, note.value) == (ChannelKind.TEXT, True, "hello")
    hour_angle = channel(recorder, "Extras", "havector.hourangle")
    assert (
        hour_angle.value,
        hour_angle.precision,
        hour_angle.minimum,
        hour_angle.maximum,
    ) == (
        3.7625,
        4,  # %010.6m shows d:mm:ss: 4 decimals resolve one second
        0.0,
        24.0,
    )


async def test_switch_vectors_become_selects_or_booleans(
    start_source: StartSource, recorder: EventRecorder
) -> None:
    """Exclusive multi-member vectors are one enum; AnyOfMany is a boolean per member."""
    await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")

    slew = channel(recorder, "Mount", "SLEW_RATE")
    assert (slew.kind, slew.writable, slew.options, slew.value, slew.label) == (
        ChannelKind.ENUM,
        True,
        ("Guide", "Centering", "Find"),
        "Guide",
        "Slew Rate",
    )
    assert channel(recorder, "Mount", "DUP").options == (
        "A",
        "B",
    )  # labels not unique: names
    assert channel(recorder, "Mount", "DUP").value == "B"
    assert channel(recorder, "Mount", "PARK_MODE").value is None
    beep = channel(recorder, "Mount", "OPTIONS.BEEP")
    assert (beep.kind, beep.value, beep.label) == (
        ChannelKind.BOOLEAN,
        True,
        "Options Beep",
    )
    ra = channel(recorder, "Mount", "EQUATORIAL_EOD_COORD.RA")
    assert (ra.label, ra.value) == ("Eq. Coordinates RA", pytest.approx(3.7625))
    cooler = channel(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    assert (cooler.step, cooler.precision, cooler.unit, cooler.device_class_hint) == (
        0.5,
        2,
        "°C",
        "temperature",
    )
    assert (
        channel(recorder, "Mount", "DRIVER_INFO.DRIVER_NAME").category
        is ChannelCategory.DIAGNOSTIC
    )
    keys = {
        e.channel_key
        for e in recorder.of_type(ChannelDefined)
        if e.device_key == "Mount"
    }
    assert "SLEW_RATE.1x" not in keys


async def test_connection_and_driver_info(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """CONNECTION drives DeviceConnection (and stays usable); DRIVER_INFO refines DeviceFound."""
    await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    assert recorder.of_type(DeviceConnection) == [DeviceConnection("Mount", True)]
    connection = channel(recorder, "Mount", "CONNECTION")
    assert (connection.options, connection.value, connection.keeps_available) == (
        ("Connect", "Disconnect"),
        "Connect",
        True,
    )
    assert recorder.of_type(DeviceFound) == [
        DeviceFound("Mount", "Mount", model="INDI device"),
        DeviceFound("Mount", "Mount", model="Telescope Simulator", sw_version="1.0"),
    ]
    assert not channel(recorder, "Mount", "SLEW_RATE").keeps_available

    # Disconnected, the driver keeps what must be set before connecting; asked again, it defines it.
    indi_server.definitions = [
        MOUNT_DEFS.replace(
            '>On</defSwitch><defSwitch name="DISCONNECT"',
            '>Off</defSwitch><defSwitch name="DISCONNECT"',
        )
    ]
    await indi_server.send(
        '<setSwitchVector device="Mount" name="CONNECTION" state="Ok"><oneSwitch name="CONNECT">Off'
        '</oneSwitch><oneSwitch name="DISCONNECT">On</oneSwitch></setSwitchVector>'
    )
    await recorder.wait_for(DeviceConnection, lambda e: not e.connected)
    reading = await wait_reading(recorder, "Mount", "CONNECTION")
    assert reading.value == "Disconnect"
    asked = await indi_server.wait_received(
        b'<getProperties version="1.7" device="Mount"'
    )
    assert asked == [b'<getProperties version="1.7" device="Mount" />']
    slew = await wait_defined(recorder, "Mount", "SLEW_RATE", count=2)
    assert slew.keeps_available
    assert recorder.of_type(DeviceConnection) == [
        DeviceConnection("Mount", True),
        DeviceConnection("Mount", False),
        DeviceConnection("Mount", False),
    ]


async def test_set_vectors_become_readings(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Captured sets become readings with their timestamps; unknown and unparsable are counted."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    await indi_server.send(
        THERMO[4]
        + '<setNumberVector device="Thermostat" name="nosuchvector"><oneNumber name="x">1</oneNumber></setNumberVector>'
        + '<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temperature">warm'
        + "</oneNumber></setNumberVector>"
        + THERMO[10]
    )
    await wait_reading(recorder, "Thermostat", "switchvector.switchmember")
    temperature = [
        e
        for e in value_readings(recorder)
        if e.channel_key == "temperaturevector.temperature"
    ]
    assert [
        (e.value, e.timestamp.isoformat() if e.timestamp else None) for e in temperature
    ] == [(19.4, "2026-11-21T04:40:39.016128+00:00")]
    assert value_readings(recorder)[-1] == Reading(
        "Thermostat",
        "switchvector.switchmember",
        True,
        parse_element(THERMO[10].encode()).timestamp,  # type: ignore[union-attr]
        {"property_state": "ok"},
    )
    counters = source.diagnostics()["counters"]
    assert (counters["unknown_vectors"], counters["unparsable_values"]) == (1, 1)


async def test_exclusive_set_with_only_the_new_member(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A OneOfMany set naming only the member turned On implies the others went Off."""
    await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    await indi_server.send(
        '<setSwitchVector device="Mount" name="SLEW_RATE" state="Ok"><oneSwitch name="3x">On</oneSwitch></setSwitchVector>'
    )
    assert (await wait_reading(recorder, "Mount", "SLEW_RATE")).value == "Find"


async def test_extras_replay_delete_and_redefine(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Captured vector/device deletion and re-definition: removed, lost, found again, no storms."""
    source = await start_source(EXTRAS_DEFS)
    await wait_defined(recorder, "Extras", "havector.hourangle")
    await indi_server.send("".join(EXTRAS[3:]))
    await wait_reading(recorder, "Extras", "heaterlight.heater", count=2)

    assert [e.value for e in value_readings(recorder)] == [
        "changed & <ok>",
        "ok",
        "alert",
    ]
    assert recorder.of_type(ChannelRemoved) == [
        ChannelRemoved("Extras", "havector.hourangle")
    ]
    assert recorder.of_type(DeviceLost) == [
        DeviceLost("Extras", "Extras device removed")
    ]
    assert len(recorder.of_type(DeviceFound)) == 2
    lifecycle = [
        type(e).__name__
        for e in recorder.events
        if isinstance(e, DeviceFound | DeviceLost | ChannelRemoved)
    ]
    assert lifecycle == ["DeviceFound", "ChannelRemoved", "DeviceLost", "DeviceFound"]
    assert [
        e.value
        for e in recorder.of_type(ChannelDefined)
        if e.channel_key == "heaterlight.heater"
    ] == [
        "idle",
        "ok",
    ]
    # A definition's message is what the vector said before (servers repeat it on every getProperties,
    # so after each reconnect): it is not news. indipydriver repeats it on the later set (sticky): nor is that.
    messages = [(e.text, e.attributes.get("vector")) for e in recorder.of_type(Message)]
    assert messages == [("hour angle vector removed", "havector")]
    assert (
        source.diagnostics()["counters"]["unknown_vectors"] == 1
    )  # the Thermostat set


async def test_redefinition_updates_without_duplicates(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A def for a known vector re-emits ChannelDefined (updated), never another DeviceFound."""
    await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    await indi_server.send(THERMO[-1])  # targetvector re-defined with value 18.50
    target = await wait_defined(recorder, "Thermostat", "targetvector.target", count=2)
    assert target.value == 18.5
    assert len(recorder.of_type(DeviceFound)) == 1
    assert recorder.of_type(ChannelRemoved) == []


async def test_redefinition_with_fewer_members_removes_channels(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A def dropping a member removes its channel; a select that becomes single is a boolean."""
    await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    await indi_server.send(
        '<defSwitchVector device="Mount" name="SLEW_RATE" label="Slew Rate" group="Motion" state="Idle" '
        'perm="rw" rule="OneOfMany"><defSwitch name="1x" label="Guide">On</defSwitch></defSwitchVector>'
    )
    await wait_defined(recorder, "Mount", "SLEW_RATE.1x")
    assert recorder.of_type(ChannelRemoved) == [ChannelRemoved("Mount", "SLEW_RATE")]


async def test_messages(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Server and device messages pass; keep-alives do not; sticky vector messages only on change."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    await indi_server.send(
        '<message timestamp="2026-11-21T04:45:25.145470" message="Keep alive message" />'
        '<message timestamp="2026-11-21T04:45:26" message="Server says hi" />'
        + THERMO[8]  # Alert with message "Invalid target"
        + THERMO[9]  # Ok, the message repeated (sticky)
        + THERMO[11]
    )
    await recorder.wait_for(Message, lambda e: e.text == "Log reporting is now On")
    assert [(e.device_key, e.text, e.level) for e in recorder.of_type(Message)] == [
        (None, "Server says hi", MessageLevel.INFO),
        ("Thermostat", "Invalid target", MessageLevel.WARNING),
        ("Thermostat", "Log reporting is now On", MessageLevel.INFO),
    ]
    assert source.diagnostics()["counters"]["keepalives"] == 1


async def test_malformed_xml_is_logged_once_and_skipped(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Malformed and truncated elements mid-stream: one WARNING, counted, later elements arrive."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    caplog.set_level(
        logging.DEBUG, logger="custom_components.instrument_hub.sources.indi"
    )
    bad = '<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temperature">1</oneText></setNumberVector>'
    truncated = '<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temp'
    await indi_server.send(
        bad + THERMO[4] + truncated + THERMO[5] + bad + "junk" + THERMO[6]
    )
    await wait_reading(recorder, "Thermostat", "temperaturevector.temperature", count=3)

    values = [e.value for e in value_readings(recorder)]
    assert values == [19.4, 19.2, 19.0]
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "Malformed" in r.getMessage()
    ]
    assert len(warnings) == 1
    # The splitter notices the truncation while reading, before the worker parses the bad element.
    assert (
        "truncated element" in warnings[0].getMessage()
        or "malformed XML" in warnings[0].getMessage()
    )
    debugs = [
        r
        for r in caplog.records
        if r.levelno == logging.DEBUG and "Malformed" in r.getMessage()
    ]
    assert len(debugs) == 2
    stats = source.diagnostics()["connection"]
    assert (stats["malformed"], stats["truncated"]) == (3, 1)
    # Resynchronising passes over the rest of each bad element and the junk after one, nothing good.
    assert len("junk") < stats["skipped_bytes"] < 2 * len(bad) + len("junk")


async def test_eof_link_down_reconnect_and_resend(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EOF is a lost link at once; the client reconnects, asks again and re-enables BLOBs."""
    caplog.set_level(
        logging.DEBUG, logger="custom_components.instrument_hub.sources.indi"
    )
    source = await start_source(THERMO_DEFS)
    await indi_server.wait_received(b"<enableBLOB", connection=0)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")

    await indi_server.drop_clients()
    async with asyncio.timeout(1.0):  # indipyclient needed 40 s here
        link_down = await recorder.wait_for(LinkDown)
    assert link_down.reason == "connection closed by the server"

    await recorder.wait_for(LinkUp, count=2)
    await indi_server.wait_received(b"<getProperties", connection=1)
    enable = await indi_server.wait_received(b"<enableBLOB", connection=1)
    assert enable == [
        b'<enableBLOB device="Thermostat" name="logsvector">Also</enableBLOB>'
    ]
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember", count=2)

    kinds = [
        type(e).__name__ for e in recorder.events if isinstance(e, LinkUp | LinkDown)
    ]
    assert kinds == ["LinkUp", "LinkDown", "LinkUp"]
    assert len(recorder.of_type(DeviceFound)) == 1
    assert source.diagnostics()["connection"]["connects"] == 2
    lost = [r for r in caplog.records if "Lost the connection" in r.getMessage()]
    back = [r for r in caplog.records if "is back" in r.getMessage()]
    # Availability is logged once at info by the hub (LinkDown/LinkUp); the client adds only debug detail.
    assert [r.levelno for r in lost] == [logging.DEBUG]
    assert [r.levelno for r in back] == [logging.DEBUG]


async def test_retries_are_not_logged_above_debug(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the server is away the client retries quietly: nothing above debug, however many retries."""
    caplog.set_level(
        logging.DEBUG, logger="custom_components.instrument_hub.sources.indi"
    )
    await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    port = indi_server.port
    await indi_server.close()
    await recorder.wait_for(LinkDown)

    def retries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "Reconnect attempt" in r.getMessage()]

    async with asyncio.timeout(5):
        while len(retries()) < 3:
            await asyncio.sleep(
                0.02
            )  # polling the log: there is no event for a failed retry
    assert {r.levelno for r in retries()} == {logging.DEBUG}

    await indi_server.start(port)
    await recorder.wait_for(LinkUp, count=2)
    mine = [
        r
        for r in caplog.records
        if r.name.startswith("custom_components.instrument_hub.sources.indi")
    ]
    assert [r.getMessage() for r in mine if r.levelno > logging.DEBUG] == []
    assert any("is back" in r.getMessage() for r in mine)


async def test_cannot_connect(
    indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Nothing listening: async_start raises CannotConnect and leaves nothing running."""
    port = indi_server.port
    await indi_server.close()
    tasks_before = asyncio.all_tasks()
    source = IndiSource("127.0.0.1", port, connect_timeout=1.0)
    with pytest.raises(CannotConnect) as caught:
        await source.async_start(recorder)
    assert caught.value.placeholders["port"] == str(port)
    await source.async_stop()
    assert asyncio.all_tasks() == tasks_before
    assert recorder.events == []


async def test_stop_leaves_no_task(
    indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """async_stop ends every task the source started (and is idempotent)."""
    indi_server.definitions = [THERMO_DEFS]
    tasks_before = asyncio.all_tasks()
    created: list[asyncio.Task[None]] = []

    def factory(coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        created.append(task)
        return task

    source = IndiSource("127.0.0.1", indi_server.port, task_factory=factory)
    await source.async_start(recorder)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    assert (
        len(created) == 1
    )  # the connection: elements are handled in its read callback
    await source.async_stop()
    await source.async_stop()
    assert all(task.done() for task in created)
    # The scripted server's handler of the connection ends once it sees the close: not the source's.
    left = {
        task
        for task in asyncio.all_tasks() - tasks_before
        if not task.get_name().startswith("fake INDI server")
    }
    assert left == set()
    assert not source.diagnostics()["connected"]


# --------------------------------------------------------------------------------------------------
# Writes


async def test_write_number_ok(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A write sends a plain decimal and returns the device's Ok answer with the new values."""
    indi_server.reply_rules.append(answer("targetvector"))
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    result = await source.async_write("Thermostat", "targetvector.target", 19.25)
    assert (result.state, result.message, dict(result.values)) == (
        "Ok",
        None,
        {"target": 19.25},
    )
    sent = await indi_server.wait_received(b"<newNumberVector")
    assert sent_members(sent[0]) == [("target", "19.25")]
    assert (
        await wait_reading(recorder, "Thermostat", "targetvector.target")
    ).value == 19.25
    assert source.diagnostics()["pending_commands"] == 0


async def test_write_rejected_with_alert(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """An Alert answer raises CommandRejected carrying the server's message."""
    indi_server.reply_rules.append(
        answer("targetvector", state="Alert", message="Invalid target")
    )
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    with pytest.raises(CommandRejected) as caught:
        await source.async_write("Thermostat", "targetvector.target", "18:30:00")
    assert caught.value.message == "Invalid target"
    sent = await indi_server.wait_received(b"<newNumberVector")
    assert sent_members(sent[0]) == [("target", "18.5")]


async def test_write_busy_then_ok(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A write returns once accepted (Busy); set_property with a timeout waits through Busy for Ok."""
    indi_server.reply_rules.append(answer("targetvector", state="Busy"))
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    accepted = await source.async_write("Thermostat", "targetvector.target", 16)
    assert accepted.state == "Busy"

    command = asyncio.create_task(
        source.async_set_property(
            "Thermostat", "targetvector", {"target": 17}, timeout=5
        )
    )
    await indi_server.wait_received(b"<newNumberVector", count=2)
    await wait_reading(recorder, "Thermostat", "targetvector.target", count=2)
    assert not command.done()  # the Busy answer is progress
    await indi_server.send(
        '<setNumberVector device="Thermostat" name="targetvector" state="Ok"><oneNumber name="target">17.00'
        "</oneNumber></setNumberVector>"
    )
    async with asyncio.timeout(5):
        result = await command
    assert (result.state, result.values["target"]) == ("Ok", 17.0)


async def test_write_timeout(
    start_source: StartSource, recorder: EventRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer within the (clamped) vector timeout raises CommandTimeout and forgets the command."""
    monkeypatch.setattr(commands_module, "COMMAND_TIMEOUT_MIN", 0.05)
    monkeypatch.setattr(commands_module, "COMMAND_TIMEOUT_MAX", 0.1)
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    with pytest.raises(CommandTimeout):
        await source.async_write("Thermostat", "targetvector.target", 16)
    assert source.diagnostics()["pending_commands"] == 0


def test_command_timeout_clamp() -> None:
    """The vector's timeout is clamped to 5..60 s; 0 or absent means 5 s."""
    assert commands_module.command_timeout(None) == 5.0
    assert commands_module.command_timeout(0) == 5.0
    assert commands_module.command_timeout(30) == 30.0
    assert commands_module.command_timeout(600) == 60.0


async def test_pending_commands_resolve_in_order(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Two commands to one vector: the first answer resolves the first, the second the second."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    first = asyncio.create_task(
        source.async_write("Thermostat", "targetvector.target", 10)
    )
    second = asyncio.create_task(
        source.async_write("Thermostat", "targetvector.target", 11)
    )
    await indi_server.wait_received(b"<newNumberVector", count=2)
    await indi_server.send(
        '<setNumberVector device="Thermostat" name="targetvector" state="Ok"><oneNumber name="target">10'
        '</oneNumber></setNumberVector><setNumberVector device="Thermostat" name="targetvector" '
        'state="Alert" message="too fast"/>'
    )
    async with asyncio.timeout(5):
        result = await first
        with pytest.raises(CommandRejected, match="too fast"):
            await second
    assert result.values["target"] == 10.0


async def test_cancelled_write_forgets_its_pending_entry(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A cancelled caller leaves no pending entry; the next answer goes to the next command."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    cancelled = asyncio.create_task(
        source.async_write("Thermostat", "targetvector.target", 10)
    )
    await indi_server.wait_received(b"<newNumberVector")
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert source.diagnostics()["pending_commands"] == 0
    indi_server.reply_rules.append(answer("targetvector"))
    result = await source.async_write("Thermostat", "targetvector.target", 12)
    assert result.values["target"] == 12.0


async def test_write_while_down_and_pending_on_loss(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A pending command fails with NotConnected when the link drops; writes while down too."""
    source = await start_source(THERMO_DEFS)
    await wait_defined(recorder, "Thermostat", "targetvector.target")
    pending = asyncio.create_task(
        source.async_write("Thermostat", "targetvector.target", 10)
    )
    await indi_server.wait_received(b"<newNumberVector")
    await indi_server.close()  # EOF and nothing listening any more
    async with asyncio.timeout(5):
        with pytest.raises(NotConnected):
            await pending
    await recorder.wait_for(LinkDown)
    with pytest.raises(NotConnected):
        await source.async_write("Thermostat", "targetvector.target", 11)


async def test_invalid_values_are_refused_before_sending(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Out-of-range numbers, non-numbers, unknown options and read-only channels: InvalidValue."""
    source = await start_source(THERMO_DEFS + MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    invalid: list[tuple[str, str, object]] = [
        ("Thermostat", "targetvector.target", 100),
        ("Thermostat", "targetvector.target", -50.5),
        ("Thermostat", "targetvector.target", "abc"),
        ("Thermostat", "targetvector.target", True),
        ("Thermostat", "targetvector.target", float("nan")),
        ("Thermostat", "temperaturevector.temperature", 20),
        ("Thermostat", "logsvector.templogs", "x"),
        ("Thermostat", "switchvector.switchmember", "maybe"),
        ("Mount", "SLEW_RATE", "Warp"),
        ("Mount", "DRIVER_INFO.DRIVER_NAME", "x"),
    ]
    for device, key, value in invalid:
        with pytest.raises(InvalidValue):
            await source.async_write(device, key, value)
    indi_server.reply_rules.append(answer("targetvector"))
    await source.async_write("Thermostat", "targetvector.target", 99)
    assert [e for e in indi_server.all_received() if e.startswith(b"<new")] == [
        b'<newNumberVector device="Thermostat" name="targetvector"><oneNumber name="target">99</oneNumber></newNumberVector>'
    ]


async def test_unknown_targets(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Unknown devices, channels, members and deleted vectors: UnknownTarget."""
    source = await start_source(EXTRAS_DEFS)
    await wait_defined(recorder, "Extras", "havector.hourangle")
    with pytest.raises(UnknownTarget):
        await source.async_write("Nope", "notevector.note", "x")
    with pytest.raises(UnknownTarget):
        await source.async_write("Extras", "notevector.nope", "x")
    with pytest.raises(UnknownTarget):
        await source.async_set_property("Extras", "notevector", {"nope": "x"})
    await indi_server.send(EXTRAS[6])  # the whole device deleted
    await recorder.wait_for(DeviceLost)
    with pytest.raises(UnknownTarget):
        await source.async_write("Extras", "notevector.note", "x")


async def test_writes_send_all_members_off_before_on(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Every member goes out (current values for the others); switches Off before On."""
    for vector in ("EQUATORIAL_EOD_COORD", "SLEW_RATE", "OPTIONS", "PARK_MODE"):
        indi_server.reply_rules.append(answer(vector))
    source = await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")

    result = await source.async_write("Mount", "EQUATORIAL_EOD_COORD.RA", 5.5)
    assert dict(result.values) == {"RA": 5.5, "DEC": pytest.approx(-10.505)}
    await source.async_write("Mount", "SLEW_RATE", "Find")
    await source.async_write("Mount", "OPTIONS.TRACK", True)
    await source.async_write("Mount", "PARK_MODE", "Park")
    sent = [
        sent_members(e) for e in indi_server.all_received() if e.startswith(b"<new")
    ]
    assert sent == [
        [("RA", "5.5"), ("DEC", "-10.505")],
        [("1x", "Off"), ("2x", "Off"), ("3x", "On")],
        [("BEEP", "On"), ("TRACK", "On")],
        [("UNPARK", "Off"), ("PARK", "On")],
    ]
    assert (await wait_reading(recorder, "Mount", "SLEW_RATE")).value == "Find"


async def test_set_property_merges_current_values(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """The raw action: given members as given, others current; an exclusive On turns others Off."""
    indi_server.reply_rules += [
        answer("EQUATORIAL_EOD_COORD"),
        answer("SLEW_RATE"),
        answer("CCD_TEMPERATURE", state="Alert", message="Invalid temperature"),
    ]
    source = await start_source(MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    result = await source.async_set_property(
        "Mount", "EQUATORIAL_EOD_COORD", {"DEC": "-20:30:00"}
    )
    assert result.state == "Ok"
    await source.async_set_property("Mount", "EQUATORIAL_EOD_COORD", {"RA": 4})
    await source.async_set_property("Mount", "SLEW_RATE", {"2x": "on"})
    with pytest.raises(InvalidValue):
        await source.async_set_property("Mount", "SLEW_RATE", {"2x": True, "3x": True})
    with pytest.raises(InvalidValue):
        await source.async_set_property(
            "Mount", "CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": True}
        )
    # A raw string is the device's to judge: it goes out verbatim and the Alert comes back.
    with pytest.raises(CommandRejected, match="Invalid temperature"):
        await source.async_set_property(
            "Mount", "CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": "abc"}
        )
    sent = [
        sent_members(e) for e in indi_server.all_received() if e.startswith(b"<new")
    ]
    assert sent == [
        [("RA", "3.7625"), ("DEC", "-20:30:00")],
        [("RA", "4"), ("DEC", "-20.5")],
        [("1x", "Off"), ("3x", "Off"), ("2x", "On")],
        [("CCD_TEMPERATURE_VALUE", "abc")],
    ]


# --------------------------------------------------------------------------------------------------
# BLOBs


def blob_set(
    data: bytes, fmt: str, *, wrap: bool = False, name: str = "templogs"
) -> str:
    """Return a setBLOBVector for the thermostat's log vector carrying ``data``."""
    text = base64.b64encode(data).decode()
    if wrap:
        text = "\n".join(text[i : i + 72] for i in range(0, len(text), 72))
    return (
        f'<setBLOBVector device="Thermostat" name="logsvector" state="Ok" timestamp="2026-11-21T04:40:49">'
        f'<oneBLOB name="{name}" format="{fmt}" size="{len(data)}">{text}</oneBLOB></setBLOBVector>'
    )


async def test_blob_decoding(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Captured base64 and wrapped/zlib-compressed BLOBs arrive decoded as BlobData."""
    source = await start_source(THERMO_DEFS)
    await indi_server.wait_received(b"<enableBLOB")
    captured = next(line for line in THERMO if line.startswith("<setBLOBVector"))
    fits = b"SIMPLE  =                    T / FITS" * 50
    await indi_server.send(
        captured
        + blob_set(fits, ".fits", wrap=True)
        + blob_set(zlib.compress(fits), ".fits.z", wrap=True)
    )
    await wait_reading(recorder, "Thermostat", "logsvector.templogs", count=3)
    blobs = [e.value for e in value_readings(recorder)]
    assert isinstance(blobs[0], BlobData)
    # The capture's size attribute says 84, but its base64 holds 112 bytes (4 log lines of 28):
    # BlobData.size is what was actually received.
    assert (blobs[0].format, blobs[0].size, len(blobs[0].data)) == (".csv", 112, 112)
    assert blobs[0].data.startswith(b"2026-11-21T04:40:45.0,18.20\n")
    assert blobs[1] == BlobData(fits, ".fits", len(fits))
    assert blobs[2] == BlobData(fits, ".fits", len(fits))
    diagnostics = source.diagnostics()
    assert diagnostics["counters"]["blobs_received"] == 3
    assert "MjAyNi0x" not in json.dumps(diagnostics)  # no raw BLOB text in diagnostics


async def test_large_blob_streams_to_a_spool_file_and_keeps_order(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A BLOB is written to a spool file while it arrives, off the loop; what follows it stays after it."""
    loop = asyncio.get_running_loop()
    offloaded: list[str] = []
    original = loop.run_in_executor

    def spy(executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        offloaded.append(getattr(func, "__name__", repr(func)))
        return original(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", spy)
    spool = spool_folder(tmp_path)
    await start_source(THERMO_DEFS, spool_folder=spool)
    await indi_server.wait_received(b"<enableBLOB")
    big = random.Random(3).randbytes(3_000_000)
    small = b"tiny"
    await indi_server.send(
        blob_set(small, ".bin")
        + blob_set(big, ".fits", wrap=True)
        + blob_set(zlib.compress(big), ".fits.z", wrap=True)
        + THERMO[4]
    )
    await wait_reading(recorder, "Thermostat", "temperaturevector.temperature")
    assert [e.channel_key for e in value_readings(recorder)] == [
        "logsvector.templogs",
        "logsvector.templogs",
        "logsvector.templogs",
        "temperaturevector.temperature",
    ]
    blobs = [e.value for e in value_readings(recorder) if isinstance(e.value, BlobData)]
    assert [(b.data, b.format, b.size) for b in blobs] == [
        (b"", ".bin", 4),
        (b"", ".fits", len(big)),
        (b"", ".fits", len(big)),
    ]
    files = [b.spooled for b in blobs]
    assert all(path is not None and path.parent == spool for path in files)
    assert [path.read_bytes() for path in files if path] == [small, big, big]
    assert set(offloaded) == {
        "_drain"
    }  # every write (and inflating) ran in the executor
    assert len(offloaded) > 3  # the large ones in several pieces


async def test_blob_cap(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """BLOBs over the cap (decoded or once inflated) are skipped with one WARNING per vector, nothing kept."""
    written: list[int] = []
    real_write = blobs_module._Sink.write

    def counting_write(self: Any, data: bytes) -> None:
        written.append(len(data))
        real_write(self, data)

    monkeypatch.setattr(blobs_module._Sink, "write", counting_write)
    spool = spool_folder(tmp_path)
    source = await start_source(THERMO_DEFS, max_blob_bytes=1000, spool_folder=spool)
    await indi_server.wait_received(b"<enableBLOB")
    await indi_server.send(
        blob_set(b"x" * 2000, ".bin")
        + blob_set(zlib.compress(b"\0" * 100_000), ".bin.z")
        + blob_set(b"ok" * 100, ".bin")
        + '<setBLOBVector device="Thermostat" name="logsvector" state="Ok"/>'
        + THERMO[4]
    )
    await wait_reading(recorder, "Thermostat", "temperaturevector.temperature")
    blobs = [
        e.value
        for e in value_readings(recorder)
        if e.channel_key == "logsvector.templogs" and isinstance(e.value, BlobData)
    ]
    assert [(b.format, b.size) for b in blobs] == [(".bin", 200)]
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "Skipped a BLOB" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert source.diagnostics()["counters"]["blobs_skipped"] == 2
    # The oversized one is refused while its base64 arrives: none of it reaches a job; the bomb's
    # compressed bytes do (they are small), its inflating stops at the cap.
    assert written == [len(zlib.compress(b"\0" * 100_000)), 200]
    assert blobs[0].spooled is not None
    assert [p.name for p in spool.iterdir()] == [blobs[0].spooled.name]


async def test_a_cut_off_blob_leaves_no_file(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    tmp_path: Path,
) -> None:
    """A BLOB whose element is cut off by the next one is dropped: its spool file goes, nothing waits."""
    spool = spool_folder(tmp_path)
    source = await start_source(THERMO_DEFS, spool_folder=spool)
    await indi_server.wait_received(b"<enableBLOB")
    whole = blob_set(random.Random(6).randbytes(600_000), ".bin", wrap=True)
    await indi_server.send(whole[: len(whole) // 2] + THERMO[4])
    await wait_reading(recorder, "Thermostat", "temperaturevector.temperature")
    async with asyncio.timeout(WAIT_SECONDS):
        while source._transfers or any(spool.iterdir()):
            await asyncio.sleep(
                0.01
            )  # the removal runs in the executor; nothing to wait on
    assert source.diagnostics()["blob_backlog_bytes"] == 0
    assert source.diagnostics()["connection"]["truncated"] == 1
    assert [e.channel_key for e in value_readings(recorder)] == [
        "temperaturevector.temperature"
    ]


async def test_stopping_removes_files_not_handed_on(
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Stopped while a large BLOB is written and a small one waits behind it: both files go."""
    gate = threading.Event()
    real_write = blobs_module._Sink.write

    def slow_for_large(self: Any, data: bytes) -> None:
        real_write(self, data)
        if len(data) >= blobs_module.PIECE_BYTES:
            gate.wait(WAIT_SECONDS)  # its spool file exists, it is not finished

    monkeypatch.setattr(blobs_module._Sink, "write", slow_for_large)
    spool = spool_folder(tmp_path)
    indi_server.definitions = [THERMO_DEFS]
    source = IndiSource("127.0.0.1", indi_server.port, spool_folder=spool)
    await source.async_start(recorder)
    try:
        await indi_server.wait_received(b"<enableBLOB")
        await indi_server.send(
            blob_set(b"x" * 1_000_000, ".bin") + blob_set(b"small", ".bin") + THERMO[4]
        )
        async with asyncio.timeout(WAIT_SECONDS):
            # The small file is complete (in the executor) and waits behind the large one.
            while not any(
                isinstance(item, source_module._PendingBlob) and item.transfer.done
                for item in source._waiting
            ):
                # A poll inside the bounded wait: the executor has no event for the loop.
                await asyncio.sleep(0.01)
        assert len(list(spool.iterdir())) == 2
    finally:
        stopping = asyncio.create_task(source.async_stop())
        await asyncio.sleep(0)  # the stop has begun: let the large file's job go on
        gate.set()
        await stopping
    assert list(spool.iterdir()) == []
    assert value_readings(recorder) == []


async def test_blobs_not_enabled_when_disabled(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """enable_blobs=False sends no enableBLOB (the server's default is Never)."""
    indi_server.reply_rules.append(answer("targetvector"))
    source = await start_source(THERMO_DEFS, enable_blobs=False)
    await wait_defined(recorder, "Thermostat", "switchvector.switchmember")
    await source.async_write(
        "Thermostat", "targetvector.target", 16
    )  # a round trip after the defs
    assert [e[:12] for e in indi_server.all_received()] == [
        b"<getProperti",
        b"<newNumberVe",
    ]


async def test_diagnostics(start_source: StartSource, recorder: EventRecorder) -> None:
    """Diagnostics list devices and vectors with their kinds, perms and enabled flags."""
    source = await start_source(THERMO_DEFS + MOUNT_DEFS)
    await wait_defined(recorder, "Mount", "CCD_TEMPERATURE.CCD_TEMPERATURE_VALUE")
    diagnostics = source.diagnostics()
    assert (diagnostics["device_count"], diagnostics["vector_count"]) == (
        2,
        4 + MOUNT_VECTORS,
    )
    assert diagnostics["connected"] is True
    assert diagnostics["devices"]["Thermostat"]["vectors"][0] == {
        "name": "temperaturevector",
        "kind": "Number",
        "perm": "ro",
        "rule": None,
        "state": "Ok",
        "enabled": True,
        "members": 1,
    }
    assert diagnostics["devices"]["Mount"]["model"] == "Telescope Simulator"
    json.dumps(diagnostics)


async def test_a_slow_disk_pauses_reading_instead_of_buffering_without_bound(
    start_source: StartSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """While BLOB bytes are not written, reading stops past the high-water mark; nothing is lost after."""
    monkeypatch.setattr(source_module, "BLOB_BACKLOG_HIGH_WATER", 300_000)
    monkeypatch.setattr(blobs_module, "PIECE_BYTES", 65536)
    gate = threading.Event()
    real_write = blobs_module._Sink.write

    def stuck_write(self: Any, data: bytes) -> None:
        gate.wait(WAIT_SECONDS)
        real_write(self, data)

    monkeypatch.setattr(blobs_module._Sink, "write", stuck_write)
    source = await start_source(THERMO_DEFS, spool_folder=spool_folder(tmp_path))
    await indi_server.wait_received(b"<enableBLOB")
    big = random.Random(5).randbytes(4_000_000)
    readings = [
        '<setNumberVector device="Thermostat" name="temperaturevector" state="Ok">'
        f'<oneNumber name="temperature">{20 + i / 1000:.3f}</oneNumber></setNumberVector>'
        for i in range(500)
    ]
    send = asyncio.create_task(
        indi_server.send(blob_set(big, ".bin", wrap=True) + "".join(readings))
    )
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while source.diagnostics()["connection"]["room_pauses"] == 0:
                await asyncio.sleep(
                    0.01
                )  # polling a counter: the pause has no event of its own
        backlog = source.diagnostics()["blob_backlog_bytes"]
        # Past the mark by at most one piece parsed: not the 5 MB sent.
        assert 300_000 < backlog <= 300_000 + 2 * 65536 + FEED_BYTES
        assert value_readings(recorder) == []
    finally:
        gate.set()
    await send
    await wait_reading(
        recorder, "Thermostat", "temperaturevector.temperature", count=500
    )
    values = [e.value for e in value_readings(recorder)]
    assert isinstance(values[0], BlobData) and values[0].size == len(big)
    assert values[1:] == [pytest.approx(20 + i / 1000) for i in range(500)]
    assert source.diagnostics()["blob_backlog_bytes"] == 0


async def test_actions_only_for_command_switches(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A button's press sends its member On; a channel that is not a command is no action."""
    abort = (
        '<defSwitchVector device="Mount" name="TELESCOPE_ABORT_MOTION" label="Abort Motion" group="Main" '
        'state="Idle" perm="rw" rule="AtMostOne"><defSwitch name="ABORT" label="Abort">Off</defSwitch>'
        "</defSwitchVector>"
    )
    indi_server.reply_rules.append(answer("TELESCOPE_ABORT_MOTION"))
    source = await start_source(MOUNT_DEFS + abort)
    button = await wait_defined(recorder, "Mount", "TELESCOPE_ABORT_MOTION.ABORT")
    assert button.kind is ChannelKind.ACTION
    result = await source.async_run_action("Mount", "TELESCOPE_ABORT_MOTION.ABORT")
    assert result.state == "Ok"
    sent = [e for e in indi_server.all_received() if e.startswith(b"<new")]
    assert sent_members(sent[0]) == [("ABORT", "On")]
    with pytest.raises(UnknownTarget):
        await source.async_run_action("Mount", "OPTIONS.BEEP")


async def test_a_name_that_must_change_while_deleted_stays_unavailable(
    start_source: StartSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A new property takes a deleted one's name: both get their group, the deleted one stays removed."""
    frame = (
        '<defNumberVector device="Cam" name="{name}" label="Frame" group="{group}" state="Idle" perm="rw">'
        '<defNumber name="X" label="Left" format="%g" min="0" max="0" step="0">0</defNumber></defNumberVector>'
    )
    await start_source(frame.format(name="CCD_FRAME", group="Image Settings"))
    assert (await wait_defined(recorder, "Cam", "CCD_FRAME.X")).label == "Frame"
    await indi_server.send('<delProperty device="Cam" name="CCD_FRAME"/>')
    await recorder.wait_for(ChannelRemoved)
    await indi_server.send(frame.format(name="GUIDER_FRAME", group="Guider Head"))
    guider = await wait_defined(recorder, "Cam", "GUIDER_FRAME.X")
    renamed = await wait_defined(recorder, "Cam", "CCD_FRAME.X", count=2)
    assert (guider.label, renamed.label) == (
        "Guider Head Frame",
        "Image Settings Frame",
    )
    removed = recorder.of_type(ChannelRemoved)
    assert removed == [
        ChannelRemoved("Cam", "CCD_FRAME.X"),
        ChannelRemoved("Cam", "CCD_FRAME.X"),
    ]
    positions = [
        i for i, e in enumerate(recorder.events) if isinstance(e, ChannelRemoved)
    ]
    assert positions[-1] > recorder.events.index(renamed)
