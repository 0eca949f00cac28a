"""The hololinked source's streams against a scripted Thing: bad input mid-stream, ends, auth, rewriting."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from custom_components.instrument_hub.events import (
    ChannelRemoved,
    EventData,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
    join_key,
)
from custom_components.instrument_hub.sources.base import (
    CommandRejected,
    CommandTimeout,
    EventSink,
)
from custom_components.instrument_hub.sources.hololinked import (
    Credentials,
    HololinkedSource,
    parse_thing_url,
)
from custom_components.instrument_hub.sources.hololinked.client import (
    EXECUTOR_JSON_BYTES,
    MAX_BODY_BYTES,
)
from custom_components.instrument_hub.sources.hololinked.source import (
    STREAM_OPEN_TIMEOUT,
)
from tests.fake_thing import FakeThing, captured_td, fake_thing

from .conftest import EventRecorder

ENERGY = join_key("event", "data_point_event", "energy")
DATA_POINT = join_key("event", "data_point_event")
PULSES = join_key("event", "statistics_event", "pulse_count")
WAVELENGTH = join_key("property", "wavelength")
DP_PATH = "data-point-event"
LOGGER = "custom_components.instrument_hub.sources.hololinked.client"


async def _started(
    session: aiohttp.ClientSession,
    thing: FakeThing,
    sink: EventSink,
    liveness_interval: float = 0.5,
    **kwargs: object,
) -> HololinkedSource:
    source = HololinkedSource(
        session,
        parse_thing_url(thing.url),
        backoff_min=0.05,
        backoff_max=0.2,
        liveness_interval=liveness_interval,
        **kwargs,  # type: ignore[arg-type]
    )
    await source.async_start(sink)
    await thing.wait_subscribed(DP_PATH)
    return source


def _energies(recorder: EventRecorder) -> list[object]:
    return [r.value for r in recorder.of_type(Reading) if r.channel_key == ENERGY]


async def test_bad_lines_and_non_json_are_skipped_and_logged_once(
    session: aiohttp.ClientSession,
    thing: FakeThing,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Malformed, non-UTF-8, non-JSON and truncated-then-resynced data in a real stream are skipped."""
    source = await _started(session, thing, recorder)
    try:
        caplog.set_level(logging.DEBUG, logger=LOGGER)
        thing.send(DP_PATH, b'data: {"timestamp": 1.0, "energy": 0.001}\n\n')
        thing.send(DP_PATH, b"data: not json at all\n\n")
        thing.send(DP_PATH, b'garbage\ndata: {"energy": 5}\n\n')
        thing.send(DP_PATH, b'data: {"energy": "\xff"}\n\n')
        thing.send(DP_PATH, b"data: image/jpeg;base64,AAAA\n\n")
        for byte in b'data: {"timestamp": 2.0, "energy": null}\r\n\r\n':
            thing.send(DP_PATH, bytes([byte]))  # one byte per chunk on the wire
        thing.send(DP_PATH, b'data: {"timestamp": 3.0, "energy": 0.002}\n\n')
        await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT, count=3)
        assert _energies(recorder) == [0.001, None, 0.002]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "goes on" in warnings[0].getMessage()
        stream = source.diagnostics()["streams"]["data_point_event"]
        assert (stream["malformed_lines"], stream["not_json"], stream["connects"]) == (
            2,
            2,
            1,
        )
    finally:
        await source.async_stop()


async def test_a_stream_the_server_ends_is_opened_again_without_losing_the_link(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """The Thing is alive (liveness answers): the subscription comes back, the link stays up."""
    source = await _started(session, thing, recorder)
    try:
        thing.send(
            DP_PATH, b'data: {"energy": 1, "timestamp": 0}\n\ndata: {"energy": 2'
        )
        thing.end_streams(DP_PATH)  # cut in the middle of an event: that one is lost
        await thing.wait_subscribed(DP_PATH, 2)
        thing.send(DP_PATH, b'data: {"energy": 3, "timestamp": 0}\n\n')
        await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT, count=2)
        assert _energies(recorder) == [1, 3]
        assert recorder.of_type(LinkDown) == []
        assert source.diagnostics()["streams"]["data_point_event"]["connects"] == 2
    finally:
        await source.async_stop()


