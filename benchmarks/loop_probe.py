"""How long the event loop's callbacks take: the longest one, and what it was.

``LoopProbe`` is a context manager used inside a coroutine: on entry it replaces
``asyncio.events.Handle._run`` (what ``BaseEventLoop._run_once`` calls for every ready callback:
task steps, I/O callbacks, ``call_soon`` and timers alike; ``TimerHandle`` inherits it) with a
wrapper that times each call with ``time.perf_counter_ns``, and on exit puts the original back.
Only handles of the loop that was running on entry are timed (others run untouched). It keeps the
number of callbacks, their total time, how many took longer than ``threshold_ns``, and the longest
one with a description: for a task step, the task's name and its coroutine; otherwise the handle's
``repr``; cut to ``DESCRIPTION_CHARS``. The description is only built when a new longest callback
is seen, so the steady cost is an attribute read, two clock reads and a few comparisons per
callback. With
``tally=True`` it also counts callbacks by a short name (``name_of``: a task's name, or the
callback's qualified name; meant for rare callbacks: idle loops).

Its own cost is measured by ``probe_overhead_ns`` (no-op callbacks with and without the probe, on
the running loop): about 0.3-0.5 µs per callback on the 2-core benchmark machine with CPython 3.14,
i.e. a few per cent of a pipeline event. The time reported for a callback includes one clock read
of that overhead, nothing else of it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
import time
from types import TracebackType
from typing import Final, Self

DESCRIPTION_CHARS: Final = 160
DEFAULT_THRESHOLD_NS: Final = 20_000_000
"""Callbacks longer than this are counted (the issue's bound for any single callback: 20 ms)."""

_clock = time.perf_counter_ns


def describe(handle: asyncio.Handle, callback: object) -> str:
    """Return what a handle ran: a task's name and coroutine, or the handle's repr (cut short).

    ``callback`` is the handle's callback as it was before it ran (a handle cancelled while it
    ran has lost it).
    """
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        where = getattr(coro, "__qualname__", type(coro).__name__)
        text = f"task {owner.get_name()!r} ({where})"
    elif not handle.cancelled():
        text = repr(handle)
    else:
        text = _callback_name(callback)
    return (
        text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1] + "…"
    )


def _callback_name(callback: object) -> str:
    name = getattr(callback, "__qualname__", None)
    return name if isinstance(name, str) else repr(callback)


def name_of(callback: object) -> str:
    """Return a short, stable name of a callback: its task's name, or its qualified name."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_name()!r}"
    return _callback_name(callback)


class LoopProbe:
    """Times every callback of the running loop while entered (see the module doc)."""

    def __init__(
        self, *, threshold_ns: int = DEFAULT_THRESHOLD_NS, tally: bool = False
    ) -> None:
        """Prepare the probe; nothing is wrapped until ``with``."""
        self.threshold_ns = threshold_ns
        self.callbacks = 0
        self.total_ns = 0
        self.over_threshold = 0
        self.longest_ns = 0
        self.longest = ""
        self.tally: Counter[str] | None = Counter() if tally else None
        self._original: Callable[[asyncio.Handle], None] | None = None

    def __enter__(self) -> Self:
        """Wrap ``Handle._run`` for the running loop."""
        if self._original is not None:
            raise RuntimeError("LoopProbe is already entered")
        loop = asyncio.get_running_loop()
        original: Callable[[asyncio.Handle], None] = asyncio.events.Handle._run  # noqa: SLF001
        self._original = original
        probe = self
        threshold = self.threshold_ns
        tally = self.tally

        def timed_run(handle: asyncio.Handle) -> None:
            if getattr(handle, "_loop", None) is not loop:
                original(handle)
                return
            callback = getattr(handle, "_callback", None)
            start = _clock()
            try:
                original(handle)
            finally:
                elapsed = _clock() - start
                probe.callbacks += 1
                probe.total_ns += elapsed
                if elapsed > threshold:
                    probe.over_threshold += 1
                if elapsed > probe.longest_ns:
                    probe.longest_ns = elapsed
                    probe.longest = describe(handle, callback)
                if tally is not None:
                    tally[name_of(callback)] += 1

        setattr(asyncio.events.Handle, "_run", timed_run)  # noqa: B010
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Put the original ``Handle._run`` back."""
        if self._original is not None:
            setattr(asyncio.events.Handle, "_run", self._original)  # noqa: B010
            self._original = None

    def summary(self) -> str:
        """Return the longest callback (ms) and what it was, for a table's notes."""
        return f"longest callback {self.longest_ns / 1e6:.1f} ms ({self.longest})"


async def probe_overhead_ns(callbacks: int = 20_000, tries: int = 3) -> float:
    """Return what the probe adds per callback (ns): no-op callbacks timed with and without it."""
    loop = asyncio.get_running_loop()

    async def run(count: int) -> int:
        done: asyncio.Future[None] = loop.create_future()
        left = [count]

        def tick() -> None:
            left[0] -= 1
            if left[0] == 0:
                done.set_result(None)

        begin = _clock()
        for _ in range(count):
            loop.call_soon(tick)
        async with asyncio.timeout(30):
            await done
        return _clock() - begin

    plain: list[int] = []
    probed: list[int] = []
    for _ in range(tries):
        plain.append(await run(callbacks))
        with LoopProbe():
            probed.append(await run(callbacks))
    return max(0.0, (min(probed) - min(plain)) / callbacks)


class LoopIterations:
    """Counts the running loop's iterations (``BaseEventLoop._run_once`` calls) while entered.

    The wrapper is an attribute of the loop object itself (``run_forever`` looks ``_run_once`` up on
    every iteration), removed on exit; one counter increment per iteration is its whole cost.
    """

    def __init__(self) -> None:
        """Prepare the counter; nothing is wrapped until ``with``."""
        self.count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._original: Callable[[], None] | None = None
        self._shadowed = False

    def __enter__(self) -> Self:
        """Wrap the running loop's ``_run_once``."""
        if self._loop is not None:
            raise RuntimeError("LoopIterations is already entered")
        loop = asyncio.get_running_loop()
        original: Callable[[], None] = getattr(loop, "_run_once")  # noqa: B009
        self._loop = loop
        self._original = original
        self._shadowed = "_run_once" in vars(loop)
        counter = self

        def counting() -> None:
            counter.count += 1
            original()

        setattr(loop, "_run_once", counting)  # noqa: B010
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Put the loop's own ``_run_once`` back."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._shadowed:
            setattr(loop, "_run_once", self._original)  # noqa: B010
        else:
            delattr(loop, "_run_once")
