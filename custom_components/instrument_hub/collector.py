"""Event collector: one ordered, bounded, observable queue between a source and the hub.

A source pushes normalized events from protocol callbacks (synchronously, on the event loop); the
collector hands them, one at a time and in a well-defined order, to an async handler. It replaces
the ``event-collector`` library (see the research notes), keeping its semantics and fixing its
defects:

* Order. ``FIFO`` (arrival order), ``LIFO`` (newest first) or ``PRIORITY`` (lower number first,
  ties in arrival order via a sequence counter, never the clock). A single worker task processes
  items sequentially, because device events must be applied in order.
* Lanes. With ``lane_key``, items of different lanes run concurrently and items of one lane run
  one after the other, in the order the worker hands them out (commands: a write to one vector never
  waits behind an unanswered write to another, two writes to one vector keep their order). A lane
  has a task only while it has work.
* Results. :meth:`Collector.send` returns a :class:`Handle`; awaiting it yields the handler's result
  or raises its exception. The worker survives every handler failure, including a handler that
  raises ``CancelledError`` on its own (told apart from the worker's cancellation with
  ``Task.cancelling()``). Failures of the ``expected`` types (a device refusing a command) only go
  to the waiters; any other failure is logged, once for each distinct type and message, with the
  payload cut to a short excerpt.
* Shutdown. :meth:`Collector.close` stops accepting, drains what is queued within a timeout, then
  cancels and awaits the worker. Every handle still pending (queued or in progress) then fails with
  :class:`CollectorClosed`, whatever the mode, so no waiter ever hangs and no task is left behind.
* Idle cost. The worker sleeps on an ``asyncio.Event`` when there is nothing to do: no polling.
* Fast path. :meth:`Collector.post` hands a payload over without a handle. When nothing is queued or
  being handled, the synchronous ``inline`` handler takes it at once, in the caller's callback: no
  task hop, no handle, no outcome (what a source pushes by the thousand costs a function call). It
  may decline (return False: the payload needs the async handler, e.g. a file to save), and then,
  like everything posted while the queue is busy, it is queued in order behind what is there.

Back-pressure and coalescing
----------------------------
``maxsize`` is a high-water mark on the number of *pending* items (queued, not yet started):

* While fewer than ``maxsize`` items are pending, every payload is admitted.
* At or above ``maxsize``, a payload whose ``coalesce_key`` is not None (a channel reading) replaces
  the most recently admitted pending item with the same key, if there is one. The replaced item
  leaves the queue, its payload goes to ``on_coalesced`` (statistics can still count every value),
  and its handle is chained to the new item: it resolves with the new item's result.

  Position semantics: the new item takes **its own arrival position** (its own sequence number and
  priority), never the old item's place. So a channel's values are always processed in the order
  they were sent, a value is never moved ahead of lifecycle events that were sent before it (a
  reading cannot overtake the ``ChannelDefined`` it depends on), and the value eventually processed
  is the freshest one. Older pending twins admitted below ``maxsize`` keep their places, so a hot
  channel still makes progress under sustained overload instead of being pushed back forever.
* A keyed payload with no pending twin is admitted even above ``maxsize``.
* Payloads whose key is None (lifecycle events: link, device, channel) are never dropped.

Bound: the pending keyed items never exceed ``maxsize`` + the number of distinct keys that have a
pending item; so the whole queue holds at most ``maxsize + number of keys + pending lifecycle
events``. (Proof sketch: ``keyed pending items - keys with a tracked twin`` only grows through
admissions below ``maxsize``, so it never exceeds ``maxsize``.) A replaced item's outcome points to
the one that replaced it, never the other way round, and the queue drops it: it lives only as long
as its sender keeps the handle. There is no task and no future per item.

Thread safety: like the rest of asyncio, :meth:`Collector.send` must be called on the loop thread.
This module has no Home Assistant imports.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from enum import StrEnum
import heapq
import logging
import math
import time
from types import TracebackType
from typing import Any, Final, TypedDict, cast

from .events import BlobData, EventData, Reading
from .log_excerpt import excerpt

_LOGGER = logging.getLogger(__name__)

DEFAULT_PRIORITY: Final = 1000
"""Priority of a payload sent without one (PRIORITY mode: lower numbers are processed first)."""

STATS_WINDOW: Final = 1000
"""How many recent completions the timing percentiles are computed over."""

RATE_WINDOW_NS: Final = 10_000_000_000
"""Sliding window (ns) over which :meth:`Collector.stats` computes the completion rate."""

CANCEL_GRACE_S: Final = 1.0
"""How long close() waits for a cancelled worker; only a handler that ignores cancellation hits it."""

LOGGED_FAILURES: Final = 64
"""Distinct (type, message) failures remembered, so a repeated failure is not logged again."""


class CollectorMode(StrEnum):
    """The order in which pending items are handed to the handler."""

    FIFO = "fifo"
    PRIORITY = "priority"
    LIFO = "lifo"


class CollectorError(Exception):
    """Base of the errors the collector itself raises."""


class CollectorClosed(CollectorError):
    """The collector was closed: it accepts nothing more, or it closed before handling an item."""


class HandlerCancelled(CollectorError):
    """The handler raised ``CancelledError`` without the worker being cancelled.

    Delivered to the waiters instead of the ``CancelledError`` itself, which would make a waiting
    task look as if *it* had been cancelled. The original error is the ``__cause__``.
    """


class TimingStats(TypedDict):
    """Percentiles of a duration in milliseconds (all 0.0 while nothing has completed)."""

    p50: float
    p95: float
    p99: float
    max: float


class CollectorStats(TypedDict):
    """What :meth:`Collector.stats` reports."""

    name: str
    mode: str
    maxsize: int
    depth: int
    in_progress: int
    high_water: int
    submitted: int
    processed: int
    failed: int
    coalesced: int
    aborted: int
    rate: float
    wait_time: TimingStats
    service_time: TimingStats


def reading_coalesce_key(event: object) -> tuple[str, str] | None:
    """Coalesce value readings per (device, channel); every other event is never coalesced.

    A reading that is a happening (an event fired, a file received) is not a value a newer one
    supersedes: each one must reach the user, like a lifecycle event.
    """
    if isinstance(event, Reading) and not isinstance(event.value, EventData | BlobData):
        return (event.device_key, event.channel_key)
    return None


def _no_coalesce_key(_payload: object) -> None:
    """Return None: by default nothing is ever coalesced."""
    return


class _Outcome[R]:
    """The state behind a handle: times, result or exception, waiters, and forwarding.

    When an item is coalesced, its outcome forwards to the outcome of the item that replaced it.
    The queue only holds the outcomes of pending items, and an outcome only references the one it
    forwards to, so replaced outcomes live exactly as long as somebody keeps their handle.
    """

    __slots__ = (
        "created_ns",
        "done",
        "exception",
        "forward",
        "result",
        "started_ns",
        "stopped_ns",
        "traceback",
        "waiters",
    )

    def __init__(self) -> None:
        """Create a pending outcome, stamped with its creation time."""
        self.created_ns = time.monotonic_ns()
        self.started_ns = 0
        self.stopped_ns = 0
        self.done = False
        self.result: R | None = None
        self.exception: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.forward: _Outcome[R] | None = None
        # Futures are created only by Handle.wait(), so a payload nobody waits for costs no future,
        # and a failure nobody retrieves never triggers asyncio's "exception was never retrieved".
        self.waiters: list[asyncio.Future[None]] = []

    def target(self) -> _Outcome[R]:
        """Follow the forwarding chain to the outcome that will really be resolved."""
        target = self
        while target.forward is not None:
            target = target.forward
        if self.forward is not None:
            self.forward = target  # path compression: the next lookup is one step
        return target

    def wake(self) -> None:
        """Wake every waiter; each re-checks the state it is interested in."""
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def forward_to(self, other: _Outcome[R]) -> None:
        """Chain this (coalesced) outcome to the one of the replacing item."""
        self.forward = other
        self.wake()

    def set_result(self, result: R) -> None:
        """Finish with the handler's result."""
        if self.done:
            return
        self.stopped_ns = time.monotonic_ns()
        self.result = result
        self.done = True
        self.wake()

    def set_exception(self, exc: BaseException) -> None:
        """Finish with an exception (handler failure, or CollectorClosed)."""
        if self.done:
            return
        self.stopped_ns = time.monotonic_ns()
        if not self.started_ns:
            # Never started (aborted while queued): no service time, all of it was queueing.
            self.started_ns = self.stopped_ns
        self.exception = exc
        self.traceback = exc.__traceback__
        self.done = True
        self.wake()


