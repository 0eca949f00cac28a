"""Gentec-EO rows: bytes on the serial line -> exact statistics and paced states, and the parser alone.

End to end: an entry is set up as a user's is (``{"source_kind": "gentec", "device": <pty>}``)
against the Maestro emulator on a real pseudo-terminal, streaming (*CAU). Each round puts N stream
lines on the line at once (as a meter streaming far faster than its 200 Hz would) and ends when the
pulse-count sensor shows the round's N: every line framed, parsed, counted in the statistics, and
the paced state writes of the reading, statistics and pulse event done. The figure is this
process's CPU from the write to that state, divided by N; the emulator's one write of the burst is
in it (small). The notes give the readings per second sustained (wall) and the state writes done
for the N readings.

Loop lag: the source alone (no Home Assistant, events to a counting sink) on the emulator's pty,
flooded with each of ``FLOODS``; the figure is the longest event-loop callback of the integration's
code. Idle: the same source streaming with the laser off: wake-ups and CPU per second.

Parser: a seeded stream like a real session (stream values, some over-range, the replies of
identification and probes) through ``LineFramer.feed`` in 64-byte chunks (a USB full-speed packet)
and ``parse_line``; no Home Assistant runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import functools
from pathlib import Path
import random
import statistics
import tempfile
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .harness import (
    WARMUP_ROUNDS,
    StateWrites,
    bench_hass,
    cpu_ns,
    numeric_state_is,
    round_count,
    settle,
    wait_for_states,
    wall_ns,
)
from .probes import (
    CallbackTimer,
    CountingSink,
    FloodTally,
    idle_seconds,
    idle_window,
    idle_windows,
)
from .rows import BenchError, Measurement, Settings, row

COUNT_ENTITY: Final = "sensor.gentec_eo_maestro_pulse_count"
PAUSED_ENTITIES: Final = (
    "sensor.gentec_eo_maestro_reading",
    "sensor.gentec_eo_maestro_minimum",
    "sensor.gentec_eo_maestro_maximum",
    "sensor.gentec_eo_maestro_average",
    COUNT_ENTITY,
    "event.gentec_eo_maestro_pulse",
)
STARTUP_TIMEOUT: Final = 30.0
CHUNK_BYTES: Final = 64


def _stream_lines(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    for index in range(count):
        if index % 500 == 499:
            lines.append(b"3.40282e+038")
        else:
            lines.append(f"{abs(1e-3 * (1 + 0.05 * rng.gauss(0, 1))):.6e}".encode())
    return lines


def _session_stream(count: int) -> bytes:
    replies = [
        b"MAESTRO Version 1.00.18",
        b"Mode: 1",
        b"PWC: 1064",
        b"Trigger Level: 2.0",
        b"[22] : 100 m",
        b":0000C0428",
        b"New Data Not Available",
    ]
    lines = _stream_lines(count, 7)
    for index in range(0, count, 50):
        lines.insert(index, replies[(index // 50) % len(replies)])
    return b"".join(line + b"\r\n" for line in lines)


@row("gentec-e2e", "gentec: serial line -> statistics + paced states", source="gentec")
async def gentec_end_to_end(settings: Settings) -> Measurement:
    """CPU per stream line, from the burst's write to the pulse count showing it."""
    from simulators.gentec_maestro import MaestroEmulator  # noqa: PLC0415

    events = settings.events
    samples: list[float] = []
    rates: list[float] = []
    written: list[int] = []
    with tempfile.TemporaryDirectory(prefix="gentec-bench-") as folder:
        emulator = MaestroEmulator(pulses=False, link=Path(folder) / "maestro")
        async with bench_hass() as hass:
            await emulator.start()
            try:
                assert emulator.pty is not None
                emulator.pty.max_backlog = 1 << 30
                entry = MockConfigEntry(
                    domain="instrument_hub",
                    title="MAESTRO (bench)",
                    unique_id="gentec:bench",
                    data={
                        "source_kind": "gentec",
                        "device": emulator.device,
                        "model": "MAESTRO",
                    },
                )
                entry.add_to_hass(hass)
                if (
                    not await hass.config_entries.async_setup(entry.entry_id)
                    or entry.state is not ConfigEntryState.LOADED
                ):
                    raise BenchError(
                        f"the Gentec entry did not load ({entry.state}: {entry.reason})"
                    )
                await wait_for_states(hass, list(PAUSED_ENTITIES), STARTUP_TIMEOUT)
                writes = StateWrites(hass, list(PAUSED_ENTITIES))
                burst = b"".join(line + b"\r\n" for line in _stream_lines(events, 1))
                valid = sum(
                    1
                    for line in _stream_lines(events, 1)
                    if not line.startswith(b"3.4")
                )
                try:
                    counted = 0
                    for round_index in range(round_count(settings)):
                        await hass.services.async_call(
                            "button",
                            "press",
                            {"entity_id": "button.gentec_eo_maestro_reset_statistics"},
                            blocking=True,
                        )
                        counted = 0
                        await settle(hass)
                        writes.arm(COUNT_ENTITY, numeric_state_is(counted + valid))
                        begin_wall = wall_ns()
                        begin = cpu_ns()
                        emulator.inject(burst)
                        end = await writes.wait(30.0 + events / 1000)
                        if round_index < WARMUP_ROUNDS:
                            continue
                        samples.append((end - begin) / events / 1000)
                        rates.append(
                            events / ((writes.done_wall_ns - begin_wall) / 1e9)
                        )
                        written.append(writes.count)
                finally:
                    writes.close()
            finally:
                await emulator.stop()
    return Measurement(
        samples,
        [
            f"{statistics.median(rates) / 1000:.0f}k readings/s wall",
            f"{statistics.median(written)} state writes per {events} readings",
        ],
    )


