"""hololinked's wire format: the SSE parser (captured streams, bad input, any chunking), payloads, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
import json
from pathlib import Path

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.sources.hololinked.protocol import (
    PayloadError,
    SseEvent,
    SseParser,
    ThingError,
    decode_payload,
    payload_time,
    thing_error,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hololinked"


def captured_body(name: str) -> bytes:
    """Return the body of a captured SSE response (``curl -i``): what follows the blank line."""
    raw = (FIXTURES / name).read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1] if raw.startswith(b"HTTP/") else raw


DP = captured_body("sse_dp.txt")
STATS = captured_body("sse_stats.txt")
WAVELENGTH = captured_body("sse_wl.txt")


def parse_chunks(
    data: bytes, sizes: list[int], max_line_bytes: int = 1024 * 1024
) -> tuple[list[SseEvent], SseParser]:
    """Feed ``data`` in chunks of the given sizes (cycled); return the events and the parser."""
    parser = SseParser(max_line_bytes)
    events: list[SseEvent] = []
    pos = index = 0
    while pos < len(data):
        size = sizes[index % len(sizes)]
        events += parser.feed(data[pos : pos + size])
        pos += size
        index += 1
    return events, parser


def parse(data: bytes, max_line_bytes: int = 1024 * 1024) -> list[SseEvent]:
    """Parse ``data`` in one chunk."""
    return parse_chunks(data, [len(data) or 1], max_line_bytes)[0]


# --------------------------------------------------------------------------------------------------
# Captured streams


def test_captured_data_point_stream() -> None:
    """The captured hololinked stream gives one event per data line, the JSON intact."""
    events = parse(DP)
    payloads = [json.loads(event.data) for event in events]
    assert payloads[0] == {"timestamp": 1795236054.0518181, "energy": 0.001002086}
    assert len(payloads) == 4
    assert all(event.event == "message" for event in events)


def test_captured_statistics_and_change_event_streams() -> None:
    """Statistics objects and a property's bare values (``data: 633``)."""
    assert [json.loads(e.data)["pulse_count"] for e in parse(STATS)] == [14, 15, 16]
    assert [json.loads(e.data) for e in parse(WAVELENGTH)] == [633, 800]


# --------------------------------------------------------------------------------------------------
# The format (WHATWG HTML 9.2)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(ending: bytes) -> None:
    """LF, CR LF and a lone CR all end lines (aiohttp-sse-client splits on LF only)."""
    data = ending.join([b"data: 1", b"", b"data: 2", b"", b""])
    assert [e.data for e in parse(data)] == ["1", "2"]


def test_cr_lf_split_across_chunks_is_one_line_end() -> None:
    """A CR at the end of a chunk and the LF opening the next one are one line end, not two."""
    data = b"data: a\r\ndata: b\r\n\r\n"
    events, _ = parse_chunks(data, [8, 100])  # "data: a\r" | "\ndata: b..."
    assert [e.data for e in events] == ["a\nb"]


