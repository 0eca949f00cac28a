"""Tests of the event collector: ordering, results, coalescing, shutdown, statistics.

Handlers are blocked on events/futures (never on sleeps) to build up a queue deterministically;
every wait is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
import logging
import random
from typing import Any

import pytest

from custom_components.instrument_hub import collector as collector_module
from custom_components.instrument_hub.collector import (
    DEFAULT_PRIORITY,
    Collector,
    CollectorClosed,
    CollectorMode,
    HandlerCancelled,
    reading_coalesce_key,
)
from custom_components.instrument_hub.events import (
    BlobData,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
    DeviceConnection,
    DeviceFound,
    EventData,
    LinkDown,
    LinkUp,
    Reading,
)

TIMEOUT = 5.0
BLOCK = "block"

type Factory = Callable[..., Collector[Any, Any]]


class Recorder:
    """Handler that records what it is given; the payload ``BLOCK`` waits for ``gate``."""

    def __init__(self) -> None:
        """Start with nothing seen and the gate closed."""
        self.seen: list[Any] = []
        self.blocked = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, payload: Any) -> Any:
        """Record the payload and return it (after the gate opens, for BLOCK)."""
        self.seen.append(payload)
        if payload == BLOCK:
            self.blocked.set()
            await self.gate.wait()
        return payload

    def after_block(self) -> list[Any]:
        """Return what was handled after the blocker."""
        return self.seen[self.seen.index(BLOCK) + 1 :]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """Create collectors (not started); whatever a test leaves open is closed afterwards."""
    made: list[Collector[Any, Any]] = []

    def factory(handler: Any, **kwargs: Any) -> Collector[Any, Any]:
        instance: Collector[Any, Any] = Collector(handler, **kwargs)
        made.append(instance)
        return instance

    yield factory
    for instance in made:
        await instance.close(drain_timeout=0)


async def blocked(make: Factory, **kwargs: Any) -> tuple[Collector[Any, Any], Recorder]:
    """Return a started collector whose worker is stuck in the handler of a BLOCK payload."""
    recorder = Recorder()
    instance = make(recorder, **kwargs)
    instance.start()
    instance.send(BLOCK)
    async with asyncio.timeout(TIMEOUT):
        await recorder.blocked.wait()
    return instance, recorder


def reading(value: int, channel: str = "temp") -> Reading:
    """Return a reading of channel ``channel`` of device ``dev``."""
    return Reading("dev", channel, value)


# --- ordering ----------------------------------------------------------------------------------


async def test_fifo_order(make: Factory) -> None:
    """FIFO hands items over in arrival order, whatever their priority."""
    instance, recorder = await blocked(make, mode=CollectorMode.FIFO)
    handles = [instance.send(n, priority=-n) for n in range(10)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == list(range(10))


async def test_lifo_order(make: Factory) -> None:
    """LIFO hands the newest pending item over first, whatever the priority."""
    instance, recorder = await blocked(make, mode=CollectorMode.LIFO)
    handles = [instance.send(n, priority=n) for n in range(1, 5)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == [4, 3, 2, 1]


async def test_priority_order(make: Factory) -> None:
    """PRIORITY: lower number first, negative allowed, ties in arrival order."""
    instance, recorder = await blocked(make, mode=CollectorMode.PRIORITY)
    sends = [
        ("p2000", 2000),
        ("p1000-a", 1000),
        ("p1-a", 1),
        ("p5", 5),
        ("p-10", -10),
        ("p1000-b", 1000),
        ("p1-b", 1),
    ]
    handles = [instance.send(name, priority=priority) for name, priority in sends]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == [
        "p-10",
        "p1-a",
        "p1-b",
        "p5",
        "p1000-a",
        "p1000-b",
        "p2000",
    ]


async def test_default_priority(make: Factory) -> None:
    """A payload sent without priority has priority 1000 (tie with an explicit 1000: arrival)."""
    assert DEFAULT_PRIORITY == 1000
    instance, recorder = await blocked(make, mode=CollectorMode.PRIORITY)
    handles = [
        instance.send("p1001", priority=1001),
        instance.send("explicit-1000", priority=1000),
        instance.send("default"),
        instance.send("p999", priority=999),
    ]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == ["p999", "explicit-1000", "default", "p1001"]


@pytest.mark.parametrize("seed", range(20))
async def test_priority_order_random(make: Factory, seed: int) -> None:
    """For random priorities and arrivals, the order equals sorted((priority, seq)).

    (hypothesis is not installed in the venv; a seeded random sweep stands in for it.)
    """
    rng = random.Random(seed)
    instance, recorder = await blocked(make, mode=CollectorMode.PRIORITY)
    priorities = [
        rng.randint(-3, 3) * rng.choice((1, 1000)) for _ in range(rng.randint(1, 60))
    ]
    handles = [instance.send(seq, priority=p) for seq, p in enumerate(priorities)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    expected = [seq for _, seq in sorted((p, seq) for seq, p in enumerate(priorities))]
    assert recorder.after_block() == expected


# --- results and failures ----------------------------------------------------------------------


async def test_wait_returns_result_to_every_waiter(make: Factory) -> None:
    """Several coroutines may wait on one handle; cancelling one does not cancel processing."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(payload: int) -> int:
        await gate
        return payload * 2

    instance = make(handler)
    instance.start()
    handle = instance.send(21)
    first = asyncio.create_task(handle.wait())
    second = asyncio.create_task(handle.wait())
    quitter = asyncio.create_task(handle.wait())
    await asyncio.sleep(
        0
    )  # let the waiters register (not a synchronization with the worker)
    quitter.cancel()
    gate.set_result(None)
    async with asyncio.timeout(TIMEOUT):
        assert await first == 42
        assert await second == 42
        assert await handle.wait() == 42
    assert quitter.cancelled()
    assert handle.done()
    assert handle.get_result() == 42


