"""The Gentec source against the Maestro emulator on a real pty: pulses, statistics, faults, links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import logging
import math
from pathlib import Path
import time

import pytest

from custom_components.instrument_hub.events import (
    ChannelDefined,
    DeviceFound,
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
from custom_components.instrument_hub.sources.gentec import (
    AcquisitionMode,
    GentecSource,
)
from custom_components.instrument_hub.sources.gentec.client import MaestroConnection
from custom_components.instrument_hub.sources.gentec.mapping import METER
from custom_components.instrument_hub.sources.gentec.protocol import Labelled, Version
from simulators.gentec_maestro import MaestroEmulator, MaestroMeter

from .conftest import EventRecorder

UNPLUG_BOUND = 2.0


@pytest.fixture
async def meter(tmp_path: Path) -> AsyncIterator[MaestroEmulator]:
    """Serve an energy meter on a pty behind a by-id-like link; pulses only when a test starts them."""
    emulator = MaestroEmulator(rate=50.0, link=tmp_path / "maestro", pulses=False)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def started(
    meter: MaestroEmulator, recorder: EventRecorder
) -> AsyncIterator[GentecSource]:
    """Start a streaming source on the emulator, stopped after the test."""
    source = GentecSource(
        meter.device, backoff_min=0.05, backoff_max=0.2, mode_check=0.5
    )
    await source.async_start(recorder)
    try:
        yield source
    finally:
        await source.async_stop()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait, bounded, for a condition the emulator or source makes true (checked every 10 ms)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)  # a poll inside the bounded wait, not a time wait


def _values(recorder: EventRecorder, channel: str) -> list[object]:
    return [e.value for e in recorder.of_type(Reading) if e.channel_key == channel]


async def test_identifies_the_meter_and_its_head(
    started: GentecSource, recorder: EventRecorder
) -> None:
    """*VER, *STS, *GMD, *DVS: device, channels, units and ranges come from the meter."""
    device = recorder.of_type(DeviceFound)[0]
    assert device.model == "MAESTRO with QE25LP-S-MB"
    assert device.sw_version == "1.00.18"
    assert device.serial_number == "235792"
    assert device.hardware_id == "gentec-235792"
    channels = {c.channel_key: c for c in recorder.of_type(ChannelDefined)}
    assert channels["reading"].unit == "J"
    assert channels["range"].options == (
        "auto",
        "300 µJ",
        "1 mJ",
        "3 mJ",
        "10 mJ",
        "30 mJ",
        "100 mJ",
        "300 mJ",
        "1 J",
        "3 J",
    )
    assert channels["range"].value == "10 mJ"
    assert channels["wavelength"].value == 1064
    assert (channels["wavelength"].minimum, channels["wavelength"].maximum) == (
        193,
        10600,
    )
    assert channels["trigger_level"].value == 2.0
    assert "measurement_gap" not in channels  # streaming has no gap
    assert recorder.of_type(LinkUp)


async def test_streaming_counts_every_pulse_exactly(
    meter: MaestroEmulator, started: GentecSource
) -> None:
    """Every streamed pulse is in the statistics, once: min, max and mean equal the emulator's."""
    meter.meter.over_range_next = 0
    meter.start_pulses(200.0)
    await _until(lambda: len(meter.streamed_values) >= 300)
    meter.meter.over_range_next = 2
    await _until(lambda: len(meter.streamed_values) >= 400)
    meter.stop_pulses()
    sent = meter.streamed_values
    await _until(lambda: started.pulses == len(sent))
    valid = [v for v in sent if v is not None]
    snapshot = started.statistics.snapshot()
    assert snapshot.count == len(valid) == len(sent) - 2
    assert snapshot.minimum == min(valid)
    assert snapshot.maximum == max(valid)
    assert snapshot.mean is not None
    assert math.isclose(snapshot.mean, math.fsum(valid) / len(valid), rel_tol=1e-12)
    assert started.over_range == 2


