"""Shared helpers: a production-like Home Assistant, CPU clocks, state-write waits, helper processes.

Why it is built this way:

* Home Assistant comes from the test harness (``async_test_home_assistant``: real core, real
  registries, storage kept in memory) because that is the supported way to run one in-process. The
  harness's pytest plugin turns asyncio debug mode on for every test (``enable_event_loop_debug``);
  debug mode makes every callback slower, so the benchmark runs on Home Assistant's own production
  loop (``runner.create_event_loop(debug=False)``), forces debug off and checks it stayed off.
* Cost is CPU time of this process (``time.process_time_ns``: every thread, no idle time), not wall
  time: waiting for the socket or for another process costs nothing, and whatever runs in the
  executor is still counted. Helpers that generate load run as separate processes so their CPU
  stays out of the figure.
* Completion is observed, never slept on: a ``state_changed`` listener notes the CPU clock in the
  very callback that sees the expected state, and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
import functools
import gc
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Final

from homeassistant import loader, runner
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import (
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import frame, translation
from pytest_homeassistant_custom_component.common import (
    async_test_home_assistant,
    mock_storage,
)
import ulid_transform

from .rows import BenchError, Settings

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
HOMEASSISTANT_DOMAIN: Final = "homeassistant"

cpu_ns = time.process_time_ns
"""CPU time of the whole process (all threads), in ns."""
wall_ns = time.perf_counter_ns
"""Wall clock, in ns: only for throughput notes, never for the cost figures."""


WARMUP_ROUNDS: Final = 1
"""Rounds run and thrown away before the measured ones (the first setup, cold caches)."""


def round_count(settings: Settings, limit: int | None = None) -> int:
    """Return the warm-up plus the measured rounds; BenchError beyond what a traffic plan can mark."""
    rounds = WARMUP_ROUNDS + settings.repeats
    if limit is not None and rounds > limit:
        raise BenchError(f"at most {limit - WARMUP_ROUNDS} repeats")
    return rounds


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return an event loop configured like Home Assistant's in production (debug off)."""
    loop = runner.create_event_loop(debug=False)
    loop.set_debug(False)
    return loop


@contextlib.asynccontextmanager
async def bench_hass() -> AsyncIterator[HomeAssistant]:
    """Yield a running Home Assistant with custom integrations enabled and asyncio debug off.

    Config entries still loaded at the end are unloaded (as the test fixture does), then Home
    Assistant stops; the configuration folder is a temporary one and storage stays in memory.
    """
    loop = asyncio.get_running_loop()
    loop.set_debug(False)
    with (
        tempfile.TemporaryDirectory(prefix="instrument-hub-bench-") as config_dir,
        mock_storage(),
    ):
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            # What the enable_custom_integrations fixture does: load custom_components/.
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)
            frame.async_setup(hass)
            await translation.async_load_integrations(hass, {HOMEASSISTANT_DOMAIN})
            if loop.get_debug() or hass.config.debug:
                raise BenchError(
                    "asyncio debug mode is on: figures would not be production-like"
                )
            try:
                yield hass
            finally:
                loaded = [
                    entry.entry_id
                    for entry in hass.config_entries.async_entries()
                    if entry.state is ConfigEntryState.LOADED
                ]
                for entry_id in loaded:
                    await hass.config_entries.async_unload(entry_id)
                await hass.async_stop(force=True)
                _release_cached_hass()


def _release_cached_hass() -> None:
    """Empty Home Assistant's module-level one-slot caches, which still hold the stopped hass.

    Registries, the requirements manager and the translation cache are memoised per hass in
    ``lru_cache(maxsize=1)`` functions. The next hass replaces most of them while it starts, but
    not all (the requirements manager only when an integration loads: inside a timed window).
    Until then the stopped hass and everything it held stay reachable, and the next measurement's
    garbage collections pay for walking and freeing them: a setup measured right after a larger
    one cost ~10 % more. Cleared here, it is garbage before the next measurement's ``settle``.
    """
    for name, module in list(sys.modules.items()):
        if name != "homeassistant" and not name.startswith("homeassistant."):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper) and (  # noqa: SLF001
                value.cache_parameters()["maxsize"] == 1
            ):
                value.cache_clear()