async def test_exception_propagates_and_worker_survives(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """The waiter gets the handler's exception; the next item is processed.

    Each distinct failure (type and message) is logged once: a later, different failure of the same
    type is seen, an identical repeat is not.
    """

    async def handler(payload: str) -> str:
        if payload.startswith("value"):
            raise ValueError(payload.removesuffix("-again"))
        if payload == "key":
            raise KeyError(payload)
        return payload

    root_handlers = list(logging.getLogger().handlers)
    root_level = logging.getLogger().level
    caplog.set_level(logging.WARNING, logger=collector_module.__name__)
    instance = make(handler)
    instance.start()
    payloads = ("value-1", "ok-1", "value-2", "key", "value-1-again", "ok-2")
    handles = [instance.send(p) for p in payloads]
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ValueError, match="value-1"):
            await handles[0].wait()
        assert await handles[1].wait() == "ok-1"
        with pytest.raises(ValueError, match="value-2"):
            await handles[2].wait()
        with pytest.raises(KeyError):
            await handles[3].wait()
        with pytest.raises(ValueError, match="value-1"):
            await handles[4].wait()
        assert await handles[5].wait() == "ok-2"
    with pytest.raises(ValueError, match="value-1"):
        handles[0].get_result()

    warnings = [r for r in caplog.records if r.name == collector_module.__name__]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 3
    assert [str(r.exc_info[1]) for r in warnings if r.exc_info] == [
        "value-1",
        "value-2",
        "'key'",
    ]
    # The collector configures nothing globally (the seed library reconfigured structlog).
    assert logging.getLogger().handlers == root_handlers
    assert logging.getLogger().level == root_level
    assert logging.getLogger(collector_module.__name__).handlers == []


async def test_expected_failures_go_to_the_waiter_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure of an ``expected`` type (a device refusing a command) is raised, never logged."""

    class Refused(Exception):
        pass

    async def handler(payload: str) -> str:
        raise Refused(payload)

    caplog.set_level(logging.DEBUG, logger=collector_module.__name__)
    instance: Collector[str, str] = Collector(handler, expected=(Refused,))
    instance.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(Refused, match="no"):
                await instance.send("no").wait()
    finally:
        await instance.close()
    assert [r for r in caplog.records if r.name == collector_module.__name__] == []


async def test_logged_payload_is_cut_to_an_excerpt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing 12 MB payload is described in a short excerpt, never copied into the log."""

    async def handler(payload: bytes) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.WARNING, logger=collector_module.__name__)
    instance: Collector[bytes, None] = Collector(handler)
    instance.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(RuntimeError):
                await instance.send(b"x" * 12_000_000).wait()
    finally:
        await instance.close()
    (record,) = [r for r in caplog.records if r.name == collector_module.__name__]
    assert len(record.getMessage()) < 400
    assert "12000000 bytes" in record.getMessage()


