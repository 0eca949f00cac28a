"""The Maestro wire format: commands, framing (any chunking), replies, *STS, statistics, pacing."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.sources.gentec.protocol import (
    DeviceError,
    Labelled,
    LineFramer,
    NewData,
    StatusWord,
    Unreadable,
    ValidRange,
    Value,
    Version,
    labelled_number,
    parse_line,
    parse_status,
    range_full_scale,
    range_label,
    set_range,
    set_trigger_level,
    set_wavelength,
)
from custom_components.instrument_hub.sources.pacing import WritePacer
from custom_components.instrument_hub.statistics import RunningStatistics
from simulators.gentec_maestro import CommandReader, MaestroMeter, _status_lines

# A realistic stream: replies of every kind, stream values, over-range, and damage in between.
STREAM = (
    b"MAESTRO Version 1.00.18\r\n"
    b"Mode: 1\r\n"
    b"1.002086e-03\r\n9.04687e-04\r\n"
    b"\xff\xfe\x00garbage\r\n"
    b"3.40282e+038\r\n"
    b"Current Value : 0.00500095\r\n" + b"7" * 300 + b"\r\n"
    b"New Data Not Available\r\n"
    b"Error 1: Command not found\r\n"
    b"PWC : 1064\r\n"
    b"[22] : 100.0 m\r\n"
    b":0 0006 0015\r\n"
    b"0.012\r\n"
)


def _parse_all(chunks: list[bytes]) -> list[object]:
    framer = LineFramer()
    return [parse_line(line) for chunk in chunks for line in framer.feed(chunk)]


def test_commands_have_the_manuals_fixed_widths() -> None:
    """*PWC five digits, *STL four characters, *SCS two digits, no terminator."""
    assert set_wavelength(514) == b"*PWC00514"
    assert set_wavelength(1550) == b"*PWC01550"
    assert set_trigger_level(15.4) == b"*STL15.4"
    assert set_trigger_level(0.2) == b"*STL0.20"
    assert set_trigger_level(2) == b"*STL2.00"
    assert set_trigger_level(9.999) == b"*STL10.0"
    assert set_range(8) == b"*SCS08"
    with pytest.raises(ValueError):
        set_wavelength(100000)
    with pytest.raises(ValueError):
        set_trigger_level(0.05)
    with pytest.raises(ValueError):
        set_range(42)


def test_range_table() -> None:
    """Index 24 is 1 W/J; 08 is 10 n (the table, not the manual's prose); 41 is 300 M."""
    assert range_label(24, "J") == "1 J"
    assert range_label(22, "J") == "100 mJ"
    assert range_label(8, "W") == "10 nW"
    assert range_label(41, "W") == "300 MW"
    assert range_full_scale(24) == 1.0
    assert math.isclose(range_full_scale(22), 0.1)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"0.012", Value(0.012)),
        (b"1.002086e-03 ", Value(1.002086e-03)),
        (b"3.40282e+038", Value(None)),
        (b"Current Value : 0.00500095", Value(0.00500095, legacy=True)),
        (b"Current Value : 3.40282e+038", Value(None, legacy=True)),
        (b"New Data Available", NewData(available=True)),
        (b"New Data Not Available", NewData(available=False)),
        (b"NVU Not Available", NewData(available=False)),
        (b"Error 1: Command not found", DeviceError(1, "Command not found")),
        (b"MAESTRO Version 1.00.18", Version("MAESTRO", "1.00.18")),
        (b"Mode : 0", Labelled("mode", "0")),
        (b"Mode: 1", Labelled("mode", "1")),
        (b"Trigger Level : 2.0", Labelled("trigger level", "2.0")),
        (b"[22] : 100.0 m", ValidRange(22)),
        (b":0 001A 4C58", StatusWord(end=False, address=0x1A, value=0x4C58)),
        (b":100000000", StatusWord(end=True, address=0, value=0)),
        (b"\xff0.5", Unreadable("not ASCII")),
        (b"0.5\x00", Unreadable("control characters")),
        (b"1.231.111e-03", Unreadable("unknown reply")),
        (b"Current Value : nope", Unreadable("current value is not a number")),
    ],
)
def test_reply_lines(line: bytes, reply: object) -> None:
    """Every reply form the manual and the drivers show, and what is none."""
    assert parse_line(line) == reply


def test_labelled_numbers_in_every_variant() -> None:
    """``PWC : 1064``, ``PWC: 1064``, a bare ``1064`` and the BLU's long trigger reply."""
    assert labelled_number(parse_line(b"PWC : 1064")) == 1064
    assert labelled_number(parse_line(b"PWC: 1064")) == 1064
    assert labelled_number(parse_line(b"1064")) == 1064
    assert (
        labelled_number(
            parse_line(b"Trigger level: 15.4% (4.6 Watts) of max power: 30 Watts")
        )
        == 15.4
    )
    assert labelled_number(parse_line(b"Mode : none")) is None
    assert labelled_number(NewData(available=True)) is None