class Handle[R]:
    """The outcome of one sent payload, returned by :meth:`Collector.send`; awaitable many times.

    A handle whose item was coalesced reports the outcome and the start/stop times of the item that
    replaced it, but keeps its own creation time, so its ``wait_time`` is the real latency seen by
    its sender.
    """

    __slots__ = ("_own",)

    def __init__(self, outcome: _Outcome[R]) -> None:
        """Wrap the outcome of one sent payload."""
        self._own = outcome

    def done(self) -> bool:
        """Return whether the item was handled (or failed, or aborted by close)."""
        return self._own.target().done

    def get_result(self) -> R:
        """Return the handler's result, or raise its exception.

        Raises ``asyncio.InvalidStateError`` while the item is not finished.
        """
        target = self._own.target()
        if not target.done:
            raise asyncio.InvalidStateError(f"{self!r} is not finished")
        if target.exception is not None:
            # Reset the traceback each time, as asyncio.Future does, so raising the same exception
            # for several waiters does not keep growing it.
            raise target.exception.with_traceback(target.traceback)
        return cast("R", target.result)

    async def wait(self) -> R:
        """Wait until the item is finished; return the result or raise the exception.

        Cancelling a waiter does not cancel the processing of the item.
        """
        loop = asyncio.get_running_loop()
        # A loop, because the target may be replaced (coalesced) while we wait: forwarding wakes
        # the waiters and they register again on the new target.
        while not (target := self._own.target()).done:
            waiter: asyncio.Future[None] = loop.create_future()
            target.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in target.waiters:
                    target.waiters.remove(waiter)
        return self.get_result()

    def queue_time(self) -> int:
        """Nanoseconds from creation to the start of processing; 0 until finished."""
        target = self._own.target()
        if not target.done:
            return 0
        return target.started_ns - self._own.created_ns

    def service_time(self) -> int:
        """Nanoseconds the handler took (stop - start); 0 until finished (and if never started)."""
        target = self._own.target()
        if not target.done:
            return 0
        return target.stopped_ns - target.started_ns

    def wait_time(self) -> int:
        """Nanoseconds from creation to finish: queueing + service; 0 until finished."""
        target = self._own.target()
        if not target.done:
            return 0
        return target.stopped_ns - self._own.created_ns

    def __repr__(self) -> str:
        """Show the state, for logs and assertion messages."""
        target = self._own.target()
        if not target.done:
            state = "running" if target.started_ns else "pending"
        elif target.exception is not None:
            state = f"failed={type(target.exception).__name__}"
        else:
            state = "done"
        coalesced = " coalesced" if target is not self._own else ""
        return f"<Handle {state}{coalesced}>"