async def test_handler_cancelled_error_does_not_kill_worker(make: Factory) -> None:
    """A handler raising CancelledError on its own: the waiter gets an error, the worker goes on."""
    inner: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    entered = asyncio.Event()

    async def handler(payload: str) -> str:
        if payload == "victim":
            entered.set()
            await inner  # someone else cancels this future
        return payload

    instance = make(handler)
    instance.start()
    victim = instance.send("victim")
    after = instance.send("after")
    async with asyncio.timeout(TIMEOUT):
        await entered.wait()
        inner.cancel()
        with pytest.raises(HandlerCancelled) as info:
            await victim.wait()
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert await after.wait() == "after"
        # Still alive for new work.
        assert await instance.send("later").wait() == "later"
    assert instance.stats()["failed"] == 1


async def test_get_result_before_finished(make: Factory) -> None:
    """get_result() on an unfinished handle raises InvalidStateError."""
    instance, recorder = await blocked(make)
    handle = instance.send("queued")
    assert not handle.done()
    with pytest.raises(asyncio.InvalidStateError):
        handle.get_result()
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        assert await handle.wait() == "queued"


async def test_times(make: Factory) -> None:
    """Times are int ns, 0 until finished; queue + service == wait; service <= wait."""
    instance, recorder = await blocked(make)
    handle = instance.send("queued")
    assert (handle.queue_time(), handle.service_time(), handle.wait_time()) == (0, 0, 0)
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await handle.wait()
    queue_time, service_time, wait_time = (
        handle.queue_time(),
        handle.service_time(),
        handle.wait_time(),
    )
    assert all(type(t) is int for t in (queue_time, service_time, wait_time))
    assert queue_time > 0  # it waited behind the blocker
    assert 0 <= service_time <= wait_time
    assert queue_time + service_time == wait_time


# --- back-pressure and coalescing --------------------------------------------------------------


async def test_coalescing_under_pressure(make: Factory) -> None:
    """maxsize=2, blocked worker, 100 readings of one channel among lifecycle events."""
    replaced: list[Reading] = []
    instance, recorder = await blocked(
        make,
        maxsize=2,
        coalesce_key=reading_coalesce_key,
        on_coalesced=replaced.append,
    )
    lifecycle_before = [
        DeviceFound("dev", "Device"),
        ChannelDefined("dev", "temp", ChannelKind.NUMERIC, writable=False, label="T"),
    ]
    middle = DeviceConnection("dev", connected=True)
    last = ChannelRemoved("dev", "temp")

    for event in lifecycle_before:
        instance.send(event)
    handles = [instance.send(reading(n)) for n in range(50)]
    # A waiter registered before its item gets coalesced must follow the chain.
    early_waiter = asyncio.create_task(handles[0].wait())
    await asyncio.sleep(0)  # let the early waiter register on reading 49's outcome
    instance.send(middle)
    handles += [instance.send(reading(n)) for n in range(50, 100)]
    instance.send(last)
    assert instance.stats()["depth"] == 5  # 2 lifecycle + middle + last + reading 99

    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*(h.wait() for h in handles))
        assert await early_waiter == reading(99)

    processed = recorder.after_block()
    lifecycle = [e for e in processed if not isinstance(e, Reading)]
    readings = [e for e in processed if isinstance(e, Reading)]
    assert lifecycle == [*lifecycle_before, middle, last]
    assert readings == [reading(99)]
    # Every value is accounted for exactly once: processed or reported as replaced.
    assert replaced == [reading(n) for n in range(99)]
    assert len(replaced) == 100 - len(readings)
    # Per-channel order and order relative to lifecycle events are kept.
    assert processed.index(reading(99)) < processed.index(last)
    assert processed.index(reading(99)) > processed.index(middle)
    # Chained handles resolve with the result of the item that replaced them.
    assert results == [reading(99)] * 100
    for handle in handles:
        assert handle.queue_time() + handle.service_time() == handle.wait_time()
        assert (
            handle.wait_time() >= handles[-1].wait_time()
        )  # created earlier, same stop
    stats = instance.stats()
    assert stats["coalesced"] == 99
    assert stats["submitted"] == 1 + 4 + 100
    assert stats["processed"] == 1 + 4 + 1