def test_status_structure_decodes_head_name_and_serial() -> None:
    """*STS of the manual's example head: XLP12-3S-H2-D0, serial 199672, scales and wavelengths."""
    meter = MaestroMeter(valid_ranges=(17, 18, 25), range_index=21)
    lines = _status_lines("XLP12-3S-H2-D0", "199672", meter)
    words = [parse_line(line.encode()) for line in lines]
    assert all(isinstance(word, StatusWord) for word in words)
    status = parse_status([w for w in words if isinstance(w, StatusWord)])
    assert status.name == "XLP12-3S-H2-D0"
    assert status.serial == "199672"
    assert (status.current_scale, status.min_scale, status.max_scale) == (21, 17, 25)
    assert (status.wavelength, status.min_wavelength, status.max_wavelength) == (
        1064,
        193,
        10600,
    )
    # The manual prints the lines with spaces: the same words.
    spaced = parse_line(b":0 001A 4C 58")
    assert spaced == StatusWord(end=False, address=0x1A, value=0x4C58)
    empty = parse_status([])
    assert empty.name is None
    assert empty.serial is None


def test_framer_drops_oversized_lines_and_keeps_what_follows() -> None:
    """A line longer than the cap is dropped whole, even without its end for a while."""
    framer = LineFramer(max_line=16)
    assert framer.feed(b"1" * 10) == []
    assert framer.feed(b"1" * 10) == []
    assert framer.feed(b"1111\r\n0.5\r\n") == [b"0.5"]
    assert framer.oversized == 1
    assert framer.feed(b"2" * 40 + b"\n0.25\n") == [b"0.25"]
    assert framer.oversized == 2
    framer.feed(b"partial")
    framer.reset()
    assert framer.feed(b"0.75\r\n") == [b"0.75"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    """Whatever the chunking, the same replies come out (garbage and over-long lines included)."""
    points = sorted(set(cuts))
    chunks = [
        STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)
    ]
    assert _parse_all(chunks) == _parse_all([STREAM])
    replies = _parse_all([STREAM])
    values = [r for r in replies if isinstance(r, Value)]
    assert [v.value for v in values] == [
        1.002086e-03,
        9.04687e-04,
        None,
        0.00500095,
        0.012,
    ]


def test_running_statistics_are_exact_and_reset() -> None:
    """Min, max, mean and count of every value; NaN and infinities are refused."""
    stats = RunningStatistics()
    assert stats.snapshot().count == 0
    assert stats.snapshot().mean is None
    values = [1e-3, 2e-3, 0.5e-3, 1.5e-3]
    for value in values:
        assert stats.add(value)
    assert not stats.add(math.nan)
    assert not stats.add(math.inf)
    snapshot = stats.snapshot()
    assert (snapshot.minimum, snapshot.maximum, snapshot.count) == (0.5e-3, 2e-3, 4)
    assert snapshot.mean is not None
    assert math.isclose(snapshot.mean, sum(values) / len(values), rel_tol=1e-15)
    assert stats.count == 4
    stats.reset()
    assert stats.snapshot().minimum is None


async def test_pacer_bounds_writes_and_shows_the_newest_within_its_delay() -> None:
    """At a steady rate up to the bound every offer is written; above it, ``rate`` a second."""
    loop = asyncio.get_running_loop()
    flushed: list[float] = []
    done = asyncio.Event()

    def flush() -> None:
        flushed.append(loop.time())
        done.set()

    pacer = WritePacer(10.0, flush)
    assert pacer.max_delay == 0.1
    for _ in range(30):  # a burst far above the bound
        pacer.offer()
    assert len(flushed) == 10  # the bucket's burst
    done.clear()
    async with asyncio.timeout(2):
        await done.wait()
    # The other 20 were folded into one write of the newest, 1/rate later.
    assert len(flushed) == 11
    assert pacer.coalesced == 19
    assert flushed[10] - flushed[9] <= 0.1 + 0.05
    pacer.offer()
    done.clear()
    async with asyncio.timeout(2):
        await done.wait()
    assert flushed[11] - flushed[10] <= 0.1 + 0.05
    pacer.flush_now()
    assert len(flushed) == 13
    pacer.offer()
    pacer.cancel()
    with pytest.raises(ValueError):
        WritePacer(0, flush)


async def test_emulator_commands_without_terminators_and_errors() -> None:
    """The emulator cuts commands by their widths, any case, and refuses unknown ones."""
    meter = MaestroMeter()
    reader_lines: list[bytes] = []
    reader = CommandReader()
    for name, parameter in reader.feed(
        b"*pwc00532*STL15.4\r*xyz*GWL *gtl*SCS22*GCR*SCS99*GCR"
    ):
        reader_lines.extend(line.encode() for line in meter.answer(name, parameter))
    assert reader_lines == [
        b"Error 1: Command not found",
        b"PWC: 532",
        b"Trigger Level: 15.4",
        b"Range: 22",
        b"Range: 22",
    ]
    meter.manual_spacing = True
    assert meter.answer("GMD", "") == ["Mode : 1"]
    assert meter.answer("PWC", "00000") == []
    assert meter.wavelength == 1064  # zero restores the calibration wavelength