@row("gentec-parse", "gentec: frame + parse (stream, 64 B reads)", source="gentec")
async def gentec_parser(settings: Settings) -> Measurement:
    """CPU per line of LineFramer.feed (64-byte chunks) and parse_line."""
    from custom_components.instrument_hub.sources.gentec.protocol import (  # noqa: PLC0415
        LineFramer,
        Unreadable,
        parse_line,
    )

    data = _session_stream(settings.events * 5)
    chunks = [
        data[offset : offset + CHUNK_BYTES]
        for offset in range(0, len(data), CHUNK_BYTES)
    ]
    expected = data.count(b"\r\n")
    samples: list[float] = []
    for repeat in range(-1, settings.repeats):
        framer = LineFramer()
        begin = cpu_ns()
        replies = [parse_line(line) for chunk in chunks for line in framer.feed(chunk)]
        end = cpu_ns()
        if len(replies) != expected or any(isinstance(r, Unreadable) for r in replies):
            raise BenchError(f"{len(replies)} lines of {expected}, some unreadable")
        if repeat >= 0:
            samples.append((end - begin) / expected / 1000)
    per_line_s = statistics.median(samples) / 1e6
    return Measurement(
        samples,
        [
            f"{1 / per_line_s / 1000:.0f}k lines/s",
            f"{len(data) / len(replies) / per_line_s / 1e6:.1f} MB/s",
        ],
    )


def _is_reading(event: Any, marker: float) -> bool:
    return bool(event.channel_key == "reading" and event.value == marker)


FLOODS: Final = ("burst", "garbage", "long_line", "blank")
"""The loop-lag row's inputs: 20,000 stream values at once (100 s of a 200 Hz laser), random bytes
with line ends, 1 MB without a line end, 1 MB of line ends."""


def _flood(kind: str) -> bytes:
    rng = random.Random(13)
    if kind == "burst":
        return b"".join(line + b"\r\n" for line in _stream_lines(20000, 3))
    if kind == "garbage":
        return b"".join(
            rng.randbytes(rng.randrange(1, 200)) + b"\r\n" for _ in range(5000)
        )
    if kind == "long_line":
        return b"7" * 1_000_000 + b"\r\n"
    if kind == "blank":
        return b"\r\n" * 500_000
    raise ValueError(kind)


@contextlib.asynccontextmanager
async def _source_on_emulator(sink: CountingSink) -> AsyncIterator[Any]:
    """Yield a streaming source alone on the emulator's pty (no Home Assistant)."""
    from custom_components.instrument_hub.sources.gentec.source import (  # noqa: PLC0415
        GentecSource,
    )
    from simulators.gentec_maestro import MaestroEmulator  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="gentec-bench-") as folder:
        emulator = MaestroEmulator(pulses=False, link=Path(folder) / "maestro")
        await emulator.start()
        try:
            assert emulator.pty is not None
            emulator.pty.max_backlog = 1 << 30
            source = GentecSource(emulator.device)
            await source.async_start(sink)
            try:
                yield emulator
            finally:
                await source.async_stop()
        finally:
            await emulator.stop()


@row(
    "gentec-lag",
    "gentec: longest callback of ours under floods (µs; bound 20 ms)",
    source="gentec",
)
async def gentec_loop_lag(settings: Settings) -> Measurement:
    """Measure the longest event-loop callback of ours while the line floods the source."""
    sink = CountingSink()
    tally = FloodTally()
    try:
        async with _source_on_emulator(sink) as emulator:
            await asyncio.sleep(0.2)
            for repeat in range(settings.repeats):
                for index, kind in enumerate(FLOODS):
                    marker = 500.0 + repeat * 10 + index
                    sink.arm(functools.partial(_is_reading, marker=marker))
                    with CallbackTimer() as timer:
                        emulator.inject(_flood(kind) + f"{marker:.6e}\r\n".encode())
                        await sink.wait(60.0)
                    tally.add(kind, timer)
                tally.end_repeat()
    except TimeoutError as err:
        raise BenchError("the value after a flood was never shown") from err
    return Measurement(tally.samples, [tally.per_kind()])


@row(
    "gentec-idle",
    "gentec: source idle, streaming, laser off (CPU µs per second)",
    source="gentec",
)
async def gentec_idle(settings: Settings) -> Measurement:
    """Wake-ups, our timers and CPU per second of a streaming source whose laser is off."""
    sink = CountingSink()
    baseline = await idle_window(idle_seconds(settings))
    async with _source_on_emulator(sink):
        await asyncio.sleep(1.0)
        return await idle_windows(
            settings,
            baseline,
            context="; the emulator runs in this loop too",
            notes=[
                "a *VER probe per 0.5 s of silence (a serial meter that is gone sends nothing)"
            ],
        )
