"""The Scrutiny client and source against a scripted server: events, writes, liveness, bad input."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from custom_components.instrument_hub.events import (
    BlobData,
    ChannelDefined,
    ChannelRemoved,
    DeviceFound,
    DeviceLost,
    EventData,
    LinkDown,
    LinkUp,
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
from custom_components.instrument_hub.sources.scrutiny import ScrutinySource
from custom_components.instrument_hub.sources.scrutiny.client import (
    NotScrutiny,
    ScrutinyConnection,
)
from custom_components.instrument_hub.sources.scrutiny.mapping import (
    TARGET,
    event_channel_key,
    watchable_key,
)
from custom_components.instrument_hub.sources.scrutiny.messages import (
    ServerStatus,
    acquisition_csv,
    parse_updates,
    parse_watchable_list,
    status_changes,
)
from custom_components.instrument_hub.sources.scrutiny.protocol import encode_message
from tests.fake_scrutiny import SESSION, FakeScrutinyServer, status
from tests.sources.conftest import EventRecorder

WATCHED = [
    "/Sine Wave",
    "/static/main.cpp/counter",
    "/static/main.cpp/counter_enable",
    "/rpv/x2000",
    "/Mode",
    "/gone",
]
WRITABLE = ["/static/main.cpp/counter", "/static/main.cpp/counter_enable", "/Mode"]


def fired(recorder: EventRecorder, event_type: str) -> list[EventData]:
    """Return the EventData fired on the server's event channel of one type."""
    return [
        event.value
        for event in recorder.of_type(Reading)
        if event.channel_key == event_channel_key(event_type)
        and isinstance(event.value, EventData)
    ]


def values(recorder: EventRecorder, path: str) -> list[object]:
    """Values."""
    return [
        event.value
        for event in recorder.of_type(Reading)
        if event.channel_key == watchable_key(path)
    ]


async def started(
    server: FakeScrutinyServer, recorder: EventRecorder, **kwargs: object
) -> ScrutinySource:
    """Start a source on the scripted server; return once the target and its watchables are there."""
    source = ScrutinySource(
        "127.0.0.1",
        server.port,
        watched=WATCHED,
        writable=WRITABLE,
        update_rate=5,
        backoff_min=0.05,
        **kwargs,  # type: ignore[arg-type]
    )
    await source.async_start(recorder)
    await recorder.wait_for(
        ChannelDefined, lambda e: e.channel_key == watchable_key("/Sine Wave")
    )
    await recorder.wait_for(
        Reading, lambda e: e.channel_key == event_channel_key("sfd_loaded")
    )
    return source