def test_fields_comments_and_multiline_data() -> None:
    """Comments are skipped, data lines join with LF, event names the type, one space is trimmed."""
    data = (
        b": keep-alive\n"
        b"event: pulse\n"
        b'data:{"a":\n'
        b"data:  1}\n"
        b"id: 7\n"
        b"retry: 100\n"
        b"\n"
        b"data\n"
        b"\n"
    )
    events = parse(data)
    assert events == [SseEvent('{"a":\n 1}', "pulse"), SseEvent("", "message")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    """Blank lines alone (or only an event type) are no event."""
    assert parse(b"\n\n\nevent: x\n\n") == []


def test_a_utf8_bom_opens_the_stream() -> None:
    """A byte order mark before the first field is not part of its name."""
    assert [e.data for e in parse(b"\xef\xbb\xbfdata: 1\n\n")] == ["1"]


def test_an_event_cut_off_by_the_end_of_the_stream_is_not_dispatched() -> None:
    """Truncated: the last event has no blank line yet; reset() forgets it for a new connection."""
    parser = SseParser()
    assert parser.feed(b'data: 1\n\ndata: {"energy": 0.00') == [SseEvent("1")]
    parser.reset()
    assert parser.feed(b"data: 2\n\n") == [SseEvent("2")]


# --------------------------------------------------------------------------------------------------
# Bad input in the middle of a real stream


def test_malformed_lines_drop_their_event_and_the_stream_goes_on() -> None:
    """An unknown field taints only its own event; what follows the next blank line is delivered."""
    drops: list[str] = []
    parser = SseParser(on_drop=lambda reason, _excerpt: drops.append(reason))
    bad = b'data: {"energy": 1}\ngarbage line\n\n'
    events = parser.feed(DP + bad + STATS)
    assert [json.loads(e.data).get("pulse_count") for e in events] == [
        None,
        None,
        None,
        None,
        14,
        15,
        16,
    ]
    assert drops == ["unknown field 'garbage line'"]
    assert (parser.dropped_lines, parser.dropped_events, parser.events) == (1, 1, 7)


def test_wrong_encoding_is_skipped_not_fatal() -> None:
    """A line that is not UTF-8 drops its event (aiohttp-sse-client raises and ends the stream)."""
    drops: list[str] = []
    parser = SseParser(on_drop=lambda reason, _excerpt: drops.append(reason))
    events = parser.feed(b'data: {"a": "\xff\xfe"}\n\n' + WAVELENGTH)
    assert [e.data for e in events] == ["633", "800"]
    assert drops == ["not UTF-8"]


def test_oversized_line_is_skipped_without_being_kept() -> None:
    """A line over the cap is skipped in bounded memory (aiohttp-sse-client raises on it)."""
    drops: list[bytes] = []
    parser = SseParser(
        max_line_bytes=64, on_drop=lambda _r, excerpt: drops.append(excerpt)
    )
    huge = b"data: " + b"9" * 10_000 + b"\n\n"
    events: list[SseEvent] = []
    for offset in range(0, len(huge), 100):
        events += parser.feed(huge[offset : offset + 100])
        assert len(parser._buffer) <= 64
    events += parser.feed(b"data: 1\n\n")
    assert [e.data for e in events] == ["1"]
    assert len(drops) == 1 and drops[0].startswith(b"data: 999")
    assert parser.dropped_events == 1


def test_nul_bytes_and_control_characters_are_data() -> None:
    """The format allows any character but CR and LF in a value: they reach the JSON decoder."""
    assert parse(b"data: a\x00b\n\n") == [SseEvent("a\x00b")]


# --------------------------------------------------------------------------------------------------
# Any chunking


_STREAM = (
    DP
    + b": comment\r\n"
    + b'data: {"x": 1}\r\nnonsense\r\n\r\n'
    + b"data: \xff\r\n\r"
    + STATS
    + b"event: e\rdata: a\rdata: b\r\r"
    + b"data: "
    + b"7" * 300
    + b"\n\n"
    + WAVELENGTH
    + b'data: {"tail": true}\n\n'
)
_EXPECTED = parse(_STREAM, max_line_bytes=128)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_events(sizes: list[int]) -> None:
    """Whatever the chunk boundaries (inside CR LF, inside UTF-8, inside an oversized line)."""
    events, parser = parse_chunks(_STREAM, sizes, max_line_bytes=128)
    assert events == _EXPECTED
    assert parser.dropped_events == 3


def test_the_chunking_stream_has_what_the_test_claims() -> None:
    """The stream above holds good, malformed, non-UTF-8, oversized and CR-only events."""
    assert [e.data for e in _EXPECTED][-4:] == ["a\nb", "633", "800", '{"tail": true}']
    assert len(_EXPECTED) == 4 + 3 + 1 + 3


_EDGE_FRAMES = (
    b"data: ok\n\n"
    b"data: a\rdata: b\n\n"  # a CR ends a line inside the frame
    b"data: \xff\n\n"  # not UTF-8: dropped
    b"data:nospace\n\n"
    b"data:  two\n\n"  # only the first space goes
    b"data: " + b"9" * 200 + b"\n\n"  # over the bound: dropped
    b"data\n\n"  # a field without a colon: empty data
    b"data: last\n\n"
)


def test_whole_frames_in_one_read_parse_as_line_by_line() -> None:
    """A read holding whole frames gives what the same bytes give one at a time.

    One byte a read never holds a blank line, so it goes line by line; one read of everything takes
    the whole-frame path wherever a frame allows it and must hand every other frame on.
    """
    whole, parser = parse_chunks(_EDGE_FRAMES, [len(_EDGE_FRAMES)], 128)
    bytewise, _ = parse_chunks(_EDGE_FRAMES, [1], 128)
    assert whole == bytewise
    assert [e.data for e in whole] == ["ok", "a\nb", "nospace", " two", "", "last"]
    assert parser.dropped_events == 2
    assert parser.events == 6


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(noise: bytes) -> None:
    """Noise never raises, and a clean event after a blank line is still delivered."""
    parser = SseParser(max_line_bytes=64)
    parser.feed(noise)
    events = parser.feed(b"\n\n\ndata: ok\n\n")
    assert events[-1] == SseEvent("ok")


# --------------------------------------------------------------------------------------------------
# Payloads


def test_decode_payload_keeps_null_and_refuses_non_json() -> None:
    """Null is the Thing's NaN; text that is not JSON raises PayloadError."""
    assert decode_payload('{"energy": null}') == {"energy": None}
    assert decode_payload("633") == 633
    with pytest.raises(PayloadError):
        decode_payload("image/jpeg;base64,AAAA")


def test_thing_error_recognises_only_the_exception_envelope() -> None:
    """{"exception": {...}} is an error; any other value is not."""
    assert thing_error(
        {"exception": {"message": "too high", "type": "ValueError"}}
    ) == (ThingError("too high", "ValueError"))
    assert thing_error({"exception": "boom"}) == ThingError("boom")
    assert thing_error({"exception": {}}) == ThingError("unknown error")
    assert thing_error({"exception": 1, "other": 2}) is None
    assert thing_error(None) is None
    assert thing_error("exception") is None


# --------------------------------------------------------------------------------------------------
# Timestamps

LOCAL = timezone(timedelta(hours=2))
ARRIVAL = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)  # 14:00 local


