"""INDI under hostile or heavy input: the longest loop callback while a flood arrives, and a large BLOB.

The INDI source (no Home Assistant: what is measured is the source's own reading and parsing) connects
to a server in a separate process (``benchmarks.indi_flood_server``) that sends, with one ``sendall``
as fast as the socket takes it, one of the floods a client must survive: a million tiny unknown
elements, 8 MiB of ``<``, 200 000 tiny readings, 100 000 malformed elements (each an XML error, so a
fresh parser each time), or a BLOB of 64 MiB (the options allow 1 024 MiB). A marker element ends
every flood; the figure is the CPU per element (per MiB for the BLOB) until the source emitted it.

Loop measures, taken while the flood is read: the longest single callback the loop ran (every
``asyncio.Handle`` is timed: the socket reads, the parsing, the BLOB jobs' completions), as CPU time of
the loop's thread (what the callback itself cost) and as wall time (which adds the GIL held by another
thread and the machine's other processes), and the longest lag of a 1 ms ticker. The target is 20 ms. For the BLOB, also the peak memory: Python's traced allocations during a separate
pass under tracemalloc (the timed pass runs without it), and the growth of the process's RSS sampled
by the ticker, both against the file's size (the target: at most twice it); the file is moved into
the store the way the hub saves it (``blob_store.save_spooled_file``) and checked byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import statistics
import tempfile
import time
import tracemalloc
from typing import Any, Final

from .harness import HelperProcess, cpu_ns
from .rows import BenchError, Measurement, RowFunction, Settings, row

SERVER_MODULE: Final = "benchmarks.indi_flood_server"
STARTUP_TIMEOUT: Final = 60.0
FLOOD_TIMEOUT: Final = 300.0
TICK: Final = 0.001
MIB: Final = 1024 * 1024
TARGET_MS: Final = 20.0
END_TEXT: Final = "end of flood"


@dataclass(frozen=True, slots=True)
class Flood:
    """One flood row: the payload, its size (full and --quick), what one unit of the figure is."""

    key: str
    title: str
    payload: str
    count: int
    quick_count: int
    unit: str
    units_per_count: float


FLOODS: Final = (
    Flood(
        "indi-flood-unknown",
        "indi: 1 M tiny unknown elements (longest callback)",
        "unknown",
        1_000_000,
        100_000,
        "element",
        1.0,
    ),
    Flood(
        "indi-flood-garbage",
        "indi: 8 MiB of '<' (longest callback)",
        "garbage",
        8 * MIB,
        MIB,
        "KiB",
        1 / 1024,
    ),
    Flood(
        "indi-flood-tiny",
        "indi: 200 k tiny readings (longest callback)",
        "tiny",
        200_000,
        20_000,
        "element",
        1.0,
    ),
    Flood(
        "indi-flood-malformed",
        "indi: 100 k malformed elements (longest callback)",
        "malformed",
        100_000,
        10_000,
        "element",
        1.0,
    ),
)
BLOB_BYTES: Final = 64 * MIB
"""At the default --events (2000); the size scales with --events, up to the options' cap of 1 024 MiB."""
DEFAULT_EVENTS: Final = 2000
MAX_BLOB_BYTES: Final = 1024 * MIB
QUICK_BLOB_BYTES: Final = 8 * MIB


class _LoopProbe:
    """Times every callback the loop runs and the lag of a 1 ms ticker; samples RSS on each tick."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_what = ""
        self.longest_wall = 0.0
        self.lag = 0.0
        self.rss_peak = 0
        self._ticker: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        handle_run = asyncio.events.Handle._run  # noqa: SLF001
        probe = self

        def timed(handle: Any) -> None:
            callback = handle._callback  # noqa: SLF001  # (a one-shot handle forgets it once run)
            begin = time.thread_time()
            begin_wall = time.perf_counter()
            handle_run(handle)
            took = time.thread_time() - begin
            probe.longest_wall = max(
                probe.longest_wall, time.perf_counter() - begin_wall
            )
            if took > probe.longest:
                probe.longest = took
                probe.longest_what = _describe(callback)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]  # noqa: SLF001
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            yield
        finally:
            asyncio.events.Handle._run = handle_run  # type: ignore[method-assign]  # noqa: SLF001
            self._ticker.cancel()

    async def stop(self) -> None:
        if self._ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.lag = max(self.lag, loop.time() - due)
            self.rss_peak = max(self.rss_peak, _rss())


class _Worst:
    """The worst of the measured repeats' probes: longest callback (CPU and wall) and loop lag."""

    def __init__(self) -> None:
        self.longest: list[float] = []
        self.walls: list[float] = []
        self.lags: list[float] = []
        self.what = ""

    def add(self, probe: _LoopProbe) -> None:
        """Take one repeat's probe (ms)."""
        self.longest.append(probe.longest * 1000)
        self.walls.append(probe.longest_wall * 1000)
        self.lags.append(probe.lag * 1000)
        if probe.longest * 1000 >= max(self.longest):
            self.what = probe.longest_what

    def notes(self) -> list[str]:
        """Return the longest callback and the loop lag, as the rows print them."""
        return [
            f"longest callback {max(self.longest):.1f} ms CPU ({self.what}; target "
            f"{TARGET_MS:.0f}), {max(self.walls):.1f} ms wall",
            f"max loop lag {max(self.lags):.1f} ms",
        ]