async def test_connect_announces_target_firmware_and_watchables(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Connect announces target firmware and watchables."""
    source = await started(scrutiny_server, recorder)
    try:
        found = recorder.of_type(DeviceFound)
        assert found[-1].name == "Scrutiny Demo Device"
        assert (found[-1].model, found[-1].sw_version, found[-1].via_device_key) == (
            "EmulatedDevice",
            "0.16.0",
            "",
        )
        assert fired(recorder, "device_ready")[0].attributes["session_id"] == SESSION
        assert (
            fired(recorder, "connected")[0].attributes["port"] == scrutiny_server.port
        )
        defined = {
            e.channel_key: e
            for e in recorder.of_type(ChannelDefined)
            if e.device_key == TARGET
        }
        assert defined[watchable_key("/static/main.cpp/counter")].writable
        assert (
            defined[watchable_key("/static/main.cpp/counter_enable")].kind == "boolean"
        )
        assert defined[watchable_key("/Mode")].options == ("idle", "run")
        assert defined[watchable_key("/rpv/x2000")].minimum == -(2**31)
        assert watchable_key("/gone") not in defined  # the server does not list it
        # The SFD is loaded already when the device is ready: everything in one subscription.
        (subscribe,) = scrutiny_server.requests_of("subscribe_watchable")
        assert subscribe["watchables"] == [path for path in WATCHED if path != "/gone"]
        assert subscribe["rate"] == 5
        assert len(source.catalog) == 6  # both parts of the multi-part list

        await scrutiny_server.push(scrutiny_server.value_update("/Sine Wave", 0.5))
        await scrutiny_server.push(scrutiny_server.value_update("/Mode", 1))
        await scrutiny_server.push(
            scrutiny_server.value_update("/static/main.cpp/counter_enable", None)
        )
        await scrutiny_server.push(
            {
                "cmd": "watchable_update",
                "reqid": None,
                "updates": [{"id": "999", "v": 1}],
            }
        )
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == watchable_key("/static/main.cpp/counter_enable"),
        )
        assert values(recorder, "/Sine Wave") == [0.5]
        assert values(recorder, "/Mode") == ["run"]
        assert values(recorder, "/static/main.cpp/counter_enable") == [None]
        reading = next(
            e
            for e in recorder.of_type(Reading)
            if e.channel_key == watchable_key("/Sine Wave")
        )
        assert reading.timestamp is not None and reading.timestamp.year == 2026
        assert source.diagnostics()["counters"]["unknown_ids"] == 1
    finally:
        await source.async_stop()


async def test_session_change_is_device_lost_then_found(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """A new session id: device gone (and its watchables) then ready again, as the SDK reports it."""
    source = await started(scrutiny_server, recorder)
    try:
        await scrutiny_server.push(status(session="new-session"))
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == event_channel_key("device_ready"),
            count=2,
        )
        await recorder.wait_for(
            ChannelDefined,
            lambda e: e.channel_key == watchable_key("/rpv/x2000"),
            count=2,
        )
        assert fired(recorder, "device_gone")[0].attributes["session_id"] == SESSION
        assert (
            fired(recorder, "device_ready")[1].attributes["session_id"] == "new-session"
        )
        assert recorder.of_type(DeviceLost)[0].device_key == TARGET
        removed = {e.channel_key for e in recorder.of_type(ChannelRemoved)}
        assert (
            watchable_key("/rpv/x2000") in removed
            and watchable_key("/Sine Wave") in removed
        )

        # SFD unloaded: variables and aliases go, the firmware is cleared; RPVs stay.
        recorder.events.clear()
        await scrutiny_server.push(
            status(session="new-session", firmware=None, state="unavailable")
        )
        await recorder.wait_for(
            Reading, lambda e: e.channel_key == event_channel_key("sfd_unloaded")
        )
        removed = {e.channel_key for e in recorder.of_type(ChannelRemoved)}
        assert (
            watchable_key("/Sine Wave") in removed
            and watchable_key("/rpv/x2000") not in removed
        )
        firmware = [
            e.value for e in recorder.of_type(Reading) if e.channel_key == "firmware"
        ]
        assert firmware == [None]
        assert recorder.of_type(DeviceFound)[-1].sw_version is None
        states = fired(recorder, "datalogging_state_changed")
        assert states[-1].attributes["state"] == "unavailable"
    finally:
        await source.async_stop()


async def test_datalogger_progress_and_acquisition_export(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Datalogger progress and acquisition export."""
    source = await started(scrutiny_server, recorder)
    try:
        await scrutiny_server.push(status(state="acquiring", ratio=0.25))
        await scrutiny_server.push(
            {
                "cmd": "inform_datalogging_list_changed",
                "reqid": None,
                "reference_id": "ref1",
                "action": "new",
            }
        )
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == event_channel_key("acquisition_complete"),
        )
        ratios = [
            e.value
            for e in recorder.of_type(Reading)
            if e.channel_key == "datalogger.completion"
        ]
        assert ratios[-1] == 25.0
        assert source.last_acquisition == "ref1"

        content = {
            "cmd": "response_read_datalogging_acquisition_content",
            "xdata": {"name": "Time (ms)", "data": [0.0, 1.0, 2.0]},
            "signals": [
                {"name": "sine", "data": [0.1, "nan", 0.3]},
                {"watchable": {"path": "/x"}, "data": [1]},
            ],
        }
        scrutiny_server.handlers["list_datalogging_acquisitions"] = lambda _req: {
            "cmd": "response_list_datalogging_acquisitions",
            "acquisitions": [{"reference_id": "ref1"}],
        }
        scrutiny_server.handlers["read_datalogging_acquisition_content"] = (
            lambda _req: content
        )
        assert await source.async_export_acquisition(None) == "ref1"
        blob = recorder.of_type(Reading)[-1].value
        assert isinstance(blob, BlobData) and blob.format == ".csv"
        assert blob.data.decode().splitlines() == [
            "Time (ms),sine,/x",
            "0.0,0.1,1",
            "1.0,nan,",
            "2.0,0.3,",
        ]

        scrutiny_server.handlers["list_datalogging_acquisitions"] = lambda _req: {
            "cmd": "response_list_datalogging_acquisitions",
            "acquisitions": [],
        }
        with pytest.raises(UnknownTarget):
            await source.async_export_acquisition(None)
        scrutiny_server.handlers["read_datalogging_acquisition_content"] = (
            lambda _req: {
                "cmd": "error",
                "msg": "Failed to read acquisition",
            }
        )
        with pytest.raises(UnknownTarget, match="Failed to read"):
            await source.async_export_acquisition("nope")
    finally:
        await source.async_stop()