async def test_lifecycle_never_dropped_above_maxsize(make: Factory) -> None:
    """Payloads without coalesce key are all admitted, far beyond maxsize."""
    instance, recorder = await blocked(
        make, maxsize=1, coalesce_key=reading_coalesce_key
    )
    events = (
        [LinkUp()]
        + [DeviceFound("dev", f"name {n}") for n in range(48)]
        + [LinkDown("x")]
    )
    handles = [instance.send(event) for event in events]
    assert instance.stats()["high_water"] == 50
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == events
    assert instance.stats()["coalesced"] == 0


async def test_nothing_coalesced_below_maxsize(make: Factory) -> None:
    """Below maxsize every reading is processed, even many of the same channel."""
    replaced: list[Reading] = []
    instance, recorder = await blocked(
        make,
        maxsize=100,
        coalesce_key=reading_coalesce_key,
        on_coalesced=replaced.append,
    )
    handles = [instance.send(reading(n)) for n in range(50)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == [reading(n) for n in range(50)]
    assert replaced == []
    assert instance.stats()["coalesced"] == 0


async def test_files_and_happenings_are_never_coalesced(make: Factory) -> None:
    """Under pressure a file (BlobData) or an event (EventData) is not "a newer value": each is kept."""
    replaced: list[Reading] = []
    instance, recorder = await blocked(
        make, maxsize=1, coalesce_key=reading_coalesce_key, on_coalesced=replaced.append
    )
    frames = [
        Reading("cam", "image", BlobData(b"frame%d" % n, ".fits", 6)) for n in range(4)
    ]
    fired = [Reading("dev", "pulse", EventData("pulse", {"n": n})) for n in range(3)]
    handles = [instance.send(item) for item in (*frames, *fired)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == [*frames, *fired]
    assert replaced == []


async def test_coalescing_replaces_latest_twin_only(make: Factory) -> None:
    """Older twins admitted below maxsize keep their place; the latest one is replaced."""
    replaced: list[Reading] = []
    instance, recorder = await blocked(
        make, maxsize=3, coalesce_key=reading_coalesce_key, on_coalesced=replaced.append
    )
    handles = [instance.send(reading(n)) for n in range(4)]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == [reading(0), reading(1), reading(3)]
    assert replaced == [reading(2)]
    assert results == [reading(0), reading(1), reading(3), reading(3)]


async def test_queue_bound_with_many_keys(make: Factory) -> None:
    """Above maxsize a key without pending twin is admitted; depth <= maxsize + keys."""
    replaced: list[Reading] = []
    maxsize, keys, rounds = 3, 20, 10
    instance, recorder = await blocked(
        make,
        maxsize=maxsize,
        coalesce_key=reading_coalesce_key,
        on_coalesced=replaced.append,
    )
    handles = []
    for value in range(rounds):
        for key in range(keys):
            handles.append(instance.send(reading(value, f"ch{key}")))
            assert instance.stats()["depth"] <= maxsize + keys
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    processed = recorder.after_block()
    for key in range(keys):
        values = [r.value for r in processed if r.channel_key == f"ch{key}"]
        assert values == sorted(values)  # per-channel order kept
        assert values[-1] == rounds - 1  # the freshest value always arrives
    assert len(processed) + len(replaced) == keys * rounds


async def test_priority_coalesced_item_uses_its_own_priority(make: Factory) -> None:
    """In PRIORITY mode the replacing item is ordered by its own priority and arrival."""
    instance, recorder = await blocked(
        make, mode=CollectorMode.PRIORITY, maxsize=1, coalesce_key=reading_coalesce_key
    )
    handles = [
        instance.send(reading(1), priority=5),
        instance.send("lifecycle", priority=10),
        instance.send(
            reading(2), priority=20
        ),  # replaces reading 1, goes after "lifecycle"
    ]
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert recorder.after_block() == ["lifecycle", reading(2)]


def test_reading_coalesce_key() -> None:
    """Readings are keyed by (device, channel); everything else is never coalesced."""
    assert reading_coalesce_key(Reading("d", "c", 1)) == ("d", "c")
    assert reading_coalesce_key(ChannelRemoved("d", "c")) is None
    assert reading_coalesce_key(LinkUp()) is None
    assert reading_coalesce_key("anything") is None


async def test_on_coalesced_failure_does_not_break_send(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing statistics hook is logged; the payload is still queued and processed."""

    def broken(_payload: Reading) -> None:
        raise RuntimeError("hook failed")

    instance, recorder = await blocked(
        make, maxsize=0, coalesce_key=reading_coalesce_key, on_coalesced=broken
    )
    first = instance.send(reading(1))
    second = instance.send(reading(2))
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        assert await first.wait() == reading(2)
        assert await second.wait() == reading(2)
    assert "on_coalesced callback failed" in caplog.text


# --- shutdown ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(CollectorMode))
async def test_close_drains(make: Factory, mode: CollectorMode) -> None:
    """close() lets the worker finish what is queued, in the mode's order, and stops it."""
    instance, recorder = await blocked(make, mode=mode)
    handles = [instance.send(n, priority=n % 3) for n in range(6)]
    tasks_before = asyncio.all_tasks()
    close = asyncio.create_task(instance.close(drain_timeout=TIMEOUT))
    await asyncio.sleep(0)  # close() has started: sending is refused from now on
    with pytest.raises(CollectorClosed):
        instance.send("late")
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await close
    assert [h.get_result() for h in handles] == list(range(6))
    expected = {
        CollectorMode.FIFO: [0, 1, 2, 3, 4, 5],
        CollectorMode.LIFO: [5, 4, 3, 2, 1, 0],
        CollectorMode.PRIORITY: [0, 3, 1, 4, 2, 5],
    }[mode]
    assert recorder.after_block() == expected
    worker = {t for t in tasks_before if t.get_name() == "collector worker"}
    assert len(worker) == 1
    assert all(t.done() for t in worker)
    assert instance.stats()["aborted"] == 0


@pytest.mark.parametrize("mode", list(CollectorMode))
async def test_close_timeout_fails_pending(make: Factory, mode: CollectorMode) -> None:
    """Drain timeout with a stuck handler: every pending handle fails, no task is left behind.

    The seed library lost PRIORITY/LIFO items with their waiters hanging forever, and left its
    consumer task running after the shutdown timeout.
    """
    tasks_before = asyncio.all_tasks()
    instance, recorder = await blocked(make, mode=mode)
    stuck = next(iter(asyncio.all_tasks() - tasks_before))
    priorities = [10, 999, 1000, 1001, 5000, -1, DEFAULT_PRIORITY]
    handles = [instance.send(p, priority=p) for p in priorities]
    waiters = [asyncio.create_task(h.wait()) for h in handles]
    async with asyncio.timeout(TIMEOUT):
        await instance.close(drain_timeout=0.01)
        results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, CollectorClosed) for r in results), results
    assert recorder.after_block() == []
    assert stuck.done()
    assert asyncio.all_tasks() - tasks_before == set()
    with pytest.raises(CollectorClosed):
        instance.send("late")
    stats = instance.stats()
    assert (
        stats["aborted"] == len(priorities) + 1
    )  # the queued ones and the blocked one
    assert stats["depth"] == 0
    assert stats["in_progress"] == 0


async def test_close_is_idempotent(make: Factory) -> None:
    """close() twice (also concurrently) is fine and leaves nothing running."""
    instance, recorder = await blocked(make)
    handle = instance.send("queued")
    async with asyncio.timeout(TIMEOUT):
        first = asyncio.create_task(instance.close(drain_timeout=TIMEOUT))
        second = asyncio.create_task(instance.close())
        await asyncio.sleep(0)
        assert not second.done()  # waits for the first close
        recorder.gate.set()
        await asyncio.gather(first, second)
        await instance.close()
    assert handle.get_result() == "queued"
    assert instance.closed
    with pytest.raises(CollectorClosed):
        instance.start()


async def test_close_cancelled_while_draining(make: Factory) -> None:
    """If close() itself is cancelled, the worker is cancelled too and no waiter hangs."""
    tasks_before = asyncio.all_tasks()
    instance, _recorder = await blocked(make)
    (worker,) = asyncio.all_tasks() - tasks_before
    handle = instance.send("queued")
    close = asyncio.create_task(instance.close(drain_timeout=TIMEOUT))
    await asyncio.sleep(0)  # close() is now waiting for the drain
    close.cancel()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(asyncio.CancelledError):
            await close
        with pytest.raises(CollectorClosed):
            await handle.wait()
        await asyncio.wait({worker})
        await instance.close()  # later calls return at once
    assert worker.cancelled()


async def test_close_without_start(make: Factory) -> None:
    """Payloads sent to a collector that never started fail at close instead of hanging."""
    instance = make(Recorder())
    handle = instance.send("never")
    async with asyncio.timeout(TIMEOUT):
        await instance.close()
        with pytest.raises(CollectorClosed):
            await handle.wait()


async def test_worker_cancelled_externally(make: Factory) -> None:
    """If someone else cancels the worker, pending handles fail and sending is refused."""
    tasks_before = asyncio.all_tasks()
    instance, _recorder = await blocked(make)
    (worker,) = asyncio.all_tasks() - tasks_before
    handle = instance.send("queued")
    worker.cancel()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(CollectorClosed):
            await handle.wait()
        await asyncio.wait({worker})
        await instance.close()
    with pytest.raises(CollectorClosed):
        instance.send("late")


@pytest.mark.parametrize("late_failure", [False, True])
async def test_handler_ignoring_cancellation(
    make: Factory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    late_failure: bool,
) -> None:
    """A handler that swallows cancellation cannot make close() hang; its late outcome is dropped."""
    monkeypatch.setattr(collector_module, "CANCEL_GRACE_S", 0.01)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(payload: str) -> str:
        entered.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            await release.wait()  # bad handler: ignores the cancellation
        if late_failure:
            raise ValueError(payload)
        return payload

    tasks_before = asyncio.all_tasks()
    instance = make(stubborn)
    instance.start()
    handle = instance.send("stuck")
    queued = instance.send("queued")
    async with asyncio.timeout(TIMEOUT):
        await entered.wait()
        await instance.close(drain_timeout=0)
        for pending in (handle, queued):
            with pytest.raises(CollectorClosed):
                await pending.wait()
        assert "ignored cancellation" in caplog.text
        release.set()
        (worker,) = asyncio.all_tasks() - tasks_before
        await asyncio.wait({worker})
    assert instance.stats()["processed"] == 0
    assert instance.stats()["failed"] == 0
    assert instance.stats()["aborted"] == 2
    with pytest.raises(CollectorClosed):
        handle.get_result()


async def test_close_from_handler_is_refused(make: Factory) -> None:
    """The handler cannot await close() (the worker would wait for itself)."""
    holder: list[Collector[str, None]] = []

    async def handler(_payload: str) -> None:
        await holder[0].close()

    instance = make(handler)
    holder.append(instance)
    instance.start()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(RuntimeError, match="must not be awaited from the handler"):
            await instance.send("x").wait()


# --- worker task -------------------------------------------------------------------------------


class _StepCounter(Coroutine[Any, Any, None]):
    """Wrap a coroutine and count how often the event loop resumes it."""

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.coro = coro
        self.steps = 0

    def send(self, value: Any) -> Any:
        self.steps += 1
        return self.coro.send(value)

    def throw(self, *args: Any) -> Any:
        self.steps += 1
        return self.coro.throw(*args)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any]:
        return self.coro.__await__()