def test_epoch_seconds_and_milliseconds() -> None:
    """Epoch seconds as sent by the capture; very large values are milliseconds."""
    assert payload_time(1795236054.5, ARRIVAL, LOCAL) == datetime.fromtimestamp(
        1795236054.5, UTC
    )
    assert payload_time(1795236054500, ARRIVAL, LOCAL) == datetime.fromtimestamp(
        1795236054.5, UTC
    )


def test_clock_time_of_the_seed_is_today_local() -> None:
    """The seed's HH:MM:SS.mmm is a time of the arrival's local day."""
    assert payload_time("13:59:59.250", ARRIVAL, LOCAL) == datetime(
        2026, 11, 21, 11, 59, 59, 250000, tzinfo=UTC
    )


def test_clock_time_across_midnight() -> None:
    """A reading from 23:59:59 arriving at 00:00:01 is from the day before (and vice versa)."""
    just_after = datetime(
        2026, 11, 21, 22, 0, 1, tzinfo=UTC
    )  # 00:00:01 local on the 22nd
    assert payload_time("23:59:59.000", just_after, LOCAL) == datetime(
        2026, 11, 21, 21, 59, 59, tzinfo=UTC
    )
    just_before = datetime(2026, 11, 21, 21, 59, 59, tzinfo=UTC)  # 23:59:59 local
    assert payload_time("00:00:01", just_before, LOCAL) == datetime(
        2026, 11, 21, 22, 0, 1, tzinfo=UTC
    )


def test_iso_times_with_and_without_offset() -> None:
    """ISO 8601 with an offset is taken as is; without, as local time."""
    assert payload_time("2026-11-21T10:00:00+00:00", ARRIVAL, LOCAL) == datetime(
        2026, 11, 21, 10, tzinfo=UTC
    )
    assert payload_time("2026-11-21T10:00:00", ARRIVAL, LOCAL) == datetime(
        2026, 11, 21, 8, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "soon",
        "25:00:00",
        "12:61:00",
        float("nan"),
        float("inf"),
        1e300,
        [1],
        {},
    ],
)
def test_what_does_not_parse_is_none(value: object) -> None:
    """Anything else falls back to the arrival time (the caller's choice)."""
    assert payload_time(value, ARRIVAL, LOCAL) is None


def test_an_event_over_the_bound_is_dropped_without_keeping_its_lines() -> None:
    """Many data lines adding up past the bound: dropped (not buffered), the next event delivered."""
    parser = SseParser(max_line_bytes=1000)
    events = parser.feed(b"data: 123456789\n" * 500 + b"\ndata: 7\n\n")
    assert events == [SseEvent("7")]
    assert parser.dropped_events == 1
    assert sum(len(part) for part in parser._data) == 0
    events = parser.feed(b"data: 1\n" * 100 + b"\n")
    assert len(events) == 1  # within the bound: one event of 100 lines