@dataclass(slots=True, eq=False)
class _Item[T, R]:
    """One pending payload, with its place in the order and its outcome (never its handle)."""

    payload: T
    priority: int
    seq: int
    key: Hashable | None
    outcome: _Outcome[R]
    lane: Hashable = None


class _PendingQueue[T, R]:
    """Pending items in service order, supporting removal of any item (for coalescing).

    Items live in buckets: ordered dicts ``seq -> item``, so that popping either end and removing
    any item are O(1) and removal really frees the slot (a heap with tombstones would keep growing
    while the worker is blocked). FIFO and LIFO use one bucket; PRIORITY has one bucket per priority
    level plus a heap of the levels present (few distinct values in practice).
    """

    __slots__ = ("_buckets", "_levels", "_mode", "size")

    def __init__(self, mode: CollectorMode) -> None:
        """Create an empty queue for the given mode."""
        self._mode = mode
        self._buckets: dict[int, OrderedDict[int, _Item[T, R]]] = {}
        self._levels: list[int] = []
        self.size = 0
        """The number of pending items; an attribute, because post() reads it for every payload."""

    def __len__(self) -> int:
        """Return the number of pending items."""
        return self.size

    def _level(self, item: _Item[T, R]) -> int:
        return item.priority if self._mode is CollectorMode.PRIORITY else 0

    def push(self, item: _Item[T, R]) -> None:
        """Add an item at its arrival position."""
        level = self._level(item)
        bucket = self._buckets.get(level)
        if bucket is None:
            bucket = self._buckets[level] = OrderedDict()
            heapq.heappush(self._levels, level)
        bucket[item.seq] = item
        self.size += 1

    def pop(self) -> _Item[T, R] | None:
        """Remove and return the next item to process, or None when empty."""
        if not self._levels:
            return None
        level = self._levels[0]
        bucket = self._buckets[level]
        # Sequence numbers grow with arrival, so each bucket is in arrival order.
        _, item = bucket.popitem(last=self._mode is CollectorMode.LIFO)
        if not bucket:
            heapq.heappop(self._levels)
            del self._buckets[level]
        self.size -= 1
        return item

    def remove(self, item: _Item[T, R]) -> None:
        """Remove a pending item from wherever it is."""
        level = self._level(item)
        bucket = self._buckets[level]
        del bucket[item.seq]
        if not bucket:
            del self._buckets[level]
            self._levels.remove(level)
            heapq.heapify(self._levels)
        self.size -= 1

    def clear(self) -> list[_Item[T, R]]:
        """Remove and return every pending item (in no particular order)."""
        items = [item for bucket in self._buckets.values() for item in bucket.values()]
        self._buckets.clear()
        self._levels.clear()
        self.size = 0
        return items