async def test_task_factory_and_no_polling_when_idle(make: Factory) -> None:
    """The worker is created by task_factory and sleeps (no wake-ups) while idle."""
    created: list[tuple[_StepCounter, str]] = []

    def factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        counter = _StepCounter(coro)
        created.append((counter, name))
        # Like Home Assistant's background tasks: eager start.
        return asyncio.Task(counter, name=name, eager_start=True)

    recorder = Recorder()
    instance = make(recorder, task_factory=factory, name="hub")
    queued = instance.send("before start")
    instance.start()
    ((counter, name),) = created
    assert name == "hub worker"
    async with asyncio.timeout(TIMEOUT):
        assert await queued.wait() == "before start"
    idle_steps = counter.steps
    # Not a synchronization: an idle period in which a polling worker (the seed polled at
    # 100 Hz) would have been resumed several times.
    await asyncio.sleep(0.05)
    assert counter.steps == idle_steps
    async with asyncio.timeout(TIMEOUT):
        assert await instance.send("wake").wait() == "wake"
    assert counter.steps > idle_steps
    with pytest.raises(RuntimeError, match="already started"):
        instance.start()


# --- statistics --------------------------------------------------------------------------------


async def test_stats(make: Factory) -> None:
    """Counters, depth, high-water mark, rate and percentiles."""

    async def handler(payload: Any) -> Any:
        if payload == "fail":
            raise ValueError(payload)
        return await recorder(payload)

    recorder = Recorder()
    instance = make(handler, maxsize=2, coalesce_key=reading_coalesce_key)
    empty = instance.stats()
    assert empty["rate"] == 0.0
    assert empty["wait_time"] == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    instance.start()
    instance.send(BLOCK)
    async with asyncio.timeout(TIMEOUT):
        await recorder.blocked.wait()
    handles = [instance.send("a"), instance.send("fail")]
    handles += [instance.send(reading(n)) for n in range(5)]  # 4 of them coalesced
    during = instance.stats()
    assert during["depth"] == 3
    assert during["in_progress"] == 1
    assert during["high_water"] == 3
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles), return_exceptions=True)

    stats = instance.stats()
    assert stats["name"] == "collector"
    assert stats["mode"] == "fifo"
    assert stats["maxsize"] == 2
    assert stats["depth"] == 0
    assert stats["in_progress"] == 0
    assert stats["high_water"] == 3
    assert stats["submitted"] == 8
    assert stats["processed"] == 4  # block, a, fail, reading 4
    assert stats["failed"] == 1
    assert stats["coalesced"] == 4
    assert stats["aborted"] == 0
    assert stats["rate"] > 0
    for key in ("wait_time", "service_time"):
        timing = stats[key]
        assert set(timing) == {"p50", "p95", "p99", "max"}
        assert 0 <= timing["p50"] <= timing["p95"] <= timing["p99"] <= timing["max"]
    assert stats["service_time"]["max"] <= stats["wait_time"]["max"]
    assert stats["wait_time"]["max"] > 0