async def test_writes_resolve_on_completion(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Writes resolve on completion."""
    source = await started(scrutiny_server, recorder, write_timeout=0.5)
    try:
        result = await source.async_write(
            TARGET, watchable_key("/static/main.cpp/counter"), 2.1
        )
        assert result.values == {"/static/main.cpp/counter": pytest.approx(2.1)}
        assert values(recorder, "/static/main.cpp/counter")[-1] == pytest.approx(
            2.1, abs=1e-6
        )
        assert await source.async_write(TARGET, watchable_key("/Mode"), "run")
        assert (
            scrutiny_server.requests_of("write_watchable")[-1]["updates"][0]["value"]
            == 1
        )
        await source.async_write(
            TARGET, watchable_key("/static/main.cpp/counter_enable"), True
        )

        # Not watched: subscribed for the write, unsubscribed after it.
        completion = await source.async_write_path("/global/device/uptime", 12)
        assert completion.success and completion.value == 12
        assert scrutiny_server.requests_of("unsubscribe_watchable")[-1][
            "watchables"
        ] == ["/global/device/uptime"]

        for bad in ("abc", float("nan"), True):
            with pytest.raises(InvalidValue):
                await source.async_write(
                    TARGET, watchable_key("/static/main.cpp/counter"), bad
                )
        with pytest.raises(InvalidValue):
            await source.async_write_path("/global/device/uptime", -1)
        with pytest.raises(InvalidValue):
            await source.async_write(TARGET, watchable_key("/Mode"), "fast")
        with pytest.raises(InvalidValue):
            await source.async_write(
                TARGET, watchable_key("/static/main.cpp/counter_enable"), "yes"
            )
        with pytest.raises(UnknownTarget):
            await source.async_write(TARGET, watchable_key("/nothing"), 1)
        with pytest.raises(UnknownTarget):
            await source.async_write_path("/nothing", 1)

        scrutiny_server.write_success = False
        with pytest.raises(CommandRejected, match="read-only"):
            await source.async_write(
                TARGET, watchable_key("/static/main.cpp/counter"), 1
            )
        scrutiny_server.complete_writes = False
        with pytest.raises(CommandTimeout):
            await source.async_write(
                TARGET, watchable_key("/static/main.cpp/counter"), 1
            )
        assert source.diagnostics()["counters"]["writes_failed"] == 1
    finally:
        await source.async_stop()
    with pytest.raises(NotConnected):
        await source.async_write_path("/static/main.cpp/counter", 1)


async def test_link_loss_reports_the_sdk_events_then_reconnects(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Link loss reports the sdk events then reconnects."""
    source = await started(scrutiny_server, recorder)
    try:
        await scrutiny_server.drop()
        await recorder.wait_for(LinkDown)
        kinds = [
            e.value.event_type
            for e in recorder.of_type(Reading)
            if isinstance(e.value, EventData) and e.value.event_type != "status_update"
        ]
        assert kinds[-3:] == ["device_gone", "sfd_unloaded", "disconnected"]
        await recorder.wait_for(LinkUp, count=2)
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == event_channel_key("device_ready"),
            count=2,
        )
        assert source.diagnostics()["connection"]["connects"] == 2
    finally:
        await source.async_stop()


async def test_silence_brings_an_echo_and_a_dead_link_is_dropped(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Silence brings an echo and a dead link is dropped."""
    source = await started(scrutiny_server, recorder, silence_seconds=0.2)
    try:
        await recorder.wait_for(LinkUp)
        async with asyncio.timeout(5):
            while not scrutiny_server.requests_of("echo"):
                scrutiny_server.received.clear()
                await scrutiny_server.received.wait()
        # The server stops answering (a half-open link): the echo times out and the link drops.
        del scrutiny_server.handlers["echo"]
        scrutiny_server.handlers["echo"] = lambda _req: None
        await recorder.wait_for(LinkDown)
    finally:
        await source.async_stop()


async def test_malformed_frames_are_logged_once_and_skipped(
    scrutiny_server: FakeScrutinyServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Malformed frames are logged once and skipped."""
    source = await started(scrutiny_server, recorder)
    try:
        good = scrutiny_server.value_update("/Sine Wave", 0.75)
        broken = bytearray(encode_message(good))
        broken[40] ^= 0xFF
        with caplog.at_level(logging.DEBUG):
            await scrutiny_server.send_raw(
                bytes(broken) + b"<SCRUTINY size=4 flags=ch>junk"
            )
            await scrutiny_server.send_raw(
                b"<SCRUTINY size=5 flags=>notjs" + encode_message(good)
            )
            await recorder.wait_for(
                Reading, lambda e: e.channel_key == watchable_key("/Sine Wave")
            )
        warnings = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and "Skipped malformed" in r.message
        ]
        assert len(warnings) == 1
        assert values(recorder, "/Sine Wave") == [0.75]
        assert source.diagnostics()["connection"]["malformed"] >= 2
    finally:
        await source.async_stop()


