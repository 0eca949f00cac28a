"""Event-loop probes for the source rows: the longest callback of our code, and idle wake-ups.

* :class:`CallbackTimer` times every callback the loop runs (``asyncio.Handle._run``: socket reads,
  task steps, timers) and keeps the longest one per owner. A callback is the integration's when the
  code it runs is: a task whose coroutine lives in ``custom_components.instrument_hub``, a transport
  read whose protocol does, or a plain function or method of it. Peers in the same process (an
  emulator, a test server) are timed too but kept apart, so the figure is ours alone. This is the
  issue's "no single event-loop callback of ours over 20 ms" seen from the loop itself. A garbage
  collection runs inside whatever callback happens to allocate when it is due; its pause is the
  interpreter's, not that callback's, so it is taken out of the callback and reported apart. Times
  are the thread's CPU time: on a shared machine another process may take the core in the middle
  of a callback, which is no work of ours.
* :class:`Wakeups` counts the loop's wake-ups (``select`` returning) and the timers our code runs;
  :func:`idle_window` turns them into rates over a quiet window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import gc
import time
from typing import Any, Final, Self

from .harness import cpu_ns
from .rows import Measurement, Settings

OWN_CODE: Final = "custom_components.instrument_hub"
_OWN_PATH: Final = "custom_components/instrument_hub/"


def _code_of(coro: object) -> str:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return str(getattr(code, "co_filename", ""))


def _is_own_module(module: str) -> bool:
    return module.startswith(OWN_CODE)


def callback_owner(callback: Callable[..., Any]) -> tuple[bool, str]:
    """Return whether a loop callback runs the integration's code, and a short name for it."""
    target = getattr(callback, "__self__", None)
    if isinstance(target, asyncio.Task):
        path = _code_of(target.get_coro())
        return _OWN_PATH in path, f"task {target.get_name()}"
    protocol = getattr(target, "_protocol", None)
    if protocol is not None:
        module = type(protocol).__module__
        return _is_own_module(module), f"read {type(protocol).__qualname__}"
    function = getattr(callback, "__func__", callback)
    module = getattr(function, "__module__", "") or ""
    name = getattr(function, "__qualname__", repr(function))
    return _is_own_module(module), str(name)


@dataclass(slots=True)
class CallbackStats:
    """The longest callback seen of one side (ours or not) and how many ran."""

    longest_s: float = 0.0
    longest_name: str = ""
    count: int = 0
    total_s: float = 0.0