async def test_stats_window_is_bounded(make: Factory) -> None:
    """Percentiles use the last STATS_WINDOW completions only (bounded memory)."""
    instance = make(Recorder())
    instance.start()
    count = collector_module.STATS_WINDOW + 50
    handles = [instance.send(n) for n in range(count)]
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(h.wait() for h in handles))
    assert len(instance._samples) == collector_module.STATS_WINDOW
    assert instance.stats()["processed"] == count
    assert instance.stats()["rate"] > 0


async def test_handle_repr_and_collector_properties(make: Factory) -> None:
    """Introspection helpers: repr of each handle state, name, mode, length, maxsize check."""
    with pytest.raises(ValueError, match="maxsize"):
        Collector(Recorder(), maxsize=-1)
    recorder = Recorder()
    instance = make(
        recorder,
        mode=CollectorMode.LIFO,
        name="hub",
        maxsize=0,
        coalesce_key=reading_coalesce_key,
    )
    assert (instance.name, instance.mode, instance.closed) == (
        "hub",
        CollectorMode.LIFO,
        False,
    )
    instance.start()
    blocker = instance.send(BLOCK)
    async with asyncio.timeout(TIMEOUT):
        await recorder.blocked.wait()
    assert repr(blocker) == "<Handle running>"
    first = instance.send(reading(1))
    second = instance.send(reading(2))
    assert len(instance) == 1
    assert repr(first) == "<Handle pending coalesced>"
    assert repr(second) == "<Handle pending>"
    recorder.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await second.wait()
        assert repr(second) == "<Handle done>"
        await instance.close()
    assert instance.closed
    unstarted = make(Recorder())
    never = unstarted.send("x")
    async with asyncio.timeout(TIMEOUT):
        await unstarted.close()
    assert repr(never) == "<Handle failed=CollectorClosed>"