async def settle(hass: HomeAssistant) -> None:
    """Let pending work finish and collect garbage, so a measurement starts from a quiet process."""
    await hass.async_block_till_done()
    gc.collect()


type StatePredicate = Callable[[State], bool]


class StateWrites:
    """Counts ``state_changed`` events of some entities; notes the CPU clock when the target states land.

    ``arm`` sets the entities and predicates that end a measurement (all of them must have been
    seen: a Thing's streams are separate connections, and one may lag the other); ``wait`` returns
    the CPU time (ns) noted in the callback that saw the last of them, or raises BenchError after
    the timeout. A target need not be among the counted entities.
    """

    def __init__(self, hass: HomeAssistant, entity_ids: Sequence[str]) -> None:
        """Listen for the state writes of ``entity_ids`` until ``close``."""
        self._entity_ids = frozenset(entity_ids)
        self._done = asyncio.Event()
        self._targets: dict[str, StatePredicate] = {}
        self.count = 0
        self.done_cpu_ns = 0
        self.done_wall_ns = 0
        self._unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, self._changed)

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        if entity_id in self._entity_ids:
            self.count += 1
        predicate = self._targets.get(entity_id)
        new_state = event.data["new_state"]
        if predicate is not None and new_state is not None and predicate(new_state):
            del self._targets[entity_id]
            if not self._targets:
                self.done_cpu_ns = cpu_ns()
                self.done_wall_ns = wall_ns()
                self._done.set()

    def arm(
        self,
        entity_id: str,
        predicate: StatePredicate,
        *more: tuple[str, StatePredicate],
    ) -> None:
        """Reset the counter and wait until each entity got a state that satisfies its predicate."""
        self.count = 0
        self._done.clear()
        self._targets = {entity_id: predicate, **dict(more)}

    async def wait(self, timeout: float) -> int:
        """Return the CPU clock (ns) at the last expected write; BenchError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError as err:
            raise BenchError(
                f"the expected states of {', '.join(self._targets)} were not written within "
                f"{timeout:.0f} s ({self.count} writes seen)"
            ) from err
        return self.done_cpu_ns

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()


def numeric_state_is(expected: float) -> StatePredicate:
    """Predicate: the state is a number equal to ``expected`` (to 1e-9)."""

    def matches(state: State) -> bool:
        try:
            return abs(float(state.state) - expected) < 1e-9
        except ValueError:
            return False

    return matches


async def wait_for_states(
    hass: HomeAssistant, entity_ids: Sequence[str], timeout: float
) -> None:
    """Wait until every entity has a state (re-checked on each state change); BenchError otherwise."""
    done = asyncio.Event()

    def complete() -> bool:
        return all(hass.states.get(entity_id) is not None for entity_id in entity_ids)

    @callback
    def changed(_event: Event[EventStateChangedData]) -> None:
        if complete():
            done.set()

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, changed)
    try:
        if not complete():
            async with asyncio.timeout(timeout):
                await done.wait()
    except TimeoutError as err:
        missing = [e for e in entity_ids if hass.states.get(e) is None]
        present = sorted(hass.states.async_entity_ids())
        raise BenchError(
            f"no state for {', '.join(missing)} after {timeout:.0f} s; states present: {present}"
        ) from err
    finally:
        unsubscribe()


class HelperProcess:
    """A load generator run as ``python -m <module>``: line commands on stdin, line answers on stdout.

    Its CPU is not this process's, so it stays out of every figure. It is stopped by its PID
    (terminate, then kill after a grace period) however the benchmark ends.
    """

    def __init__(self, process: asyncio.subprocess.Process, module: str) -> None:
        """Wrap a started process (use ``start``)."""
        self.process = process
        self.module = module

    @classmethod
    async def start(cls, module: str, *args: str) -> HelperProcess:
        """Start ``python -m module args`` with the repository as working folder."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process, module)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    async def send(self, line: str) -> None:
        """Write one command line."""
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            raise BenchError(f"{self.module} (pid {self.pid}) no longer takes commands")
        stdin.write(line.encode() + b"\n")
        await stdin.drain()

    async def read_line(self, timeout: float) -> str:
        """Read one answer line; BenchError on timeout or when the process ended."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await stdout.readline()
        except TimeoutError as err:
            raise BenchError(
                f"{self.module} (pid {self.pid}) did not answer within {timeout:.0f} s"
            ) from err
        if not line:
            raise BenchError(
                f"{self.module} (pid {self.pid}) ended (exit code {self.process.returncode})"
            )
        return line.decode().strip()

    async def stop(self, grace: float = 5.0) -> None:
        """Terminate the process by its PID; kill it if it is still there after ``grace`` seconds."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


