"""Scrutiny rows: frame decoding of a realistic stream, and what a connected entry costs while idle.

Decode: the 692 messages the real server sent in the captured session (mostly ``watchable_update``,
some statuses and responses) framed as the server frames them, repeated to the requested size, go
through ``FrameDecoder.feed`` in 64 KiB chunks and every frame through ``decode_frame`` (MD5 check,
zlib, JSON). No Home Assistant runs; the figure is CPU µs per frame.

End to end: an entry set up as a user's (three watched variables) against a server in a separate
process (``benchmarks.scrutiny_pusher``) that, on each round, sends N ``watchable_update`` frames as
fast as the socket takes them; the figure is this process's CPU from the round's request to the
state write of its last value, divided by N (framing, MD5, zlib, JSON, the source's and the hub's
queues, the entities, Home Assistant's state machine).

Idle: an entry set up as a user's is, against the scripted server of the tests (in this process,
silent once the entry has subscribed). Over a quiet window the row counts the event loop's wake-ups
(``select`` returning) and the timers the integration's own code runs, with and without the entry,
and reports the CPU per idle second. The SDK's client wakes up about 195 times a second for nothing
(a 5 ms ``select`` poll); the integration schedules no timer while nothing changes but the
30 s silence check, so its count is 0 per second.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
from pathlib import Path
import statistics
import sys
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .harness import (
    REPO_ROOT,
    WARMUP_ROUNDS,
    HelperProcess,
    StateWrites,
    bench_hass,
    cpu_ns,
    push_rounds,
    round_count,
    settle,
    wait_for_states,
)
from .probes import CallbackTimer, CountingSink, FloodTally, idle_window
from .rows import BenchError, Measurement, Settings, row

CAPTURE: Final = (
    Path(__file__).parent.parent
    / "tests"
    / "fixtures"
    / "scrutiny"
    / "raw_messages.jsonl"
)
CHUNK_BYTES: Final = 64 * 1024
IDLE_SECONDS: Final = 3.0
QUICK_IDLE_SECONDS: Final = 1.0


def _captured() -> list[dict[str, Any]]:
    return [
        record["msg"]
        for record in map(json.loads, CAPTURE.read_text().splitlines())
        if record["dir"] == "S2C"
    ]


@row(
    "scrutiny-decode",
    "scrutiny: frame decode (MD5 + zlib + JSON, captured mix)",
    source="scrutiny",
)
async def scrutiny_decode(settings: Settings) -> Measurement:
    """CPU per frame of FrameDecoder.feed (64 KiB chunks) followed by decode_frame."""
    from custom_components.instrument_hub.sources.scrutiny.protocol import (  # noqa: PLC0415
        FrameDecoder,
        decode_frame,
        encode_message,
    )

    messages = _captured()
    frames = [encode_message(message) for message in messages]
    count = max(settings.events, len(frames))
    data = b"".join(frames[index % len(frames)] for index in range(count))
    chunks = [
        data[offset : offset + CHUNK_BYTES]
        for offset in range(0, len(data), CHUNK_BYTES)
    ]
    samples: list[float] = []
    for repeat in range(-1, settings.repeats):
        decoder = FrameDecoder()
        begin = cpu_ns()
        decoded = 0
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                decode_frame(frame)
                decoded += 1
        end = cpu_ns()
        if decoded != count or decoder.malformed:
            raise BenchError(
                f"{decoded} of {count} frames decoded, {decoder.malformed} malformed"
            )
        if repeat >= 0:
            samples.append((end - begin) / count / 1000)
    per_frame_s = statistics.median(samples) / 1e6
    return Measurement(
        samples,
        [
            f"{1 / per_frame_s / 1000:.0f}k frames/s",
            f"{len(data) / count / per_frame_s / 1e6:.1f} MB/s on the wire",
            f"{count} frames, {len(data) / 1e6:.1f} MB",
        ],
    )


@row(
    "scrutiny-idle",
    "scrutiny: connected entry, idle (CPU µs per second)",
    source="scrutiny",
)
async def scrutiny_idle(settings: Settings) -> Measurement:
    """Wake-ups and CPU of Home Assistant with an idle, connected Scrutiny entry vs without it."""
    from tests.fake_scrutiny import FakeScrutinyServer  # noqa: PLC0415

    seconds = QUICK_IDLE_SECONDS if settings.quick else IDLE_SECONDS
    samples: list[float] = []
    notes: list[str] = []
    async with bench_hass() as hass:
        baseline = await idle_window(seconds)
        server = FakeScrutinyServer()
        await server.start()
        try:
            entry = MockConfigEntry(
                domain="instrument_hub",
                title="Scrutiny bench",
                unique_id=f"scrutiny:127.0.0.1:{server.port}",
                data={
                    "source_kind": "scrutiny",
                    CONF_HOST: "127.0.0.1",
                    CONF_PORT: server.port,
                },
                options={
                    "watchables": ["/Sine Wave", "/rpv/x2000"],
                    "update_rate": 5.0,
                },
            )
            entry.add_to_hass(hass)
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError("the Scrutiny entry did not load")
            await settle(hass)
            await entry.runtime_data.async_flush()
            for _ in range(settings.repeats):
                figures = await idle_window(seconds)
                samples.append(figures.cpu_us)
                notes = [
                    f"loop wake-ups {figures.wakeups:.1f}/s "
                    f"(without the entry {baseline.wakeups:.1f}/s)",
                    f"integration timers {figures.own_timers:.2f}/s",
                    f"CPU without the entry {baseline.cpu_us:.0f} µs/s",
                ]
            await hass.config_entries.async_unload(entry.entry_id)
        finally:
            await server.close()
    return Measurement(samples, notes)


PUSHER_MODULE: Final = "benchmarks.scrutiny_pusher"
STARTUP_TIMEOUT: Final = 30.0


async def _entity_ids(
    hass: HomeAssistant, unique_ids: list[str], timeout: float
) -> list[str]:
    """Wait until every unique id has a registered sensor; return their entity ids."""
    registry = er.async_get(hass)
    done = asyncio.Event()

    def found() -> list[str] | None:
        ids = [
            registry.async_get_entity_id("sensor", "instrument_hub", uid)
            for uid in unique_ids
        ]
        return None if None in ids else [entity_id for entity_id in ids if entity_id]

    @callback  # on the loop (a plain function would run in the executor)
    def changed(_event: Event[EventStateChangedData]) -> None:
        if found():
            done.set()

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, changed)
    try:
        async with asyncio.timeout(timeout):
            while (ids := found()) is None:
                done.clear()
                await done.wait()
    except TimeoutError as err:
        raise BenchError(f"no sensors {unique_ids} after {timeout:.0f} s") from err
    finally:
        unsubscribe()
    return ids


@row(
    "scrutiny-e2e", "scrutiny: socket -> state (3 watched variables)", source="scrutiny"
)
async def scrutiny_end_to_end(settings: Settings) -> Measurement:
    """CPU per pushed watchable_update, from the round's request to its last value's state write."""
    from .scrutiny_pusher import WATCHED, final_path, round_marker  # noqa: PLC0415

    rounds = round_count(settings)
    events = settings.events
    pusher = await HelperProcess.start(
        PUSHER_MODULE, "--events", str(events), "--rounds", str(rounds)
    )
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
        if len(words) != 2 or words[0] != "port":
            raise BenchError(
                f"unexpected first line from the pusher: {' '.join(words)!r}"
            )
        port = int(words[1])
        async with bench_hass() as hass:
            entry = MockConfigEntry(
                domain="instrument_hub",
                title=f"Scrutiny server 127.0.0.1:{port}",
                unique_id=f"scrutiny:127.0.0.1:{port}",
                data={
                    "source_kind": "scrutiny",
                    CONF_HOST: "127.0.0.1",
                    CONF_PORT: port,
                },
                options={"watchables": list(WATCHED), "update_rate": 100.0},
            )
            entry.add_to_hass(hass)
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError(f"the Scrutiny entry did not load ({entry.state})")
            unique_ids = [f"{entry.entry_id}:target:w.{path}" for path in WATCHED]
            entity_ids = await _entity_ids(hass, unique_ids, STARTUP_TIMEOUT)
            await wait_for_states(hass, entity_ids, STARTUP_TIMEOUT)
            last = entity_ids[WATCHED.index(final_path(events))]
            writes = StateWrites(hass, entity_ids)
            try:
                measured = await push_rounds(
                    hass,
                    pusher,
                    writes,
                    last,
                    round_marker,
                    rounds=rounds,
                    warmup=WARMUP_ROUNDS,
                    events=events,
                    timeout=30.0 + events / 1000,
                )
            finally:
                writes.close()
    finally:
        await pusher.stop()
    sent = events * settings.repeats
    total = sum(measured.written)
    notes = [f"states {total}/{sent}"]
    if total < sent:
        notes.append(f"{sent - total} ({(sent - total) / sent:.1%}) coalesced")
    notes.append(f"{statistics.median(measured.rates) / 1000:.0f}k ev/s wall")
    return Measurement(measured.samples, notes)


@row(
    "scrutiny-source",
    "scrutiny: socket -> source events (no-op sink, 3 watched variables)",
    source="scrutiny",
)
async def scrutiny_source_only(settings: Settings) -> Measurement:
    """CPU per pushed update, from the round's request to the source emitting its last value."""
    from custom_components.instrument_hub.sources.scrutiny import (  # noqa: PLC0415
        ScrutinySource,
    )

    from .scrutiny_pusher import WATCHED, round_marker  # noqa: PLC0415

    rounds = round_count(settings)
    events = settings.events
    pusher = await HelperProcess.start(
        PUSHER_MODULE, "--events", str(events), "--rounds", str(rounds)
    )
    samples: list[float] = []
    emitted: list[int] = []
    sink = CountingSink()
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
        if len(words) != 2 or words[0] != "port":
            raise BenchError(f"unexpected first line from the pusher: {words!r}")
        source = ScrutinySource(
            "127.0.0.1", int(words[1]), watched=WATCHED, update_rate=100.0
        )
        await source.async_start(sink)
        try:
            for round_index in range(rounds):
                gc.collect()
                sink.arm(functools.partial(_is_value, marker=round_marker(round_index)))
                begin = cpu_ns()
                await pusher.send(f"go {round_index}")
                end = await sink.wait(30.0 + events / 1000)
                answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                if answer[:2] != ["sent", str(round_index)]:
                    raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                if round_index >= WARMUP_ROUNDS:
                    samples.append((end - begin) / events / 1000)
                    emitted.append(sink.readings)
        finally:
            await source.async_stop()
    except TimeoutError as err:
        raise BenchError("the round's last value was never emitted") from err
    finally:
        await pusher.stop()
    return Measurement(
        samples,
        [
            f"readings {sum(emitted)}/{events * settings.repeats}",
            "integration's own share of scrutiny-e2e",
        ],
    )