def _describe(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_name()}"
    return getattr(callback, "__qualname__", repr(callback))


def _rss() -> int:
    with Path("/proc/self/statm").open(encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Sink:
    """Counts events; wakes whoever waits for the marker (or the BLOB's reading) to arrive."""

    def __init__(self, done: Callable[[object], bool]) -> None:
        self.count = 0
        self.last: object = None
        self._done = done
        self.arrived = asyncio.Event()

    def __call__(self, event: object) -> None:
        self.count += 1
        if self._done(event):
            self.last = event
            self.arrived.set()


async def _server(payload: str, count: int) -> tuple[HelperProcess, int]:
    server = await HelperProcess.start(
        SERVER_MODULE, "--payload", payload, "--count", str(count)
    )
    try:
        words = (await server.read_line(STARTUP_TIMEOUT)).split()
    except BaseException:
        await server.stop()
        raise
    if len(words) != 2 or words[0] != "port" or not words[1].isdigit():
        await server.stop()
        raise BenchError(f"unexpected first line from the server: {' '.join(words)!r}")
    return server, int(words[1])


def _is_end(event: object) -> bool:
    from custom_components.instrument_hub.events import Message  # noqa: PLC0415

    return isinstance(event, Message) and event.text == END_TEXT


def _flood_row(flood: Flood) -> RowFunction:
    async def measure(settings: Settings) -> Measurement:
        from custom_components.instrument_hub.sources.indi import (  # noqa: PLC0415
            IndiSource,
        )

        count = flood.quick_count if settings.quick else flood.count
        server, port = await _server(flood.payload, count)
        samples: list[float] = []
        worst = _Worst()
        try:
            sink = _Sink(_is_end)
            source = IndiSource("127.0.0.1", port, enable_blobs=False)
            await source.async_start(sink)
            try:
                await _wait_connected(source)
                for repeat in range(-1, settings.repeats):
                    sink.arrived.clear()
                    probe = _LoopProbe()
                    with probe.measuring():
                        begin = cpu_ns()
                        await server.send("go")
                        async with asyncio.timeout(FLOOD_TIMEOUT):
                            await sink.arrived.wait()
                        end = cpu_ns()
                    await probe.stop()
                    answer = (await server.read_line(STARTUP_TIMEOUT)).split()
                    if answer[:1] != ["sent"] or answer[1:2] == ["0"]:
                        raise BenchError(f"the server answered {' '.join(answer)!r}")
                    if repeat < 0:
                        continue
                    samples.append(
                        (end - begin) / 1000 / (count * flood.units_per_count)
                    )
                    worst.add(probe)
                diagnostics = source.diagnostics()["connection"]
            finally:
                await source.async_stop()
        finally:
            await server.stop()
        return Measurement(
            samples,
            [
                f"per {flood.unit}",
                *worst.notes(),
                f"malformed {diagnostics['malformed']}, skipped {diagnostics['skipped_bytes']} B",
            ],
        )

    return measure


async def _wait_connected(source: Any) -> None:
    async with asyncio.timeout(STARTUP_TIMEOUT):
        while not source.diagnostics()["connection"]["link_up"]:
            await asyncio.sleep(
                0.01
            )  # the source has no public "link up" wait; polling is bounded


for _flood in FLOODS:
    row(_flood.key, _flood.title, source="indi")(_flood_row(_flood))


@row("indi-blob", "indi: large BLOB -> file (per MiB)", source="indi")
async def indi_blob(settings: Settings) -> Measurement:
    """Stream a large BLOB to a spool file and move it into the store; time, memory, loop.

    64 MiB by default; ``--events 32000`` makes it the largest the options allow (1 024 MiB).
    """
    from custom_components.instrument_hub.blob_store import (  # noqa: PLC0415
        save_spooled_file,
        spool_folder,
    )
    from custom_components.instrument_hub.events import (  # noqa: PLC0415
        BlobData,
        Reading,
    )
    from custom_components.instrument_hub.sources.indi import (  # noqa: PLC0415
        IndiSource,
    )

    size = (
        QUICK_BLOB_BYTES
        if settings.quick
        else min(MAX_BLOB_BYTES, BLOB_BYTES * settings.events // DEFAULT_EVENTS)
    )

    def is_blob(event: object) -> bool:
        return isinstance(event, Reading) and isinstance(event.value, BlobData)

    server, port = await _server("blob", size)
    samples: list[float] = []
    worst = _Worst()
    walls: list[float] = []
    rss_growth: list[int] = []
    traced_peak = 0
    loop = asyncio.get_running_loop()
    try:
        with tempfile.TemporaryDirectory(prefix="instrument-hub-bench-") as folder:
            base = Path(folder)
            sink = _Sink(is_blob)
            source = IndiSource(
                "127.0.0.1",
                port,
                max_blob_bytes=1024 * MIB,
                spool_folder=spool_folder(base),
            )
            await source.async_start(sink)
            try:
                await _wait_connected(source)
                # The warm-up, then the repeats, then one more pass under tracemalloc for memory.
                for repeat in range(-1, settings.repeats + 1):
                    traced = repeat == settings.repeats
                    sink.arrived.clear()
                    probe = _LoopProbe()
                    rss_before = _rss()
                    if traced:
                        tracemalloc.start()
                    with probe.measuring():
                        begin = cpu_ns()
                        begin_wall = time.perf_counter()
                        await server.send("go")
                        async with asyncio.timeout(FLOOD_TIMEOUT):
                            await sink.arrived.wait()
                        reading = sink.last
                        assert isinstance(reading, Reading)
                        blob = reading.value
                        assert isinstance(blob, BlobData) and blob.spooled is not None
                        saved = await loop.run_in_executor(
                            None,
                            lambda blob=blob: save_spooled_file(  # type: ignore[misc]
                                base,
                                ("entry", "Flood", "CCD1.CCD1"),
                                blob.format,
                                blob.spooled,
                                keep=1,
                                received=_now(),
                            ),
                        )
                        end = cpu_ns()
                        wall = time.perf_counter() - begin_wall
                    if traced:
                        _, traced_peak = tracemalloc.get_traced_memory()
                        tracemalloc.stop()
                    await probe.stop()
                    answer = (await server.read_line(STARTUP_TIMEOUT)).split()
                    if (
                        answer[:1] != ["sent"]
                        or answer[1:2] == ["0"]
                        or len(answer) != 3
                    ):
                        raise BenchError(f"the server answered {' '.join(answer)!r}")
                    digest = await loop.run_in_executor(None, _digest, Path(saved))
                    if blob.size != size or digest != answer[2]:
                        raise BenchError(
                            f"saved {blob.size} bytes of {size}, not the BLOB sent"
                        )
                    await loop.run_in_executor(None, Path(saved).unlink)
                    if not traced:
                        # The warm-up's growth counts too: it is the first large file of the process.
                        rss_growth.append(probe.rss_peak - rss_before)
                    if repeat < 0 or traced:
                        continue
                    samples.append((end - begin) / 1000 / (size / MIB))
                    walls.append(wall)
                    worst.add(probe)
            finally:
                await source.async_stop()
    finally:
        await server.stop()
    return Measurement(
        samples,
        [
            f"{size // MIB} MiB in {statistics.median(walls):.2f} s wall",
            *worst.notes(),
            f"peak traced memory {traced_peak / MIB:.1f} MiB = {traced_peak / size:.2f}× the file",
            f"RSS growth {max(rss_growth) / MIB:.0f} MiB = {max(rss_growth) / size:.2f}×",
            "saved file checked against the BLOB sent (sha256)",
        ],
    )


def _now() -> Any:
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.now(UTC)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(MIB):
            digest.update(piece)
    return digest.hexdigest()