async def test_changes_errors_and_rewritten_hrefs(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """A server that ignores ``authority`` still works (hrefs moved); pushed errors are messages."""
    async with fake_thing(honour_authority=False) as thing:
        source = await _started(session, thing, recorder)
        try:
            assert thing.requests[0].startswith(
                "GET /energy-meter/resources/wot-td?authority="
            )
            await thing.wait_subscribed("wavelength/change-event")
            thing.send("wavelength/change-event", b"data: 633\n\n")
            thing.send(
                "statistics-event",
                b'data: {"exception": {"message": "meter unplugged", "type": "IOError"}}\n\n',
            )
            await recorder.wait_for(
                Reading, lambda r: r.channel_key == WAVELENGTH and r.value == 633
            )
            message = await recorder.wait_for(Message)
            assert (message.text, message.level) == (
                "meter unplugged",
                MessageLevel.ERROR,
            )
            assert message.attributes == {
                "source": "statistics_event",
                "type": "IOError",
            }
            assert not [r for r in recorder.of_type(Reading) if r.channel_key == PULSES]
            with pytest.raises(CommandRejected, match="at most 25000"):
                await source.async_write("energy-meter", WAVELENGTH, 30000)
        finally:
            await source.async_stop()


async def test_credentials_refused_later_take_the_link_down_and_ask_once(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """A Thing restarted with another password: link down, on_auth_failed once, retried quietly."""
    asked: list[bool] = []
    async with fake_thing(credentials=("lab", "old")) as thing:
        source = await _started(
            session,
            thing,
            recorder,
            credentials=Credentials("lab", "old"),
            on_auth_failed=lambda: asked.append(True),
        )
        try:
            thing.credentials = ("lab", "new")
            thing.end_streams(DP_PATH)
            down = await recorder.wait_for(LinkDown)
            assert down.reason == "the Thing refused the credentials"
            await thing.wait_requests("wot-td", thing.count("wot-td") + 2)
            assert asked == [True]
            assert source.diagnostics()["last_error"].endswith("(HTTP 401)")
            assert "<host>" in source.diagnostics()["last_error"]
            thing.credentials = ("lab", "old")
            await recorder.wait_for(LinkUp, count=2)
        finally:
            await source.async_stop()


async def test_event_payloads_fire_with_the_payload(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """The event entity's reading carries the whole payload, null kept."""
    source = await _started(session, thing, recorder)
    try:
        thing.send(DP_PATH, b'data: {"timestamp": 1795236054.05, "energy": null}\n\n')
        fired = await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT)
        assert fired.value == EventData(
            "data_point_event", {"timestamp": 1795236054.05, "energy": None}
        )
    finally:
        await source.async_stop()


async def test_a_thing_back_with_another_td_redefines_its_channels(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """What the restarted Thing no longer has is removed; the rest is defined again, same keys."""
    async with fake_thing() as first:
        source = await _started(session, first, recorder)
        port = first.port
    try:
        await recorder.wait_for(LinkDown)
        td = captured_td()
        del td["properties"]["version"]
        async with fake_thing(td=td, port=port) as second:
            await recorder.wait_for(LinkUp, count=2)
            removed = recorder.of_type(ChannelRemoved)
            assert [r.channel_key for r in removed] == [join_key("property", "version")]
            await second.wait_subscribed(DP_PATH)
            second.send(DP_PATH, b'data: {"energy": 7, "timestamp": 0}\n\n')
            await recorder.wait_for(
                Reading, lambda r: r.channel_key == ENERGY and r.value == 7
            )
    finally:
        await source.async_stop()


async def test_properties_without_change_events_are_refreshed(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """A property that pushes nothing is read again every refresh interval."""
    source = await _started(session, thing, recorder, refresh_interval=0.1)
    try:
        gap = join_key("property", "measurement_gap")
        thing.properties["measurement_gap"] = 0.25
        await recorder.wait_for(
            Reading, lambda r: r.channel_key == gap and r.value == 0.25
        )
        # Observable ones are not polled: their stream tells.
        assert thing.requests.count("GET wavelength") == 1
    finally:
        await source.async_stop()


async def test_http_errors_timeouts_and_odd_answers(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """5xx, 408, an answer too large, no answer in time, a stream that is no stream."""
    source = await _started(session, thing, recorder, request_timeout=0.3)
    try:
        thing.overrides["PUT measurement-gap"] = (
            500,
            b"<html>boom</html>",
            "text/html",
        )
        with pytest.raises(CommandRejected, match="HTTP 500"):
            await source.async_write(
                "energy-meter", join_key("property", "measurement_gap"), 1.0
            )
        thing.overrides["PUT measurement-gap"] = (408, b"", "text/plain")
        with pytest.raises(CommandTimeout):
            await source.async_write(
                "energy-meter", join_key("property", "measurement_gap"), 1.0
            )
        thing.overrides["PUT measurement-gap"] = (
            200,
            b'"' + b"x" * (MAX_BODY_BYTES + 10) + b'"',
            "application/json",
        )
        with pytest.raises(CommandRejected, match="larger than"):
            await source.async_write(
                "energy-meter", join_key("property", "measurement_gap"), 1.0
            )
        del thing.overrides["PUT measurement-gap"]
        thing.hang.add("PUT measurement-gap")
        with pytest.raises(CommandTimeout, match="within 0.3 s"):
            await source.async_write(
                "energy-meter", join_key("property", "measurement_gap"), 1.0
            )
        # A stream answered with JSON, then with 404: retried, the link stays up.
        thing.overrides["GET data-point-event"] = (200, b"{}", "application/json")
        thing.end_streams(DP_PATH)
        await thing.wait_requests("GET data-point-event", 2)
        thing.overrides["GET data-point-event"] = (404, b"", "text/html")
        await thing.wait_requests("GET data-point-event", 3)
        del thing.overrides["GET data-point-event"]
        await thing.wait_subscribed(DP_PATH, 2)
        assert recorder.of_type(LinkDown) == []
        assert source.diagnostics()["streams"]["data_point_event"]["failures"] >= 2
    finally:
        await source.async_stop()


async def test_a_large_td_is_decoded_off_the_loop(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """A TD of more than 256 KiB (long descriptions) is decoded in the executor and still read."""
    td = captured_td()
    td["description"] = "x" * (EXECUTOR_JSON_BYTES + 1)
    async with fake_thing(td=td) as thing:
        source = await _started(session, thing, recorder)
        try:
            assert (
                source.thing is not None
                and source.thing.description == td["description"]
            )
        finally:
            await source.async_stop()


async def test_a_stream_that_cannot_open_does_not_hold_up_the_start(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """An event whose route fails (404) is retried in the background; the rest starts at once."""
    async with fake_thing() as thing:
        thing.overrides["GET statistics-event"] = (404, b"", "text/html")
        started = time.monotonic()
        source = await _started(session, thing, recorder)
        try:
            assert time.monotonic() - started < STREAM_OPEN_TIMEOUT
            assert recorder.of_type(LinkUp)
            thing.send(DP_PATH, b'data: {"energy": 4, "timestamp": 0}\n\n')
            await recorder.wait_for(
                Reading, lambda r: r.channel_key == ENERGY and r.value == 4
            )
        finally:
            await source.async_stop()


async def test_a_pushing_thing_is_not_asked_and_a_quiet_one_is(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """Bytes on any stream prove the Thing alive: /liveness only goes out after a silence."""
    source = await _started(session, thing, recorder, liveness_interval=1.0)
    try:
        assert source.diagnostics()["streams"]["data_point_event"]["keepalive"] is True
        for index in range(
            25
        ):  # 2.5 s of pushes, ten a second: longer than two silences
            thing.send(DP_PATH, b'data: {"energy": %d, "timestamp": 0}\n\n' % index)
            await asyncio.sleep(0.1)
        await recorder.wait_for(
            Reading, lambda r: r.channel_key == DATA_POINT, count=25
        )
        assert thing.count("liveness") == 0
        await thing.wait_requests("liveness", 2)  # quiet: asked once per silence
        assert recorder.of_type(LinkDown) == []
    finally:
        await source.async_stop()


async def test_a_frozen_thing_is_dropped_after_the_silence_and_the_probe(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """Streams open but mute, /liveness unanswered: down after silence + probe timeout, then back."""
    source = await _started(session, thing, recorder, liveness_timeout=0.3)
    try:
        thing.hang.add("GET liveness")
        thing.send(DP_PATH, b'data: {"energy": 1, "timestamp": 0}\n\n')
        await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT)
        last_byte = time.monotonic()
        down = await recorder.wait_for(LinkDown)
        took = time.monotonic() - last_byte
        assert 0.5 + 0.3 - 0.05 <= took <= 0.5 + 0.3 + 1.0
        assert "does not answer" in down.reason
        thing.hang.discard("GET liveness")
        await recorder.wait_for(LinkUp, count=2)
    finally:
        await source.async_stop()