@dataclass(slots=True)
class PushedRounds:
    """Per measured round of ``push_rounds``: CPU µs per event, states written, events per second."""

    samples: list[float] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)


async def push_rounds(
    hass: HomeAssistant,
    pusher: HelperProcess,
    writes: StateWrites,
    entity_id: str,
    marker: Callable[[int], float],
    *,
    rounds: int,
    warmup: int,
    events: int,
    timeout: float,
) -> PushedRounds:
    """Run ``rounds`` rounds of ``events`` pushed events, the first ``warmup`` not measured.

    Each round settles ``hass``, sends ``go <round>`` to the pusher and ends at the state write of
    ``entity_id`` that shows ``marker(round)`` (the round's last event); the pusher must then answer
    ``sent <round> <n>`` with n > 0. The cost is this process's CPU from the request to that write.
    """
    measured = PushedRounds()
    for round_index in range(rounds):
        await settle(hass)
        writes.arm(entity_id, numeric_state_is(marker(round_index)))
        begin_wall = wall_ns()
        begin = cpu_ns()
        await pusher.send(f"go {round_index}")
        end = await writes.wait(timeout)
        answer = (await pusher.read_line(timeout)).split()
        if answer[:2] != ["sent", str(round_index)] or answer[2:] == ["0"]:
            raise BenchError(f"the pusher answered {' '.join(answer)!r}")
        if round_index < warmup:
            continue
        measured.samples.append((end - begin) / events / 1000)
        measured.written.append(writes.count)
        measured.rates.append(events / ((writes.done_wall_ns - begin_wall) / 1e9))
    return measured


def environment_notes() -> list[str]:
    """Return what about this environment moves the floor away from a production install."""
    notes: list[str] = []
    if ulid_transform.ulid_now.__module__.endswith("_py_ulid_impl"):
        # Every state write creates a Context, whose id is a ULID: about 3 µs in pure Python.
        notes.append(
            "ulid_transform runs its pure-Python fallback (no compiled extension): every state "
            "write pays ~3 µs more than in a production install, so the floor is higher and the "
            "ratios lower than there"
        )
    return notes


def median_min_max(samples: Sequence[float]) -> tuple[float, float, float]:
    """Return the median, minimum and maximum of the samples."""
    return statistics.median(samples), min(samples), max(samples)


_ROW_MEDIANS: dict[str, float] = {}
"""Median µs per event of the rows that other rows compare with (filled as they run)."""


def remember_median(row_name: str, samples: Sequence[float]) -> None:
    """Keep ``row_name``'s median for a later row's :func:`compared_note`."""
    _ROW_MEDIANS[row_name] = statistics.median(samples)


def remembered_median(row_name: str) -> float | None:
    """Return the median ``row_name`` kept with :func:`remember_median` (None: it did not run)."""
    return _ROW_MEDIANS.get(row_name)


def compared_note(row_name: str, samples: Sequence[float]) -> list[str]:
    """Return the note of what ``row_name`` costs against these samples (none if it did not run)."""
    if (median := remembered_median(row_name)) is None:
        return []
    return [f"{row_name} ×{median / statistics.median(samples):.2f} of this"]