async def test_not_a_scrutiny_server(socket_enabled: None) -> None:
    """Not a scrutiny server."""

    async def chatter(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"<html>hello</html>" * 300)
        await writer.drain()
        writer.close()

    async def silent_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.close()

    async def other_first(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(encode_message({"cmd": "inform_server_status", "reqid": None}))
        await writer.drain()
        await reader.read()

    for handler in (chatter, silent_close, other_first):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = ScrutinyConnection(
            "127.0.0.1", port, on_push=lambda _m: None, on_link=lambda _u, _r: None
        )
        try:
            with pytest.raises(NotScrutiny):
                await connection.connect()
        finally:
            await connection.close()
            server.close()
            await server.wait_closed()


async def test_a_push_in_the_welcomes_read_is_delivered(socket_enabled: None) -> None:
    """A message that arrives in the same read as the welcome is the session's first push."""
    pushes: list[dict[str, object]] = []

    async def eager(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            encode_message({"cmd": "welcome", "reqid": None})
            + encode_message({"cmd": "inform_datalogging_list_changed", "reqid": None})
        )
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(eager, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connected = asyncio.Event()

    def push(message: dict[str, object]) -> None:
        pushes.append(message)
        connected.set()

    connection = ScrutinyConnection(
        "127.0.0.1",
        port,
        on_push=push,
        on_link=lambda _up, _reason: None,
    )
    try:
        await connection.connect()
        connection.start()
        async with asyncio.timeout(5):
            await connected.wait()
        assert pushes[0]["cmd"] == "inform_datalogging_list_changed"
    finally:
        await connection.close()
        server.close()
        await server.wait_closed()


async def test_cannot_connect(socket_enabled: None) -> None:
    """Cannot connect."""
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    source = ScrutinySource("127.0.0.1", port)
    with pytest.raises(CannotConnect):
        await source.async_start(lambda _event: None)
    await source.async_stop()


async def test_requests_errors_and_timeouts(
    scrutiny_server: FakeScrutinyServer,
) -> None:
    """Requests errors and timeouts."""
    pushes: list[dict[str, object]] = []
    connection = ScrutinyConnection(
        "127.0.0.1",
        scrutiny_server.port,
        on_push=pushes.append,
        on_link=lambda _u, _r: None,
    )
    await connection.connect()
    connection.start()
    try:
        with pytest.raises(CommandRejected, match="Unsupported command"):
            await connection.request("no_such_cmd")
        scrutiny_server.handlers["slow"] = lambda _req: None
        with pytest.raises(CommandTimeout):
            await connection.request("slow", timeout=0.1)
        await scrutiny_server.push(
            {"cmd": "watchable_update", "reqid": 12345, "updates": []}
        )
        await connection.request("echo")
        assert pushes and pushes[0]["reqid"] == 12345  # an unknown reqid is a push
        assert connection.stats()["pending_requests"] == 0
    finally:
        await connection.close()
    with pytest.raises(NotConnected):
        await connection.request("echo")
    with pytest.raises(CannotConnect):
        await connection.connect()


def test_status_derivation_matches_the_sdk_on_the_captured_session() -> None:
    """The captured statuses yield exactly the SDK's sequence observed with the demo device (note §1.6)."""
    capture = (
        Path(__file__).parent.parent / "fixtures" / "scrutiny" / "raw_messages.jsonl"
    )
    import json  # noqa: PLC0415

    previous = None
    kinds: list[str] = []
    for line in capture.read_text().splitlines():
        message = json.loads(line)["msg"]
        if message.get("cmd") != "inform_server_status":
            continue
        current = ServerStatus.from_message(message)
        kinds += [event.kind.value for event in status_changes(previous, current)]
        previous = current
    kinds += [event.kind.value for event in status_changes(previous, None)]
    compact = [
        kind
        for index, kind in enumerate(kinds)
        if index == 0 or kinds[index - 1] != kind
    ]
    assert compact[:4] == [
        "device_ready",
        "sfd_loaded",
        "datalogging_state_changed",
        "device_gone",
    ]
    assert "sfd_unloaded" in compact
    assert compact[-1] == "datalogging_state_changed" or compact[-1] in {
        "device_gone",
        "sfd_unloaded",
    }


def test_message_parsers_tolerate_bad_fields() -> None:
    """Message parsers tolerate bad fields."""
    assert ServerStatus.from_message(
        {"datalogging_status": {"datalogging_state": "weird", "completion_ratio": True}}
    ) == ServerStatus("unknown", None, None, "unavailable", None)
    assert parse_updates({"updates": "x"}) == []
    assert [
        u.value
        for u in parse_updates({"updates": [{"id": "1", "v": "s"}, {"v": 1}, 3]})
    ] == [None]
    assert (
        parse_watchable_list(
            {
                "content": {
                    "var": [{"path": "/a"}, "x", {"path": "/b", "dtype": "float64"}],
                    "alias": 3,
                }
            }
        )[0].path
        == "/b"
    )
    assert acquisition_csv({}) == "x\n"