def _is_value(event: Any, marker: float) -> bool:
    return bool(event.value == marker)


SDK_SCRIPT: Final = Path(__file__).parent / "scrutiny_sdk_decode.py"
PEERS_PYTHON: Final = REPO_ROOT / ".venv-peers" / "bin" / "python"


def _peers_site_packages() -> Path:
    found = sorted((REPO_ROOT / ".venv-peers" / "lib").glob("python3*/site-packages"))
    if not found:
        raise BenchError("no .venv-peers (run scripts/setup)")
    return found[0]


async def _sdk_script(python: Path, settings: Settings, *extra: str) -> dict[str, Any]:
    """Run the SDK decode script on an interpreter; return its JSON line."""
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(SDK_SCRIPT),
        "--events",
        str(max(settings.events, 2000)),
        "--repeats",
        str(settings.repeats),
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(300):
            out, err = await process.communicate()
    except TimeoutError as error:
        process.kill()
        await process.wait()
        raise BenchError("the SDK decode script did not finish in 300 s") from error
    if process.returncode != 0:
        raise BenchError(f"the SDK decode script failed: {err.decode()[-300:]}")
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


@row(
    "scrutiny-sdk-311",
    "scrutinydebugger 0.16 SDK: frame decode (StreamParser + json.loads), Python 3.11",
    source="scrutiny",
)
async def scrutiny_sdk_decode_311(settings: Settings) -> Measurement:
    """CPU per frame of the SDK's own decoding, on .venv-peers' Python (the SDK needs < 3.14)."""
    if not PEERS_PYTHON.exists():
        raise BenchError("no .venv-peers (run scripts/setup)")
    result = await _sdk_script(PEERS_PYTHON, settings)
    return Measurement(
        result["sdk"],
        [
            f"Python {result['python']} (.venv-peers), 4 KiB reads (the SDK's), "
            f"{result['frames']} frames",
            f"ours: {result.get('ours_error', 'measured')}",
        ],
    )