async def test_faults_in_the_stream_are_skipped_and_logged_once(
    meter: MaestroEmulator,
    started: GentecSource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Garbage, wrong encoding, an over-long line and a half line are skipped; the rest counts."""
    meter.start_pulses(100.0)
    await _until(lambda: started.pulses >= 20)
    with caplog.at_level(logging.DEBUG):
        meter.inject_garbage()
        meter.inject_wrong_encoding()
        meter.inject_oversized_line()
        meter.inject_half_line()
        await _until(lambda: len(meter.streamed_values) >= 80)
        meter.stop_pulses()
        sent = meter.streamed_values
        await _until(lambda: started.statistics.count == len(sent))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Unreadable line" in warnings[0].getMessage()
    assert started.statistics.snapshot().maximum == max(
        v for v in sent if v is not None
    )
    stats = started.diagnostics()["connection"]
    assert stats["oversized_lines"] == 1
    assert stats["unreadable_lines"] >= 3


async def test_polling_reads_new_values_only(
    meter: MaestroEmulator, recorder: EventRecorder
) -> None:
    """The seed's loop: *NVU then *CVU; a slow laser's every pulse, each once; legacy replies too."""
    meter.meter.legacy = True
    source = GentecSource(meter.device, mode=AcquisitionMode.POLL, gap=0.01)
    await source.async_start(recorder)
    try:
        channels = {c.channel_key: c for c in recorder.of_type(ChannelDefined)}
        assert channels["measurement_gap"].value == 0.01
        meter.start_pulses(10.0)
        await _until(lambda: len(meter.meter.produced) >= 15)
        meter.stop_pulses()
        produced = [m.value for m in meter.meter.produced]
        await _until(lambda: source.pulses == len(produced))
        assert meter.meter.answered == produced  # each pulse read exactly once
        assert source.statistics.snapshot().maximum == max(
            v for v in produced if v is not None
        )
        await source.async_write(METER, "measurement_gap", 0.05)
        assert source.gap == 0.05
    finally:
        await source.async_stop()


async def test_writes_are_confirmed_by_reading_back(
    meter: MaestroEmulator, started: GentecSource
) -> None:
    """Wavelength, trigger level and range reach the meter and are read back; refusals say so."""
    result = await started.async_write(METER, "wavelength", 532.0)
    assert result.values == {"wavelength": 532}
    assert meter.meter.wavelength == 532
    assert "*PWC00532" in meter.meter.commands
    result = await started.async_write(METER, "trigger_level", 15.4)
    assert result.values == {"trigger_level": 15.4}
    assert meter.meter.trigger_level == 15.4
    result = await started.async_write(METER, "range", "100 mJ")
    assert meter.meter.range_index == 22
    result = await started.async_write(METER, "range", "auto")
    assert meter.meter.autoscale
    # The meter ignores a wavelength outside its head: it restores 1064 nm, the write fails.
    meter.meter.max_wavelength = 2000
    with pytest.raises(CommandRejected, match="1064 nm"):
        await started.async_write(METER, "wavelength", 5000)
    for channel, value in (
        ("wavelength", 100),
        ("trigger_level", 120.0),
        ("range", "7 J"),
        ("trigger_level", "high"),
        ("measurement_gap", 5.0),
    ):
        with pytest.raises(InvalidValue):
            await started.async_write(METER, channel, value)
    with pytest.raises(UnknownTarget):
        await started.async_write(METER, "reading", 1.0)
    with pytest.raises(UnknownTarget):
        await started.async_write("other", "reading", 1.0)
    with pytest.raises(UnknownTarget):
        await started.async_run_action(METER, "reading")


async def test_statistics_switch_and_reset(
    meter: MaestroEmulator, started: GentecSource, recorder: EventRecorder
) -> None:
    """Off: pulses still show but are not counted; reset: everything starts again."""
    meter.start_pulses(100.0)
    await _until(lambda: started.statistics.count >= 10)
    await started.async_write(METER, "statistics", False)
    counted = started.statistics.count
    pulses = started.pulses
    await _until(lambda: started.pulses >= pulses + 10)
    assert started.statistics.count == counted
    await started.async_run_action(METER, "reset_statistics")
    assert started.statistics.count == 0
    assert _values(recorder, "pulse_count")[-1] == 0
    await started.async_write(METER, "statistics", True)
    await _until(lambda: started.statistics.count >= 5)
    meter.stop_pulses()


async def test_pulse_events_and_paced_writes(
    meter: MaestroEmulator, recorder: EventRecorder
) -> None:
    """Above the bound, writes are paced; each event says how many pulses it stands for."""
    source = GentecSource(meter.device, max_writes=5.0)
    await source.async_start(recorder)
    try:
        meter.start_pulses(200.0)
        started_at = time.monotonic()
        await _until(lambda: source.pulses >= 300)
        meter.stop_pulses()
        sent = meter.streamed_values
        await _until(lambda: source.pulses == len(sent))

        def pulse_events() -> list[EventData]:
            return [v for v in _values(recorder, "pulse") if isinstance(v, EventData)]

        def written() -> int:
            return sum(int(e.attributes["pulses"]) for e in pulse_events())  # type: ignore[call-overload]

        # The last paced write (at most 1/5 s late) has gone out once it accounts for every pulse.
        await _until(lambda: written() >= len(sent))
        elapsed = time.monotonic() - started_at
        events = pulse_events()
        assert len(events) <= 5 + 5 * elapsed + 1
        assert written() == len(sent)
        assert events[-1].attributes["value"] == sent[-1]
    finally:
        await source.async_stop()


async def test_unplug_is_noticed_at_once_and_replug_recovers(
    meter: MaestroEmulator, started: GentecSource, recorder: EventRecorder
) -> None:
    """The pty closing ends the link within the bound; a new pty behind the link brings it back."""
    meter.start_pulses(50.0)
    await _until(lambda: started.pulses >= 5)
    unplugged = time.monotonic()
    await meter.unplug()
    await recorder.wait_for(LinkDown)
    assert time.monotonic() - unplugged < UNPLUG_BOUND
    with pytest.raises(NotConnected):
        await started.async_write(METER, "wavelength", 800)
    await meter.plug()
    await recorder.wait_for(LinkUp, count=2)
    before = started.pulses
    await _until(lambda: started.pulses > before + 5)
    meter.stop_pulses()
    assert started.connects == 2


async def test_a_silent_meter_is_lost_within_the_bound(
    meter: MaestroEmulator, started: GentecSource, recorder: EventRecorder
) -> None:
    """A meter that stops answering (port still open) is noticed by the probe within 2 s."""
    silent_from = time.monotonic()
    meter.silent = True
    down = await recorder.wait_for(LinkDown)
    assert time.monotonic() - silent_from < UNPLUG_BOUND
    assert "did not answer" in down.reason
    meter.silent = False
    await recorder.wait_for(LinkUp, count=2)


async def test_a_mode_change_redefines_the_reading(
    meter: MaestroEmulator, started: GentecSource, recorder: EventRecorder
) -> None:
    """A power head (or no head) found by the probe: the reading's unit follows, statistics reset."""
    meter.meter.mode = 0
    await recorder.wait_for(
        ChannelDefined, lambda c: c.channel_key == "reading" and c.unit == "W"
    )
    meter.meter.mode = 7
    await recorder.wait_for(
        ChannelDefined, lambda c: c.channel_key == "reading" and c.unit is None
    )


async def test_not_a_gentec_meter(tmp_path: Path) -> None:
    """A port whose device does not answer *VER like a meter cannot start; a missing port neither."""
    other = MaestroEmulator(meter=MaestroMeter(model="", firmware=""), pulses=False)
    other.meter.version_reply = "ELM327 v1.5"
    async with other:
        source = GentecSource(other.device, reply_timeout=0.2)
        with pytest.raises(
            CannotConnect, match="does not answer like a Gentec-EO meter"
        ):
            await source.async_start(lambda _event: None)
        await source.async_stop()
    source = GentecSource(str(tmp_path / "nothing"))
    with pytest.raises(CannotConnect):
        await source.async_start(lambda _event: None)
    await source.async_stop()


async def test_connection_errors_timeouts_and_late_replies(
    meter: MaestroEmulator, socket_enabled: None
) -> None:
    """``Error X`` fails the command, silence times out, a late reply is not taken for the next."""
    values: list[object] = []
    lost: list[str] = []
    connection = MaestroConnection(
        meter.device,
        on_value=lambda value, _at: values.append(value),
        on_lost=lost.append,
        reply_timeout=0.2,
    )
    with pytest.raises(NotConnected):
        await connection.send(b"*VER")
    await connection.open()
    try:
        with pytest.raises(CommandRejected, match="Error 1: Command not found"):
            await connection.query(b"*XYZ", lambda _reply: True)
        meter.silent = True
        with pytest.raises(CommandTimeout):
            await connection.query(
                b"*GMD", lambda reply: True if isinstance(reply, Labelled) else None
            )
        meter.silent = False
        # A value that nobody asked for while not streaming is no pulse.
        meter.inject(b"1.0e-03\r\n")
        replies = await connection.query(
            b"*VER", lambda r: True if isinstance(r, Version) else None
        )
        assert replies == [Version("MAESTRO", "1.00.18")]
        assert values == []
        assert connection.stats()["unexpected_replies"] == 1
        assert connection.stats()["reply_timeouts"] == 1
    finally:
        await connection.close()
        await connection.close()
    assert not connection.is_open
    bad = MaestroConnection(
        "socket://127.0.0.1:1", on_value=lambda *_a: None, on_lost=lost.append
    )
    with pytest.raises(CannotConnect):
        await bad.open()


async def test_identify_falls_back_to_the_status_scales(
    tmp_path: Path, recorder: EventRecorder
) -> None:
    """A firmware without *DVS: the ranges come from *STS's minimum and maximum scales."""
    emulator = MaestroEmulator(pulses=False, link=tmp_path / "m")
    emulator.meter._cmd_dvs = lambda _parameter: []  # type: ignore[method-assign]  # noqa: SLF001
    async with emulator:
        source = GentecSource(emulator.device, reply_timeout=0.2)
        await source.async_start(recorder)
        try:
            assert source.identity is not None
            assert source.identity.ranges == tuple(range(17, 26))
            assert source.identity.range_index == 20
        finally:
            await source.async_stop()


async def test_polling_notices_a_silent_meter_within_the_bound(
    meter: MaestroEmulator, recorder: EventRecorder
) -> None:
    """Polling with the longest gap (1 s): two unanswered *NVU and the link is down within 2 s."""
    source = GentecSource(meter.device, mode=AcquisitionMode.POLL, gap=1.0)
    await source.async_start(recorder)
    try:
        silent_from = time.monotonic()
        meter.silent = True
        down = await recorder.wait_for(LinkDown)
        assert time.monotonic() - silent_from < UNPLUG_BOUND
        assert "*NVU" in down.reason or "*GMD" in down.reason
    finally:
        await source.async_stop()


async def test_ser2net_going_away_and_coming_back(
    socket_enabled: None, recorder: EventRecorder
) -> None:
    """Over socket://: the TCP side closing is a loss at once; listening again brings it back."""
    emulator = MaestroEmulator(pty=False, tcp=True, pulses=False)
    async with emulator:
        source = GentecSource(emulator.url, backoff_min=0.05, backoff_max=0.2)
        await source.async_start(recorder)
        try:
            emulator.start_pulses(50.0)
            await _until(lambda: source.pulses >= 5)
            gone = time.monotonic()
            await emulator.unplug()
            await recorder.wait_for(LinkDown)
            assert time.monotonic() - gone < UNPLUG_BOUND
            await emulator.plug()  # the same port again
            await recorder.wait_for(LinkUp, count=2)
            before = source.pulses
            await _until(lambda: source.pulses > before + 5)
            emulator.stop_pulses()
        finally:
            await source.async_stop()


@pytest.mark.parametrize("rate", [10.0, 50.0])
async def test_streaming_gives_every_pulse_with_less_traffic_than_polling(
    tmp_path: Path, rate: float
) -> None:
    """The default, measured: streaming gets every pulse for fewer bytes than the seed's polling."""
    figures: dict[AcquisitionMode, tuple[int, int, int]] = {}
    for mode in (AcquisitionMode.STREAM, AcquisitionMode.POLL):
        emulator = MaestroEmulator(pulses=False, link=tmp_path / f"m-{mode}")
        async with emulator:
            source = GentecSource(
                emulator.device, mode=mode
            )  # polling: the 0.1 s default gap
            await source.async_start(lambda _event: None)
            try:
                start_bytes = emulator.bytes_in + emulator.bytes_out
                emulator.start_pulses(rate)
                wanted = int(rate * 2)
                produced_list = emulator.meter.produced
                await _until(lambda: len(produced_list) >= wanted)  # noqa: B023
                emulator.stop_pulses()
                produced = len(emulator.meter.produced)
                last = emulator.meter.produced[-1].value
                # The last poll or stream line: the source has taken the meter's last pulse.
                await _until(lambda: source._latest == last)  # noqa: B023
                traffic = emulator.bytes_in + emulator.bytes_out - start_bytes
                figures[mode] = (produced, source.pulses, traffic)
            finally:
                await source.async_stop()
    logging.getLogger(__name__).warning(
        "%.0f Hz, (produced, got, bytes): %s", rate, figures
    )
    produced, got, stream_bytes = figures[AcquisitionMode.STREAM]
    assert got == produced
    _produced, poll_got, poll_bytes = figures[AcquisitionMode.POLL]
    assert stream_bytes / got < poll_bytes / poll_got  # bytes per pulse delivered
    if rate > 10:
        assert (
            poll_got < _produced
        )  # faster than the gap: the meter keeps only the newest