class CallbackTimer:
    """Time every callback the loop runs while active; ``ours`` and ``others`` keep the longest."""

    def __init__(self) -> None:
        """Start with nothing seen."""
        self.ours = CallbackStats()
        self.others = CallbackStats()
        self.longest_gc_s = 0.0
        self._gc_total = 0.0
        self._gc_started = 0.0
        self._original: Any = None

    def reset(self) -> None:
        """Forget what was seen (a new phase of the row)."""
        self.ours = CallbackStats()
        self.others = CallbackStats()

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        now = time.thread_time()
        if phase == "start":
            self._gc_started = now
            return
        pause = now - self._gc_started
        self._gc_total += pause
        self.longest_gc_s = max(self.longest_gc_s, pause)

    def __enter__(self) -> Self:
        """Start timing every callback."""
        original = asyncio.Handle._run  # noqa: SLF001
        timer = self
        clock = time.thread_time

        def run(handle: asyncio.Handle) -> None:
            gc_before = timer._gc_total  # noqa: SLF001
            begin = clock()
            try:
                original(handle)
            finally:
                elapsed = clock() - begin - (timer._gc_total - gc_before)  # noqa: SLF001
                callback = handle._callback  # type: ignore[attr-defined]  # noqa: SLF001
                own, name = callback_owner(callback)
                stats = timer.ours if own else timer.others
                stats.count += 1
                stats.total_s += elapsed
                if elapsed > stats.longest_s:
                    stats.longest_s = elapsed
                    stats.longest_name = name

        self._original = original
        asyncio.Handle._run = run  # type: ignore[method-assign,assignment]  # noqa: SLF001
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop timing."""
        gc.callbacks.remove(self._on_gc)
        asyncio.Handle._run = self._original  # type: ignore[method-assign]  # noqa: SLF001


class FloodTally:
    """What the loop-lag rows keep over repeats of their floods: the longest callback of ours.

    ``add`` takes each flood's ``CallbackTimer``; ``end_repeat`` closes a repeat (its longest over
    every flood is one sample). Per flood kind the worst is kept, with the callback's name, and the
    longest callback not ours and the longest garbage collection (never counted as ours).
    """

    def __init__(self) -> None:
        """Start with nothing seen."""
        self.samples: list[float] = []
        self.worst_us: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.others = CallbackStats()
        self.longest_gc_s = 0.0
        self._repeat_us = 0.0

    def add(self, kind: str, timer: CallbackTimer) -> None:
        """Count one flood of ``kind``."""
        us = timer.ours.longest_s * 1e6
        if us > self.worst_us.get(kind, 0.0):
            self.names[kind] = timer.ours.longest_name
        self.worst_us[kind] = max(self.worst_us.get(kind, 0.0), us)
        self._repeat_us = max(self._repeat_us, us)
        self.longest_gc_s = max(self.longest_gc_s, timer.longest_gc_s)
        if timer.others.longest_s > self.others.longest_s:
            self.others = timer.others

    def end_repeat(self) -> None:
        """Close a repeat: its longest callback of ours is a sample."""
        self.samples.append(self._repeat_us)
        self._repeat_us = 0.0

    def per_kind(self) -> str:
        """Return the worst callback per flood kind, in ms."""
        return ", ".join(
            f"{kind} {us / 1000:.2f} ms" for kind, us in self.worst_us.items()
        )

    def longest_name(self) -> str:
        """Return the name of the longest callback of ours over every flood."""
        if not self.worst_us:
            return ""
        return self.names.get(max(self.worst_us, key=self.worst_us.__getitem__), "")

    def gc_note(self) -> str:
        """Return the note on the longest garbage collection."""
        return f"longest garbage collection {self.longest_gc_s * 1000:.1f} ms (not counted)"


class Wakeups:
    """Count the loop's wake-ups and the timers run by the integration's own code."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count on ``loop`` while active."""
        self.loop = loop
        self.selects = 0
        self.own_timers = 0
        self._select: Callable[..., Any] = lambda *_args: None
        self._run: Any = asyncio.TimerHandle._run  # noqa: SLF001

    def __enter__(self) -> Self:
        """Start counting."""
        selector = self.loop._selector  # type: ignore[attr-defined]  # noqa: SLF001
        original_select = selector.select
        counter = self

        def select(timeout: float | None = None) -> Any:
            counter.selects += 1
            return original_select(timeout)

        self._select = original_select
        selector.select = select
        original_run = asyncio.TimerHandle._run  # noqa: SLF001

        def run(handle: Any) -> None:
            own, _name = callback_owner(getattr(handle, "_callback", None) or run)
            if own:
                counter.own_timers += 1
            original_run(handle)

        self._run = original_run
        asyncio.TimerHandle._run = run  # type: ignore[method-assign,assignment]  # noqa: SLF001
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop counting."""
        self.loop._selector.select = self._select  # type: ignore[attr-defined]  # noqa: SLF001
        asyncio.TimerHandle._run = self._run  # type: ignore[method-assign]  # noqa: SLF001


@dataclass(frozen=True, slots=True)
class IdleFigures:
    """What a quiet window cost: loop wake-ups and our timers per second, CPU µs per second."""

    wakeups: float
    own_timers: float
    cpu_us: float


async def idle_window(seconds: float) -> IdleFigures:
    """Measure the running loop over a quiet window of ``seconds``."""
    loop = asyncio.get_running_loop()
    with Wakeups(loop) as counts:
        begin = cpu_ns()
        await asyncio.sleep(seconds)
        end = cpu_ns()
    return IdleFigures(
        counts.selects / seconds,
        counts.own_timers / seconds,
        (end - begin) / 1000 / seconds,
    )


async def idle_windows(
    settings: Settings,
    baseline: IdleFigures,
    *,
    what: str = "",
    context: str = "",
    notes: Sequence[str] = (),
) -> Measurement:
    """Measure ``settings.repeats`` idle windows with a source running, beside ``baseline`` (without it).

    The figure is CPU µs per second; the first note gives the last window's wake-ups and our own
    timers, ``what`` before it (the state the source is in) and ``context`` in its parenthesis.
    """
    seconds = idle_seconds(settings)
    samples: list[float] = []
    figures = baseline
    for _ in range(settings.repeats):
        figures = await idle_window(seconds)
        samples.append(figures.cpu_us)
    return Measurement(
        samples,
        [
            f"{what}loop wake-ups {figures.wakeups:.2f}/s (without the source "
            f"{baseline.wakeups:.2f}/s{context}), integration timers {figures.own_timers:.2f}/s",
            *notes,
        ],
    )


def idle_seconds(settings: Settings) -> float:
    """Return how long one idle window lasts."""
    return 1.0 if settings.quick else 5.0


type ReadingPredicate = Callable[[Any], bool]


class CountingSink:
    """A source's event sink that does nothing but count, for the source-only rows.

    ``arm`` names the reading that ends a measurement (by predicate on the event); ``wait``
    returns the CPU clock noted in the very call that saw it. What the source emits costs it
    nothing beyond this call, so a row through this sink shows the source's own share.
    """

    def __init__(self) -> None:
        """Start with nothing counted."""
        self.events = 0
        self.readings = 0
        self.done_cpu_ns = 0
        self._predicate: ReadingPredicate | None = None
        self._done = asyncio.Event()

    def __call__(self, event: object) -> None:
        """Take one event (the EventSink interface)."""
        self.events += 1
        if type(event).__name__ == "Reading":
            self.readings += 1
            if self._predicate is not None and self._predicate(event):
                self.done_cpu_ns = cpu_ns()
                self._predicate = None
                self._done.set()

    def arm(self, predicate: ReadingPredicate) -> None:
        """Reset the counters; the next reading satisfying ``predicate`` ends the wait."""
        self.events = self.readings = 0
        self._done.clear()
        self._predicate = predicate

    async def wait(self, timeout: float) -> int:
        """Return the CPU clock (ns) at the expected reading; TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            await self._done.wait()
        return self.done_cpu_ns