@row(
    "scrutiny-sdk-314",
    "scrutinydebugger 0.16 SDK: frame decode, Python 3.14 (ours beside it in the notes)",
    source="scrutiny",
)
async def scrutiny_sdk_decode_314(settings: Settings) -> Measurement:
    """CPU per frame of the SDK's decoding on our interpreter, ours on the same stream beside it."""
    result = await _sdk_script(
        Path(sys.executable), settings, "--sdk-path", str(_peers_site_packages())
    )
    ours = statistics.median(result["ours"])
    sdk = statistics.median(result["sdk"])
    return Measurement(
        result["sdk"],
        [
            f"Python {result['python']}, 4 KiB reads, {result['frames']} frames",
            f"ours on the same stream {ours:.2f} µs ({sdk / ours:.1f}x faster)",
        ],
    )


@row(
    "scrutiny-lag",
    "scrutiny: longest callback of ours under floods (µs; bound 20 ms)",
    source="scrutiny",
)
async def scrutiny_loop_lag(settings: Settings) -> Measurement:
    """Measure the longest event-loop callback of ours while the server floods the source."""
    from custom_components.instrument_hub.sources.scrutiny import (  # noqa: PLC0415
        ScrutinySource,
    )

    from .scrutiny_pusher import FLOODS, WATCHED  # noqa: PLC0415

    counts = {"burst": 20000, "garbage": 500, "oversized": 200, "bomb": 2}
    pusher = await HelperProcess.start(PUSHER_MODULE, "--events", "10", "--rounds", "1")
    tally = FloodTally()
    sink = CountingSink()
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
        if len(words) != 2 or words[0] != "port":
            raise BenchError(f"unexpected first line from the pusher: {words!r}")
        source = ScrutinySource(
            "127.0.0.1", int(words[1]), watched=WATCHED, update_rate=100.0
        )
        await source.async_start(sink)
        try:
            for repeat in range(settings.repeats):
                for index, kind in enumerate(FLOODS):
                    marker = 3_000_000.0 + repeat * 100 + index
                    sink.arm(functools.partial(_is_value, marker=marker))
                    with CallbackTimer() as timer:
                        await pusher.send(f"flood {kind} {counts[kind]} {marker}")
                        await sink.wait(120.0)
                        await pusher.read_line(120.0)
                    tally.add(kind, timer)
                tally.end_repeat()
        finally:
            await source.async_stop()
    except TimeoutError as err:
        raise BenchError("the marker after a flood was never emitted") from err
    finally:
        await pusher.stop()
    return Measurement(tally.samples, [tally.per_kind(), tally.gc_note()])