class Collector[T, R]:
    """Sequential, ordered, bounded delivery of payloads to an async handler (see module doc)."""

    def __init__(
        self,
        handler: Callable[[T], Awaitable[R]],
        *,
        mode: CollectorMode = CollectorMode.FIFO,
        maxsize: int = 1000,
        coalesce_key: Callable[[T], Hashable | None] = _no_coalesce_key,
        on_coalesced: Callable[[T], None] | None = None,
        task_factory: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
        | None = None,
        name: str = "collector",
        lane_key: Callable[[T], Hashable] | None = None,
        expected: tuple[type[BaseException], ...] = (),
        inline: Callable[[T], bool] | None = None,
    ) -> None:
        """Configure the collector; nothing runs until :meth:`start`.

        ``task_factory(coro, name)`` creates the worker task and the lane tasks (Home Assistant: a
        wrapper around ``entry.async_create_background_task``); by default ``loop.create_task``.
        ``lane_key`` turns on lanes (see the module doc); ``expected`` failures are not logged;
        ``inline`` is the synchronous handler of the fast path (see :meth:`post`).
        """
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self._handler = handler
        self._mode = CollectorMode(mode)
        self._maxsize = maxsize
        self._coalesce_key = coalesce_key
        self._on_coalesced = on_coalesced
        self._task_factory = task_factory
        self._name = name
        self._lane_key = lane_key
        self._expected = expected
        self._inline = inline

        self._pending: _PendingQueue[T, R] = _PendingQueue(self._mode)
        # The most recently admitted pending item per key: the twin a new keyed payload replaces.
        self._latest: dict[Hashable, _Item[T, R]] = {}
        self._seq = 0
        # Items being handled: at most one without lanes, one per busy lane with them.
        self._running: set[_Item[T, R]] = set()
        # Busy lanes and what waits in each behind the running item.
        self._lanes: dict[Hashable, deque[_Item[T, R]]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._accepting = True
        self._draining = False
        self._aborting = False
        self._close_started = False
        self._closed_event = asyncio.Event()
        self._logged_failures: OrderedDict[tuple[type[BaseException], str], None] = (
            OrderedDict()
        )

        self._submitted = 0
        self._processed = 0
        self._failed = 0
        self._coalesced = 0
        self._aborted = 0
        self._high_water = 0
        self._started_ns = 0
        # (stop_ns, wait_ns, service_ns) of the last completions; bounded, for rate and percentiles.
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=STATS_WINDOW)

    @property
    def name(self) -> str:
        """Return the name (used for the worker task and in log messages)."""
        return self._name

    @property
    def mode(self) -> CollectorMode:
        """Return the ordering mode."""
        return self._mode

    @property
    def closed(self) -> bool:
        """Return whether the collector stopped accepting payloads."""
        return not self._accepting

    def __len__(self) -> int:
        """Return the number of pending (not yet started) items, those waiting in lanes included."""
        return len(self._pending) + sum(
            len(backlog) for backlog in self._lanes.values()
        )

    def start(self) -> None:
        """Create the worker task; call on the event loop. Payloads sent earlier stay queued."""
        if not self._accepting:
            raise CollectorClosed(f"{self._name} is closed")
        if self._worker is not None:
            raise RuntimeError(f"{self._name} is already started")
        self._started_ns = time.monotonic_ns()
        self._worker = self._create_task(self._run(), f"{self._name} worker")

    def _create_task(
        self, coro: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None]:
        if self._task_factory is None:
            return asyncio.get_running_loop().create_task(coro, name=name)
        return self._task_factory(coro, name)

    def send(self, payload: T, priority: int = DEFAULT_PRIORITY) -> Handle[R]:
        """Queue a payload and return its handle; never blocks, never drops lifecycle payloads.

        ``priority`` only matters in PRIORITY mode (lower first). Raises :class:`CollectorClosed`
        once :meth:`close` has been called.
        """
        if not self._accepting:
            raise CollectorClosed(f"{self._name} is closed")
        key = self._coalesce_key(payload)
        replaced: _Item[T, R] | None = None
        if key is not None and len(self._pending) >= self._maxsize:
            replaced = self._latest.get(key)

        outcome: _Outcome[R] = _Outcome()
        self._seq += 1
        lane = None if self._lane_key is None else self._lane_key(payload)
        item = _Item(payload, priority, self._seq, key, outcome, lane)
        self._submitted += 1
        if replaced is not None:
            self._pending.remove(replaced)
            replaced.outcome.forward_to(outcome)
            self._coalesced += 1
        self._pending.push(item)
        if key is not None:
            self._latest[key] = item
        self._high_water = max(self._high_water, len(self._pending))
        self._wakeup.set()

        if replaced is not None and self._on_coalesced is not None:
            # After the queue is consistent: a failing statistics hook must not lose the payload
            # nor raise into the source's protocol callback.
            try:
                self._on_coalesced(replaced.payload)
            except Exception:
                _LOGGER.exception("%s: on_coalesced callback failed", self._name)
        return Handle(outcome)

    def post(self, payload: T) -> None:
        """Hand a payload over without a handle (fire and forget); never blocks.

        Handled at once by the ``inline`` handler when nothing is queued or being handled and the
        collector runs; queued (and so kept in order) otherwise, or when the handler declines it.
        Raises :class:`CollectorClosed` once :meth:`close` has been called.
        """
        if not self._accepting:
            raise CollectorClosed(f"{self._name} is closed")
        inline = self._inline
        if (
            inline is not None
            and self._worker is not None
            and not self._pending.size
            and not self._running
        ):
            started = time.monotonic_ns()
            try:
                handled = inline(payload)
            except Exception as err:  # noqa: BLE001 - the caller is a protocol callback
                self._submitted += 1
                self._processed += 1
                self._failed += 1
                self._log_failure(err, payload)
                return
            if handled:
                stopped = time.monotonic_ns()
                self._submitted += 1
                self._processed += 1
                self._samples.append((stopped, stopped - started, stopped - started))
                return
        self.send(payload)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting, drain within ``drain_timeout`` seconds, then stop the worker.

        Afterwards every handle is finished: items not handled in time fail with
        :class:`CollectorClosed`. Idempotent; a concurrent second call waits for the first.
        """
        if self._worker is not None and asyncio.current_task() is self._worker:
            # The worker would wait for itself until the drain timeout, then cancel itself.
            raise RuntimeError(
                f"{self._name}: close() must not be awaited from the handler"
            )
        self._accepting = False
        if self._close_started:
            await self._closed_event.wait()
            return
        self._close_started = True
        try:
            worker = self._worker
            if self._live_tasks():
                self._draining = True
                self._wakeup.set()  # an idle worker sees the queue is empty and returns
                deadline = time.monotonic() + max(drain_timeout, 0.0)
                # Lanes started while draining count too: wait until the worker and every lane ended.
                while pending := self._live_tasks():
                    done, _ = await asyncio.wait(
                        pending,
                        timeout=max(deadline - time.monotonic(), 0.0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if not done:
                        break
                if pending:
                    self._aborting = True
                    for task in pending:
                        task.cancel()
                    _, still = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
                    if still:
                        _LOGGER.warning(
                            "%s: handler ignored cancellation; worker still running after close",
                            self._name,
                        )
                if worker is not None and worker.done():
                    self._worker = None
        finally:
            if not self._aborting and (left := self._live_tasks()):
                # close() itself was cancelled while draining: do not leave a task behind.
                self._aborting = True
                for task in left:
                    task.cancel()
            # Also on cancellation of close() itself: never leave a waiter hanging.
            self._abort_all()
            self._closed_event.set()

    def _live_tasks(self) -> set[asyncio.Task[None]]:
        """Return the worker and lane tasks that have not ended."""
        tasks = set(self._lane_tasks)
        if self._worker is not None:
            tasks.add(self._worker)
        return {task for task in tasks if not task.done()}

    def stats(self) -> CollectorStats:
        """Return counters, depth and timing percentiles (recent completions only)."""
        samples = list(self._samples)
        return {
            "name": self._name,
            "mode": str(self._mode),
            "maxsize": self._maxsize,
            "depth": len(self),
            "in_progress": len(self._running),
            "high_water": self._high_water,
            "submitted": self._submitted,
            "processed": self._processed,
            "failed": self._failed,
            "coalesced": self._coalesced,
            "aborted": self._aborted,
            "rate": self._rate([stop for stop, _, _ in samples]),
            "wait_time": _percentiles([wait for _, wait, _ in samples]),
            "service_time": _percentiles([service for _, _, service in samples]),
        }

    def _rate(self, stops: list[int]) -> float:
        """Completions per second over the last RATE_WINDOW_NS (or since start, if shorter)."""
        if not stops:
            return 0.0
        now = time.monotonic_ns()
        since = max(now - RATE_WINDOW_NS, self._started_ns)
        if len(stops) == STATS_WINDOW and stops[0] > since:
            # The sample buffer is full and older completions inside the window were evicted:
            # measure over the span the buffer still covers.
            since = stops[0]
        count = sum(1 for stop in stops if stop >= since)
        span = now - since
        if span <= 0:
            return 0.0
        return round(count * 1e9 / span, 3)

    async def _run(self) -> None:
        """Worker: hand pending items to the handler one at a time until drained or cancelled."""
        worker = asyncio.current_task()
        assert worker is not None
        try:
            while not self._aborting:
                item = self._pending.pop()
                if item is None:
                    if self._draining:
                        return
                    # Sleep until send() or close() sets the event: no polling while idle.
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if item.key is not None and self._latest.get(item.key) is item:
                    del self._latest[item.key]
                if self._lane_key is None:
                    await self._process(item, worker)
                else:
                    self._dispatch(item)
        finally:
            # However the worker ends (drained, cancelled by close() or by someone else), nothing
            # will take items from the queue any more: refuse new payloads and fail what is queued.
            # Busy lanes finish what they hold (close() waits for them or cancels them).
            self._accepting = False
            self._abort_queued()

    def _dispatch(self, item: _Item[T, R]) -> None:
        """Hand an item to its lane: behind the lane's running item, or to a new lane task."""
        backlog = self._lanes.get(item.lane)
        if backlog is not None:
            backlog.append(item)
            return
        self._lanes[item.lane] = deque()
        task = self._create_task(
            self._run_lane(item), f"{self._name} lane {excerpt(item.lane, 40)}"
        )
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _run_lane(self, item: _Item[T, R]) -> None:
        """Handle a lane's items one after the other; the task ends when the lane has no more."""
        task = asyncio.current_task()
        assert task is not None
        lane = item.lane
        try:
            while True:
                await self._process(item, task)
                backlog = self._lanes[lane]
                if not backlog or self._aborting:
                    return
                item = backlog.popleft()
        finally:
            backlog = self._lanes.pop(lane, deque())
            self._abort_items(list(backlog))
            self._wakeup.set()

    async def _process(self, item: _Item[T, R], worker: asyncio.Task[None]) -> None:
        """Run the handler for one item and resolve its outcome (``worker``: the task running it)."""
        outcome = item.outcome
        self._running.add(item)
        outcome.started_ns = time.monotonic_ns()
        try:
            result = await self._handler(item.payload)
            if outcome.done:
                # close() gave up on a handler that ignored its cancellation and already failed
                # this item with CollectorClosed: the late result has nobody left to go to.
                return
        except asyncio.CancelledError as err:
            if worker.cancelling():
                # Our own cancellation (close() timed out, or the task was cancelled): let it end
                # the worker; the finally clause fails the item so its waiters wake up.
                raise
            # The handler's own CancelledError (e.g. it awaited a future someone cancelled):
            # a failure of this item only; the worker carries on.
            failure = HandlerCancelled(f"{self._name}: handler was cancelled")
            failure.__cause__ = err
            self._fail(item, failure, err)
        except Exception as err:  # noqa: BLE001 - any handler failure goes to its waiters
            self._fail(item, err, err)
        else:
            outcome.set_result(result)
            self._processed += 1
            self._record(outcome)
        finally:
            if not outcome.done:
                # Leaving without an outcome: worker cancelled, or a BaseException such as
                # KeyboardInterrupt went through. Never leave the waiters hanging.
                outcome.set_exception(
                    CollectorClosed(f"{self._name} closed while handling")
                )
                self._aborted += 1
            self._running.discard(item)

    def _fail(
        self, item: _Item[T, R], failure: BaseException, raised: BaseException
    ) -> None:
        """Deliver a handler failure to the waiters; log an unexpected one the first time it is seen."""
        if item.outcome.done:
            return  # already failed by close() (see _process)
        item.outcome.set_exception(failure)
        self._processed += 1
        self._failed += 1
        self._record(item.outcome)
        if isinstance(raised, self._expected):
            return  # an outcome the sender handles (a device's refusal): not a fault of ours
        self._log_failure(raised, item.payload)

    def _log_failure(self, raised: BaseException, payload: object) -> None:
        """Log an unexpected handler failure the first time it is seen (type and message)."""
        signature = (type(raised), str(raised))
        if signature in self._logged_failures:
            # The same failure again: a device flooding one error must not flood the log; the
            # waiter still gets every exception.
            self._logged_failures.move_to_end(signature)
            return
        self._logged_failures[signature] = None
        if len(self._logged_failures) > LOGGED_FAILURES:
            self._logged_failures.popitem(last=False)
        _LOGGER.warning(
            "%s: handler raised %s for %s (repeats of this failure are not logged)",
            self._name,
            type(raised).__name__,
            excerpt(payload),
            exc_info=raised,
        )

    def _record(self, outcome: _Outcome[R]) -> None:
        """Keep the times of a completion for rate and percentiles."""
        self._samples.append(
            (
                outcome.stopped_ns,
                outcome.stopped_ns - outcome.created_ns,
                outcome.stopped_ns - outcome.started_ns,
            )
        )

    def _abort_queued(self) -> None:
        """Fail the items still in the queue (not those handed to a lane) with CollectorClosed."""
        items = self._pending.clear()
        self._latest.clear()
        self._abort_items(items)

    def _abort_all(self) -> None:
        """Fail every unfinished handle (in progress, in lanes and queued) with CollectorClosed."""
        self._abort_queued()
        items = list(self._running)
        for backlog in self._lanes.values():
            items.extend(backlog)
            backlog.clear()
        self._abort_items(items)

    def _abort_items(self, items: list[_Item[T, R]]) -> None:
        for item in items:
            if not item.outcome.done:
                item.outcome.set_exception(
                    CollectorClosed(f"{self._name} closed before handling")
                )
                self._aborted += 1


def _percentiles(values_ns: list[int]) -> TimingStats:
    """Nearest-rank percentiles of nanosecond durations, in milliseconds."""
    if not values_ns:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values_ns)

    def rank(percent: int) -> float:
        index = max(math.ceil(percent / 100 * len(ordered)) - 1, 0)
        return round(ordered[index] / 1e6, 3)

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": round(ordered[-1] / 1e6, 3),
    }
