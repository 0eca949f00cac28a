"""Rows of the hub itself and of the pipeline's behaviour over time (issue 10's targets).

Per-event cost of the hub alone (``core-events``, ``core-burst``): an in-bench source kind (``bench_core``,
registered next to the real ones with ``patch.dict(KINDS, ...)`` for the row, like the tests' fake kind,
which the benchmark does not import) is set up through a config entry; the row pushes pre-built
``Reading`` events into the hub's sink the way a protocol callback would, so the figure is the
collector, the hub, the entities and Home Assistant's own write, and nothing of a protocol.

Over time, against an INDI server in another process (``benchmarks.paced_pusher``, paced on
CLOCK_MONOTONIC, which is the same clock in both processes): push -> state latency at 1,000 events/s
(``latency-1k``) and the age of the value shown under overload (``overload-10k``, ``overload-20k``),
with the longest event-loop callback (``benchmarks.loop_probe``) and the peak RSS growth. Each state
write of a pushed value is noted with ``time.monotonic_ns()`` in a ``state_changed`` listener; the value
is the sequence number the pusher sent, so "write time - send time of that value" is the latency
(at 1,000/s) or the age of what is shown (under overload). These rows' figure is still a CPU cost per
event (this process's CPU from the command to the last value's write, over the events sent), so
the "× floor" column keeps its meaning; the times are in the notes.

``idle`` counts event-loop iterations (``BaseEventLoop._run_once`` calls, through a temporary wrapper on
the running loop) per second with an idle connected INDI entry, minus the same hass without it: the
figure is wake-ups per second, not µs, so its "× floor" means nothing.

``scale-10k`` sets up 900 devices × 10 numeric channels of the in-bench source (each device also gets
the hub's Message event entity) through a config entry, until every state exists, against a mock
integration that adds as many plain ``SensorEntity`` objects on as many devices; the figure is our CPU
per entity (so "× floor" reads "an entity's setup costs k state writes"), ours / plain ratios are in
the notes, and memory per entity comes from a separate ``tracemalloc`` pass of each side.

No figure is asserted: a row fails only when it cannot measure (a wait timed out, a count is off).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
import contextlib
from dataclasses import dataclass, field
import gc
import math
from pathlib import Path
import re
import statistics
import time
import tracemalloc
from typing import TYPE_CHECKING, Any, ClassVar, Final
from unittest.mock import patch

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry, ConfigEntryState, ConfigFlow
from homeassistant.const import (
    CONF_HOST,
    CONF_PORT,
    EVENT_STATE_CHANGED,
    Platform,
    UnitOfTemperature,
)
from homeassistant.core import (
    Event as HassEvent,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

from . import paced_pusher
from .floor import DOMAIN as FLOOR_DOMAIN, ProbeConfigFlow, setup_plain_sensors
from .harness import (
    HelperProcess,
    StateWrites,
    bench_hass,
    cpu_ns,
    numeric_state_is,
    settle,
    wait_for_states,
    wall_ns,
)
from .loop_probe import LoopIterations, LoopProbe, probe_overhead_ns
from .rows import BenchError, Measurement, Settings, row

if TYPE_CHECKING:
    from custom_components.instrument_hub.events import Event

INTEGRATION_DOMAIN: Final = "instrument_hub"
SOURCE_KIND_KEY: Final = "source_kind"
BENCH_KIND: Final = "bench_core"
STARTUP_TIMEOUT: Final = 30.0

# --------------------------------------------------------------------------------------------------
# The in-bench source kind


@dataclass(slots=True)
class BenchFeed:
    """What the bench holds of its source: the events for the start, then the hub's sink."""

    initial: list[Event] = field(default_factory=list)
    sink: Callable[[Event], None] | None = None

    def push(self, events: Iterable[Event]) -> None:
        """Deliver events to the hub, as a protocol callback does (synchronously, on the loop)."""
        sink = self.sink
        if sink is None:
            raise BenchError("the in-bench source is not started")
        for event in events:
            sink(event)


@contextlib.contextmanager
def registered_bench_kind(feeds: list[BenchFeed]) -> Iterator[None]:
    """Register the kind ``bench_core`` for the duration; each new entry's source takes the next feed.

    Imported and defined here, not at module level, so that an integration mid-edit fails the rows
    that need it, not the whole benchmark (as benchmarks/indi.py does).
    """
    import probatio  # noqa: PLC0415

    from custom_components.instrument_hub.kinds import KINDS  # noqa: PLC0415
    from custom_components.instrument_hub.kinds.base import (  # noqa: PLC0415
        Endpoint,
        SourceKind,
        TaskFactory,
    )
    from custom_components.instrument_hub.sources.base import (  # noqa: PLC0415
        CommandResult,
        EventSink,
        Source,
    )

    class BenchSource(Source):
        """A source without a protocol: the bench pushes normalized events through its feed."""

        def __init__(self, feed: BenchFeed) -> None:
            self.feed = feed

        async def async_start(self, sink: EventSink) -> None:
            self.feed.sink = sink
            self.feed.push(self.feed.initial)

        async def async_stop(self) -> None:
            self.feed.sink = None

        async def async_write(
            self, device_key: str, channel_key: str, value: object
        ) -> CommandResult:
            return CommandResult("Ok")

        def diagnostics(self) -> dict[str, Any]:
            return {}

    class BenchKind(SourceKind):
        """The kind ``bench_core``: sources handed out from the bench's feeds."""

        name: ClassVar[str] = BENCH_KIND
        entry_model: ClassVar[str] = "In-bench source"

        def schema(self, values: Any) -> probatio.Schema:
            return probatio.Schema({})

        def endpoint(self, user_input: Any) -> Endpoint:
            host = str(user_input[CONF_HOST])
            return Endpoint(f"{BENCH_KIND}:{host}", f"Bench {host}", dict(user_input))

        async def async_check(
            self, hass: HomeAssistant, endpoint: Endpoint
        ) -> Endpoint:
            return endpoint

        def create_source(
            self, hass: HomeAssistant, entry: Any, task_factory: TaskFactory
        ) -> Source:
            return BenchSource(feeds.pop(0) if feeds else BenchFeed())

    with patch.dict(KINDS, {BENCH_KIND: BenchKind()}):
        yield


async def _setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add and set up an entry of the integration; BenchError when it does not load."""
    entry.add_to_hass(hass)
    if (
        not await hass.config_entries.async_setup(entry.entry_id)
        or entry.state is not ConfigEntryState.LOADED
    ):
        raise BenchError(
            f"the {entry.data.get(SOURCE_KIND_KEY)} entry did not load ({entry.state}: "
            f"{entry.reason}); the integration may be mid-edit: retry later or run from a clean "
            "worktree"
        )


def _bench_entry(host: str = "bench") -> MockConfigEntry:
    return MockConfigEntry(
        domain=INTEGRATION_DOMAIN,
        title=f"Bench {host}",
        unique_id=f"{BENCH_KIND}:{host}",
        data={SOURCE_KIND_KEY: BENCH_KIND, CONF_HOST: host},
    )


def _sensor_entity_ids(
    hass: HomeAssistant, entry: ConfigEntry[Any], keys: Sequence[tuple[str, str]]
) -> list[str] | None:
    """Return the sensor entity ids of (device, channel) keys, None while one is not registered."""
    registry = er.async_get(hass)
    hub = entry.runtime_data
    entity_ids: list[str] = []
    for device_key, channel_key in keys:
        unique_id: str = hub.entity_unique_id(device_key, channel_key)
        entity_id = registry.async_get_entity_id(
            Platform.SENSOR, INTEGRATION_DOMAIN, unique_id
        )
        if entity_id is None:
            return None
        entity_ids.append(entity_id)
    return entity_ids


async def _wait_until(
    hass: HomeAssistant, check: Callable[[], bool], timeout: float, what: str
) -> None:
    """Wait until ``check()`` holds, re-checked on every state change; BenchError after ``timeout``."""
    done = asyncio.Event()

    @callback
    def changed(_event: HassEvent[EventStateChangedData]) -> None:
        if check():
            done.set()

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, changed)
    try:
        if not check():
            async with asyncio.timeout(timeout):
                await done.wait()
    except TimeoutError as err:
        raise BenchError(f"{what} not reached within {timeout:.0f} s") from err
    finally:
        unsubscribe()


# --------------------------------------------------------------------------------------------------
# core-events, core-burst: the hub's own cost per reading

CORE_DEVICE: Final = "bench"
CORE_CHANNELS: Final = 100
BURST_READINGS: Final = 20_000
BURST_CHANNELS: Final = 3


def _core_definitions(count: int) -> list[Event]:
    """Return the start of the in-bench source: link up, one device, ``count`` temperature channels."""
    from custom_components.instrument_hub.events import (  # noqa: PLC0415
        ChannelDefined,
        ChannelKind,
        DeviceFound,
        LinkUp,
    )

    events: list[Event] = [
        LinkUp(),
        DeviceFound(
            CORE_DEVICE, "Bench device", manufacturer="Benchmark", model="In-bench"
        ),
    ]
    events.extend(
        ChannelDefined(
            CORE_DEVICE,
            f"c{index:03d}",
            ChannelKind.NUMERIC,
            writable=False,
            label=f"Channel {index}",
            unit=UnitOfTemperature.CELSIUS,
            device_class_hint="temperature",
            value=20.0,
        )
        for index in range(count)
    )
    return events


async def _core_readings_row(
    settings: Settings,
    channels: int,
    make_round: Callable[[int, int], list[Any]],
    *,
    yield_between: int,
) -> tuple[list[float], list[int], list[float]]:
    """Run warm-up + repeats of pushing readings; return µs per reading, writes and push ms per repeat.

    ``make_round(first_value, channels)`` returns the repeat's readings, values counting up from
    ``first_value`` (every value is new). ``yield_between`` readings are pushed per loop pass.
    """
    feed = BenchFeed(_core_definitions(channels))
    keys = [(CORE_DEVICE, f"c{index:03d}") for index in range(channels)]
    samples: list[float] = []
    written: list[int] = []
    push_ms: list[float] = []
    with registered_bench_kind([feed]):
        async with bench_hass() as hass:
            entry = _bench_entry()
            await _setup_entry(hass, entry)
            entity_ids = _sensor_entity_ids(hass, entry, keys)
            if entity_ids is None:
                raise BenchError("the in-bench channels have no sensor entities")
            await wait_for_states(hass, entity_ids, STARTUP_TIMEOUT)
            writes = StateWrites(hass, entity_ids)
            try:
                next_value = 1
                for repeat in range(-1, settings.repeats):
                    readings = make_round(next_value, channels)
                    next_value += len(readings)
                    last = readings[-1]
                    target = entity_ids[int(last.channel_key[1:])]
                    await settle(hass)
                    writes.arm(target, numeric_state_is(float(last.value)))
                    begin = cpu_ns()
                    pushing = 0
                    for offset in range(0, len(readings), yield_between):
                        start = cpu_ns()
                        feed.push(readings[offset : offset + yield_between])
                        pushing += cpu_ns() - start
                        await asyncio.sleep(0)
                    end = await writes.wait(STARTUP_TIMEOUT + len(readings) / 1000)
                    _check_final_values(hass, entity_ids, readings)
                    if repeat < 0:
                        continue
                    samples.append((end - begin) / len(readings) / 1000)
                    written.append(writes.count)
                    push_ms.append(pushing / 1e6)
            finally:
                writes.close()
    return samples, written, push_ms


def _check_final_values(
    hass: HomeAssistant, entity_ids: Sequence[str], readings: Sequence[Any]
) -> None:
    """BenchError unless every channel shows the last value pushed to it (the newest one)."""
    last: dict[int, float] = {}
    for reading in readings:
        last[int(reading.channel_key[1:])] = float(reading.value)
    for index, value in last.items():
        state = hass.states.get(entity_ids[index])
        if state is None or not numeric_state_is(value)(state):
            raise BenchError(
                f"{entity_ids[index]} shows {state.state if state else None}, not its newest "
                f"value {value}"
            )


def _round_robin(count: int) -> Callable[[int, int], list[Any]]:
    """Return a round maker: ``count`` readings going over the channels in turn."""
    from custom_components.instrument_hub.events import Reading  # noqa: PLC0415

    def make(first_value: int, channels: int) -> list[Any]:
        return [
            Reading(CORE_DEVICE, f"c{index % channels:03d}", float(first_value + index))
            for index in range(count)
        ]

    return make


@row(
    "core-events",
    "core: pushed reading -> state (100 channels, every reading written)",
    source="core",
)
async def core_events(settings: Settings) -> Measurement:
    """CPU per reading, batches of one reading per channel, a loop pass between batches."""
    count = max(CORE_CHANNELS, settings.events // CORE_CHANNELS * CORE_CHANNELS)
    samples, written, _push = await _core_readings_row(
        settings, CORE_CHANNELS, _round_robin(count), yield_between=CORE_CHANNELS
    )
    sent = count * settings.repeats
    total = sum(written)
    notes = [f"states {total}/{sent}"]
    if total != sent:
        notes.append(f"{sent - total} coalesced")
    notes.append(
        f"{count // CORE_CHANNELS} batches × {CORE_CHANNELS} readings (one per channel), "
        "a loop pass between batches; collector + hub + entity + HA's write"
    )
    return Measurement(samples, notes)


@row("core-burst", "core: a burst of 20k readings of 3 channels", source="core")
async def core_burst(settings: Settings) -> Measurement:
    """CPU per reading of a 20,000-reading burst pushed in one callback; how many states it wrote."""
    samples, written, push_ms = await _core_readings_row(
        settings,
        BURST_CHANNELS,
        _round_robin(BURST_READINGS),
        yield_between=BURST_READINGS,
    )
    return Measurement(
        samples,
        [
            f"states written per burst {statistics.median(written):.0f} "
            f"(min {min(written)}, max {max(written)}) for {BURST_READINGS} readings",
            f"the push (one callback) {statistics.median(push_ms):.0f} ms CPU",
            "every channel shows its newest value",
        ],
    )


# --------------------------------------------------------------------------------------------------
# latency-1k, overload-10k, overload-20k: a paced INDI server

PACED_MODULE: Final = "benchmarks.paced_pusher"
WARMUP_MS: Final = 300
_SET_VALUE: Final = re.compile(rb"<oneNumber[^>]*>\s*(\d+)\s*</oneNumber>")


def _nearest_rank(ordered: Sequence[int], percent: float) -> int:
    """Return the nearest-rank percentile of a sorted, non-empty sequence."""
    index = max(math.ceil(percent / 100 * len(ordered)) - 1, 0)
    return ordered[index]


def _status_kib(name: str) -> int | None:
    """Return a field of /proc/self/status in KiB (VmRSS, VmHWM), None where there is none."""
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class _StateLog:
    """(sequence number, CLOCK_MONOTONIC ns) of every value the paced channels' entities show.

    Fed by their ``state_changed`` events; ends a wait on a target value.
    """

    def __init__(self, hass: HomeAssistant, entity_ids: Sequence[str]) -> None:
        self.log: list[tuple[int, int]] = []
        self._target: tuple[str, int] | None = None
        self._done = asyncio.Event()
        self.done_cpu_ns = 0
        self._entity_ids = frozenset(entity_ids)
        self._unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, self._changed)

    def _note(self, entity_id: str, sequence: int, now: int) -> None:
        self.log.append((sequence, now))
        if self._target == (entity_id, sequence):
            self.done_cpu_ns = cpu_ns()
            self._target = None
            self._done.set()

    def arm(self, entity_id: str, sequence: int) -> None:
        """Forget the log; the wait ends when ``entity_id`` shows ``sequence``."""
        self.log = []
        self._done.clear()
        self._target = (entity_id, sequence)

    async def wait(self, timeout: float) -> int:
        """Return the CPU clock at the target write; BenchError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError as err:
            raise BenchError(
                f"the last value {self._target} was not shown within {timeout:.0f} s "
                f"({len(self.log)} values shown)"
            ) from err
        return self.done_cpu_ns

    @callback
    def _changed(self, event: HassEvent[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        if entity_id not in self._entity_ids:
            return
        now = time.monotonic_ns()
        new_state = event.data["new_state"]
        if new_state is None:
            return
        try:
            sequence = int(float(new_state.state))
        except ValueError:
            return
        self._note(entity_id, sequence, now)

    def close(self) -> None:
        """Stop listening."""
        self._unsubscribe()


@dataclass(slots=True)
class _Offer:
    """What the pusher says of one paced run: the count, its timing and every batch's send time."""

    first: int
    sent: int
    elapsed_ns: int
    behind_ns: int
    offsets: list[int]
    stamps: list[int]

    @property
    def last(self) -> int:
        """The sequence number of the run's last value."""
        return self.first + self.sent - 1

    def largest_batch(self) -> int:
        """Return the most elements one sendall carried."""
        ends = [*self.offsets[1:], self.sent]
        return max(end - start for start, end in zip(self.offsets, ends, strict=True))

    def ages(self, log: Sequence[tuple[int, int]]) -> tuple[list[int], int]:
        """Return (shown time - send time) of every value of this run shown, and of the last one."""
        ages: list[int] = []
        last_delay = 0
        for sequence, shown in log:
            if not self.first <= sequence <= self.last:
                continue
            sent_at = self.stamps[bisect_right(self.offsets, sequence - self.first) - 1]
            ages.append(shown - sent_at)
            if sequence == self.last:
                last_delay = shown - sent_at
        return ages, last_delay


async def _offer(
    pusher: HelperProcess, first: int, rate: int, milliseconds: int
) -> _Offer:
    """Have the pusher send a paced run and return what it reports (after its last send)."""
    count = rate * milliseconds // 1000
    await pusher.send(f"go {first} {rate} {milliseconds}")
    answer = await pusher.read_line(milliseconds / 1000 * 4 + 60)
    words = answer.split()
    if len(words) != 5 or words[0] != "sent" or int(words[1]) != count:
        raise BenchError(f"the paced pusher answered {answer!r} for {count} events")
    header = (await pusher.read_line(STARTUP_TIMEOUT)).split()
    if len(header) != 2 or header[0] != "times":
        raise BenchError(f"the paced pusher sent {' '.join(header)!r}")
    lines = [await pusher.read_line(STARTUP_TIMEOUT) for _ in range(int(header[1]))]
    offsets: list[int] = []
    stamps: list[int] = []
    for line in lines:
        for pair in line.split():
            offset, stamp = pair.split(":")
            offsets.append(int(offset))
            stamps.append(int(stamp))
    if len(offsets) != int(words[4]) or not offsets or offsets[0] != 0:
        raise BenchError(f"{len(offsets)} batch times for {words[4]} batches")
    return _Offer(first, count, int(words[2]), int(words[3]), offsets, stamps)


@dataclass(slots=True)
class _Run:
    """One paced run, seen from both ends."""

    offer: _Offer
    cpu_ns: int
    wall_ns: int
    iterations: int
    ages_ns: list[int]
    last_delay_ns: int
    longest_callback_ns: int = 0
    longest_callback: str = ""
    over_20ms: int = 0
    peak_rss_growth_kib: int | None = None
    coalesced: int | None = None


async def _start_paced_pusher() -> tuple[HelperProcess, int]:
    """Start the paced pusher and return it with its port."""
    pusher = await HelperProcess.start(PACED_MODULE)
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
    except BaseException:
        await pusher.stop()
        raise
    if len(words) != 2 or words[0] != "port" or not words[1].isdigit():
        await pusher.stop()
        raise BenchError(f"unexpected first line from the pusher: {' '.join(words)!r}")
    return pusher, int(words[1])


class _PacedEntry:
    """An INDI entry connected to the paced pusher, in one bench hass."""

    def __init__(
        self,
        hass: HomeAssistant,
        pusher: HelperProcess,
        entry: MockConfigEntry,
        entity_ids: list[str],
        first: int,
    ) -> None:
        self.hass = hass
        self.pusher = pusher
        self.entry = entry
        self.entity_ids = entity_ids
        self.next_sequence = first

    @classmethod
    async def connect(
        cls, hass: HomeAssistant, pusher: HelperProcess, port: int, first: int = 1
    ) -> _PacedEntry:
        """Set up an INDI entry against the pusher; wait until the paced channels have a state."""
        entry = MockConfigEntry(
            domain=INTEGRATION_DOMAIN,
            title=f"INDI server 127.0.0.1:{port}",
            unique_id=f"indi:127.0.0.1:{port}",
            data={SOURCE_KIND_KEY: "indi", CONF_HOST: "127.0.0.1", CONF_PORT: port},
        )
        await _setup_entry(hass, entry)
        keys = [
            (
                paced_pusher.DEVICE,
                f"{paced_pusher.vector_name(channel)}.{paced_pusher.MEMBER}",
            )
            for channel in range(paced_pusher.CHANNELS)
        ]
        found: list[str] = []

        def ready() -> bool:
            entity_ids = _sensor_entity_ids(hass, entry, keys)
            if entity_ids is None or any(
                hass.states.get(entity_id) is None for entity_id in entity_ids
            ):
                return False
            found[:] = entity_ids
            return True

        await _wait_until(hass, ready, STARTUP_TIMEOUT, "the paced channels' states")
        return cls(hass, pusher, entry, found, first)

    async def run(self, rate: int, milliseconds: int) -> _Run:
        """Offer ``rate`` events/s for ``milliseconds``; wait until the last value is shown."""
        count = rate * milliseconds // 1000
        first = self.next_sequence
        self.next_sequence += count
        last = first + count - 1
        shown = _StateLog(self.hass, self.entity_ids)
        hub = self.entry.runtime_data
        coalesced_before = getattr(hub, "coalesced_writes", None)
        try:
            await settle(self.hass)
            shown.arm(self.entity_ids[paced_pusher.channel_of(last)], last)
            baseline_rss = _status_kib("VmRSS")
            peak_known = _reset_peak_rss()
            with LoopProbe() as loop_probe, LoopIterations() as iterations:
                begin_wall, begin = wall_ns(), cpu_ns()
                offer = await _offer(self.pusher, first, rate, milliseconds)
                end = await shown.wait(STARTUP_TIMEOUT + count / 1000)
                elapsed = wall_ns() - begin_wall
            peak = _status_kib("VmHWM") if peak_known else None
        finally:
            shown.close()
        ages, last_delay = offer.ages(shown.log)
        coalesced_after = getattr(hub, "coalesced_writes", None)
        return _Run(
            offer,
            end - begin,
            elapsed,
            iterations.count,
            ages,
            last_delay,
            loop_probe.longest_ns,
            loop_probe.longest,
            loop_probe.over_threshold,
            None if peak is None or baseline_rss is None else peak - baseline_rss,
            coalesced_after - coalesced_before
            if isinstance(coalesced_before, int) and isinstance(coalesced_after, int)
            else None,
        )


class _MinimalChannel(SensorEntity):
    """A paced channel as a minimal integration shows it: a plain pushed sensor, as the floor's."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_state_class = SensorStateClass.MEASUREMENT

    def __init__(self, channel: int) -> None:
        """Channel ``channel`` of the paced pusher."""
        self._attr_name = f"Minimal reader {channel}"
        self._attr_unique_id = f"bench-minimal-reader-{channel}"
        self._attr_device_info = DeviceInfo(
            identifiers={(FLOOR_DOMAIN, "minimal-reader")}, name="Minimal reader"
        )
        self._attr_native_value = 0


async def _reference_runs(
    hass: HomeAssistant,
    pusher: HelperProcess,
    port: int,
    rate: int,
    milliseconds: int,
    repeats: int,
) -> tuple[list[_Run], int]:
    """Read the same paced stream with a minimal asyncio client in the same hass.

    One connection, ``reader.read`` of 64 KiB, a regex for the values, ``async_write_ha_state`` of
    a plain sensor for each (the floor's write), seen by the same ``state_changed`` log as ours:
    what the latency and the CPU of the stream are without the integration. It closes before the
    INDI entry connects (the pusher serves whoever asked for the properties last). Returns the runs
    and the next free sequence number.
    """
    channels = [_MinimalChannel(channel) for channel in range(paced_pusher.CHANNELS)]
    await setup_plain_sensors(hass, list(channels))
    entity_ids = [channel.entity_id or "" for channel in channels]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    shown = _StateLog(hass, entity_ids)

    async def read() -> None:
        pending = b""
        while data := await reader.read(65536):
            pending += data
            cut = pending.rfind(b"\n") + 1
            for match in _SET_VALUE.finditer(pending, 0, cut):
                sequence = int(match.group(1))
                channel = channels[paced_pusher.channel_of(sequence)]
                channel._attr_native_value = sequence  # noqa: SLF001
                channel.async_write_ha_state()
            pending = pending[cut:]

    task = hass.async_create_background_task(read(), "bench minimal INDI reader")
    runs: list[_Run] = []
    first = 1
    try:
        writer.write(b'<getProperties version="1.7"/>\n')
        await writer.drain()
        for index in range(repeats + 1):  # as many runs as ours, after a warm-up
            length = min(WARMUP_MS, milliseconds) if index == 0 else milliseconds
            count = rate * length // 1000
            last = first + count - 1
            await settle(hass)
            shown.arm(entity_ids[paced_pusher.channel_of(last)], last)
            with LoopIterations() as iterations:
                begin_wall, begin = wall_ns(), cpu_ns()
                offer = await _offer(pusher, first, rate, length)
                end = await shown.wait(STARTUP_TIMEOUT + count / 1000)
                elapsed = wall_ns() - begin_wall
            first += count
            if index > 0:
                ages, last_delay = offer.ages(shown.log)
                runs.append(
                    _Run(
                        offer, end - begin, elapsed, iterations.count, ages, last_delay
                    )
                )
    finally:
        shown.close()
        writer.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
    return runs, first


async def _paced_rows(
    rate: int, milliseconds: int, runs: int, *, reference: bool
) -> tuple[list[_Run], list[_Run], float]:
    """Run a warm-up and ``runs`` paced runs (after the minimal reader's, if asked).

    Returns the runs, the reference runs and the loop probe's overhead (ns per callback).
    """
    pusher, port = await _start_paced_pusher()
    try:
        with mock_config_flow(FLOOR_DOMAIN, ProbeConfigFlow):
            async with bench_hass() as hass:
                overhead = await probe_overhead_ns()
                reference_runs: list[_Run] = []
                first = 1
                if reference:
                    reference_runs, first = await _reference_runs(
                        hass, pusher, port, rate, milliseconds, runs
                    )
                paced = await _PacedEntry.connect(hass, pusher, port, first)
                await paced.run(rate, min(WARMUP_MS, milliseconds))
                measured = [await paced.run(rate, milliseconds) for _ in range(runs)]
                return measured, reference_runs, overhead
    finally:
        await pusher.stop()


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}" if ns >= 1e6 else f"{ns / 1e6:.2f}"


def _per_event(runs: Sequence[_Run]) -> tuple[float, float]:
    """Return the median CPU µs and loop iterations per event sent."""
    return (
        statistics.median(run.cpu_ns / run.offer.sent / 1000 for run in runs),
        statistics.median(run.iterations / run.offer.sent for run in runs),
    )


def _pooled_ages(runs: Sequence[_Run]) -> list[int]:
    ages = sorted(age for run in runs for age in run.ages_ns)
    if not ages:
        raise BenchError("no value was shown")
    return ages


@row("latency-1k", "INDI: push -> state latency at 1,000 events/s", source="indi")
async def latency_1k(settings: Settings) -> Measurement:
    """Latency of every value (send -> state write) at 1,000 events/s; figure: CPU per event."""
    milliseconds = max(500, settings.events)  # 1 event per ms
    runs, reference, overhead = await _paced_rows(
        1000, milliseconds, settings.repeats, reference=True
    )
    ages = _pooled_ages(runs)
    reference_ages = _pooled_ages(reference)
    sent = sum(run.offer.sent for run in runs)
    p99s = [_nearest_rank(sorted(run.ages_ns), 99) for run in runs if run.ages_ns]
    cpu, iterations = _per_event(runs)
    reference_cpu, reference_iterations = _per_event(reference)
    worst = max(runs, key=lambda run: run.longest_callback_ns)
    return Measurement(
        [run.cpu_ns / run.offer.sent / 1000 for run in runs],
        [
            f"latency p50 {_ms(_nearest_rank(ages, 50))} ms, p99 "
            f"{_ms(_nearest_rank(ages, 99))} ms, max {_ms(ages[-1])} ms (target p99 ≤ 5 ms; "
            f"p99 per run {_ms(min(p99s))}–{_ms(max(p99s))})",
            f"values shown {len(ages)}/{sent}",
            f"{iterations:.1f} loop iterations per event",
            f"a minimal asyncio reader in the same hass (regex + async_write_ha_state of a plain sensor): p50 "
            f"{_ms(_nearest_rank(reference_ages, 50))} ms, p99 "
            f"{_ms(_nearest_rank(reference_ages, 99))} ms, {reference_cpu:.0f} µs CPU and "
            f"{reference_iterations:.1f} iterations per event (ours ×{cpu / reference_cpu:.1f} CPU)",
            f"{len(runs)} runs × {milliseconds / 1000:g} s, {paced_pusher.CHANNELS} channels, "
            f"batches of 1 (largest {max(run.offer.largest_batch() for run in runs)}: the pusher "
            f"was late by up to {_ms(max(run.offer.behind_ns for run in runs))} ms)",
            f"longest callback {_ms(worst.longest_callback_ns)} ms ({worst.longest_callback})",
            "figure: CPU µs per event at this rate, wake-ups included (loop probe "
            f"+{overhead / 1000:.2f} µs per callback)",
        ],
    )


def _overload_notes(rate: int, runs: list[_Run], overhead: float) -> list[str]:
    ages = _pooled_ages(runs)
    sent = sum(run.offer.sent for run in runs)
    worst = max(runs, key=lambda run: run.longest_callback_ns)
    delays = [run.last_delay_ns for run in runs]
    growth = [run.peak_rss_growth_kib for run in runs]
    known_growth = [value for value in growth if value is not None]
    achieved = [run.offer.sent / (run.offer.elapsed_ns / 1e9) for run in runs]
    _cpu, iterations = _per_event(runs)
    notes = [
        f"age of the shown value max {_ms(ages[-1])} ms, p99 {_ms(_nearest_rank(ages, 99))} ms, "
        f"p50 {_ms(_nearest_rank(ages, 50))} ms (target ≤ 250 ms)",
        f"last send -> shown {_ms(statistics.median(delays))} ms (max {_ms(max(delays))})",
        f"states {len(ages)}/{sent} ({1 - len(ages) / sent:.0%} coalesced)",
        "peak RSS growth per run "
        + ", ".join(f"{value}" for value in known_growth)
        + " KiB"
        if known_growth
        else "peak RSS n/a",
        f"longest callback {_ms(worst.longest_callback_ns)} ms ({worst.longest_callback}); "
        f"callbacks > 20 ms: {sum(run.over_20ms for run in runs)}",
        f"loop iterations {statistics.median(run.iterations / run.wall_ns * 1e9 for run in runs):.0f}/s "
        f"({iterations:.3f} per event); CPU busy "
        f"{statistics.median(run.cpu_ns / run.wall_ns for run in runs):.0%} of the run's wall time",
        f"offered {rate / 1000:g}k/s: the pusher kept {min(achieved) / 1000:.1f}k/s or more "
        f"(late by up to {_ms(max(run.offer.behind_ns for run in runs))} ms)",
        f"{len(runs)} runs × {runs[0].offer.sent} events, batches of "
        f"~{runs[0].offer.sent // len(runs[0].offer.offsets)} (largest "
        f"{max(run.offer.largest_batch() for run in runs)})",
        f"figure: CPU µs per event sent (loop probe +{overhead / 1000:.2f} µs per callback)",
    ]
    coalesced = [run.coalesced for run in runs if run.coalesced is not None]
    if coalesced:
        notes.insert(3, f"hub coalesced_writes +{sum(coalesced)}")
    return notes


OVERLOAD_MS: Final = 3000
QUICK_OVERLOAD_MS: Final = 1000
OVERLOAD_RUNS: Final = 3


async def _overload(settings: Settings, rate: int) -> Measurement:
    milliseconds = QUICK_OVERLOAD_MS if settings.quick else OVERLOAD_MS
    runs, _reference, overhead = await _paced_rows(
        rate, milliseconds, min(settings.repeats, OVERLOAD_RUNS), reference=False
    )
    return Measurement(
        [run.cpu_ns / run.offer.sent / 1000 for run in runs],
        _overload_notes(rate, runs, overhead),
    )


@row("overload-10k", "INDI: 10,000 events/s offered (overload)", source="indi")
async def overload_10k(settings: Settings) -> Measurement:
    """Measure the age of the shown value, memory and the longest callback at 10,000/s."""
    return await _overload(settings, 10_000)


@row("overload-20k", "INDI: 20,000 events/s offered (overload)", source="indi")
async def overload_20k(settings: Settings) -> Measurement:
    """Measure the age of the shown value, memory and the longest callback at 20,000/s."""
    return await _overload(settings, 20_000)


# --------------------------------------------------------------------------------------------------
# idle: loop wake-ups

IDLE_WINDOW_S: Final = 3.0
QUICK_IDLE_WINDOW_S: Final = 1.0
IDLE_BASELINE_WINDOWS: Final = 2


async def _loop_iterations(seconds: float) -> tuple[int, Counter[str]]:
    """Count the running loop's iterations during ``seconds`` (and the callbacks run, by name)."""
    with LoopIterations() as iterations, LoopProbe(tally=True) as probe:
        await asyncio.sleep(seconds)
    assert probe.tally is not None
    return iterations.count, probe.tally


@row(
    "idle",
    "idle: loop wake-ups per second with a connected INDI entry",
    source="indi",
)
async def idle(settings: Settings) -> Measurement:
    """Loop iterations per second with an idle connected INDI entry, minus the same hass without."""
    window = QUICK_IDLE_WINDOW_S if settings.quick else IDLE_WINDOW_S
    baseline: list[float] = []
    loaded: list[float] = []
    base_tally: Counter[str] = Counter()
    with_tally: Counter[str] = Counter()
    pusher, port = await _start_paced_pusher()
    try:
        async with bench_hass() as hass:
            for _ in range(IDLE_BASELINE_WINDOWS):
                await settle(hass)
                count, tally = await _loop_iterations(window)
                baseline.append(count / window)
                base_tally.update(tally)
            await _PacedEntry.connect(hass, pusher, port)
            for _ in range(settings.repeats):
                await settle(hass)
                count, tally = await _loop_iterations(window)
                loaded.append(count / window)
                with_tally.update(tally)
    finally:
        await pusher.stop()
    reference = statistics.median(baseline)
    extra = {
        name: count - base_tally.get(name, 0) * settings.repeats / IDLE_BASELINE_WINDOWS
        for name, count in with_tally.items()
    }
    extra_names = sorted(
        ((count, name) for name, count in extra.items() if count >= 1), reverse=True
    )[:3]
    return Measurement(
        [rate - reference for rate in loaded],
        [
            f"figure: extra loop iterations/s (not µs); with the entry "
            f"{statistics.median(loaded):.2f}/s, without {reference:.2f}/s (target +0)",
            f"{settings.repeats} windows × {window:g} s after setup, {IDLE_BASELINE_WINDOWS} before",
            "callbacks only with the entry: "
            + (
                ", ".join(
                    f"{name} ×{count:.0f}"
                    + (
                        " (Home Assistant's delayed storage write)"
                        if name.startswith("Store.")
                        else ""
                    )
                    for count, name in extra_names
                )
                if extra_names
                else "none"
            ),
            "the INDI liveness probe (after 30 s of silence) is outside these windows",
        ],
    )


# --------------------------------------------------------------------------------------------------
# scale-10k: setting up ~10,000 entities against plain sensors

SCALE_DEVICES: Final = 900
QUICK_SCALE_DEVICES: Final = 90
SCALE_CHANNELS: Final = 10
SCALE_RUNS: Final = 3
PLAIN_DOMAIN: Final = "bench_plain"
SCALE_TIMEOUT: Final = 300.0


class PlainConfigFlow(ConfigFlow):
    """The plain integration's config flow: only there because setting up an entry looks for it."""

    VERSION = 1


class PlainSensor(SensorEntity):
    """A plain pushed temperature on a device, as a well-behaved integration adds it."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_device_class = SensorDeviceClass.TEMPERATURE
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_native_unit_of_measurement = UnitOfTemperature.CELSIUS

    def __init__(self, device: int, index: int) -> None:
        """Channel ``index`` of device ``device``."""
        self._attr_name = f"Channel {index}"
        self._attr_unique_id = f"plain-{device}-{index}"
        self._attr_device_info = DeviceInfo(
            identifiers={(PLAIN_DOMAIN, f"device-{device}")},
            name=f"Device {device}",
            manufacturer="Benchmark",
            model="Plain",
        )
        self._attr_native_value = 20.0


@dataclass(slots=True)
class _Setup:
    """One setup pass: entities shown, CPU and wall time, Python memory kept (tracemalloc)."""

    entities: int
    cpu_ns: int
    wall_ns: int
    kept_bytes: int | None


def _plain_layout(total: int, devices: int) -> list[tuple[int, int]]:
    """Spread ``total`` entities over ``devices`` devices (and device 0 for what is left)."""
    per_device, left = divmod(total, devices)
    layout = [(0, index) for index in range(left)]
    layout.extend(
        (device, index)
        for device in range(1, devices + 1)
        for index in range(per_device)
    )
    return layout


async def _states_reach(hass: HomeAssistant, count: int) -> None:
    await _wait_until(
        hass,
        lambda: hass.states.async_entity_ids_count() >= count,
        SCALE_TIMEOUT,
        f"{count} states",
    )


async def _setup_plain(
    hass: HomeAssistant, layout: list[tuple[int, int]], *, trace: bool = False
) -> _Setup:
    """Set up the plain integration's entry adding ``len(layout)`` sensors; time it until shown."""

    async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, [Platform.SENSOR])
        return True

    async def async_setup_platform_entry(
        hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
    ) -> None:
        async_add_entities(PlainSensor(device, index) for device, index in layout)

    mock_integration(
        hass, MockModule(PLAIN_DOMAIN, async_setup_entry=async_setup_entry)
    )
    mock_platform(hass, f"{PLAIN_DOMAIN}.config_flow")
    mock_platform(
        hass,
        f"{PLAIN_DOMAIN}.{Platform.SENSOR}",
        MockPlatform(async_setup_entry=async_setup_platform_entry),
    )
    entry = MockConfigEntry(domain=PLAIN_DOMAIN, title="Plain sensors")
    entry.add_to_hass(hass)
    await settle(hass)
    before = hass.states.async_entity_ids_count()
    if trace:
        tracemalloc.start()
    try:
        begin_wall, begin = wall_ns(), cpu_ns()
        if not await hass.config_entries.async_setup(entry.entry_id):
            raise BenchError("the plain entry did not load")
        await _states_reach(hass, before + len(layout))
        end, end_wall = cpu_ns(), wall_ns()
        kept = _traced_after_gc() if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    return _Setup(
        hass.states.async_entity_ids_count() - before,
        end - begin,
        end_wall - begin_wall,
        kept,
    )


def _traced_after_gc() -> int:
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    return current


def _scale_device_events(devices: int) -> Iterator[list[Event]]:
    """Yield, device by device, what the in-bench source says of it: the device and its channels."""
    from custom_components.instrument_hub.events import (  # noqa: PLC0415
        ChannelDefined,
        ChannelKind,
        DeviceFound,
    )

    for device in range(1, devices + 1):
        key = f"device-{device}"
        events: list[Event] = [
            DeviceFound(
                key, f"Device {device}", manufacturer="Benchmark", model="In-bench"
            )
        ]
        events.extend(
            ChannelDefined(
                key,
                f"c{index}",
                ChannelKind.NUMERIC,
                writable=False,
                label=f"Channel {index}",
                unit=UnitOfTemperature.CELSIUS,
                device_class_hint="temperature",
                value=20.0,
            )
            for index in range(SCALE_CHANNELS)
        )
        yield events


async def _setup_ours(
    hass: HomeAssistant,
    devices: int,
    expected: int | None,
    *,
    trace: bool = False,
    at_start: bool = False,
) -> _Setup:
    """Set up an in-bench entry defining ``devices`` devices; time it until every state is shown.

    By default the definitions come after the entry is set up, one device per loop pass, as they
    do from a server answering getProperties over a socket (each channel is then announced to its
    platform on its own). ``at_start``: the source delivers them all when it starts, before the
    platforms are set up (each platform adds what exists in one call). ``expected`` None (the
    warm-up): wait until Home Assistant is idle and count what was shown.
    """
    from custom_components.instrument_hub.events import LinkUp  # noqa: PLC0415

    feed = BenchFeed()
    with registered_bench_kind([feed]):
        entry = _bench_entry("scale")
        entry.add_to_hass(hass)
        await settle(hass)
        before = hass.states.async_entity_ids_count()
        if trace:
            tracemalloc.start()
        try:
            begin_wall, begin = wall_ns(), cpu_ns()
            feed.initial = [LinkUp()]
            if at_start:
                for events in _scale_device_events(devices):
                    feed.initial.extend(events)
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError(f"the in-bench entry did not load: {entry.state}")
            feed.initial = []
            if not at_start:
                for events in _scale_device_events(devices):
                    feed.push(events)
                    await asyncio.sleep(0)
            if expected is None:
                await hass.async_block_till_done()
            else:
                await _states_reach(hass, before + expected)
            end, end_wall = cpu_ns(), wall_ns()
            kept = _traced_after_gc() if trace else None
        finally:
            if trace:
                tracemalloc.stop()
        shown = hass.states.async_entity_ids_count() - before
        # Unloaded while the kind is still registered (not timed).
        await hass.config_entries.async_unload(entry.entry_id)
        return _Setup(shown, end - begin, end_wall - begin_wall, kept)


async def _in_fresh_hass(work: Callable[[HomeAssistant], Any]) -> Any:
    """Run ``work(hass)`` in a new bench hass (empty registries), the plain flow registered."""
    with mock_config_flow(PLAIN_DOMAIN, PlainConfigFlow):
        async with bench_hass() as hass:
            return await work(hass)


@row("scale-10k", "setup of ~10,000 entities vs plain sensors", source="core")
async def scale_10k(settings: Settings) -> Measurement:
    """CPU per entity of setting up 900 devices × 10 channels, against as many plain sensors."""
    devices = QUICK_SCALE_DEVICES if settings.quick else SCALE_DEVICES
    runs = min(settings.repeats, SCALE_RUNS)
    warm = await _in_fresh_hass(lambda hass: _setup_ours(hass, devices, None))
    total: int = warm.entities
    if total < devices * SCALE_CHANNELS:
        raise BenchError(f"only {total} states for {devices * SCALE_CHANNELS} channels")
    layout = _plain_layout(total, devices)
    ours: list[_Setup] = []
    plain: list[_Setup] = []
    early: list[_Setup] = []
    for _ in range(runs):
        ours.append(
            await _in_fresh_hass(lambda hass: _setup_ours(hass, devices, total))
        )
        plain.append(await _in_fresh_hass(lambda hass: _setup_plain(hass, layout)))
        early.append(
            await _in_fresh_hass(
                lambda hass: _setup_ours(hass, devices, total, at_start=True)
            )
        )
    ours_memory = await _in_fresh_hass(
        lambda hass: _setup_ours(hass, devices, total, trace=True)
    )
    plain_memory = await _in_fresh_hass(
        lambda hass: _setup_plain(hass, layout, trace=True)
    )
    ours_cpu = statistics.median(setup.cpu_ns for setup in ours) / total
    plain_cpu = statistics.median(setup.cpu_ns for setup in plain) / total
    early_cpu = statistics.median(setup.cpu_ns for setup in early) / total
    ours_wall = statistics.median(setup.wall_ns for setup in ours)
    plain_wall = statistics.median(setup.wall_ns for setup in plain)
    early_wall = statistics.median(setup.wall_ns for setup in early)
    notes = [
        f"{total} entities: {devices} devices × {SCALE_CHANNELS} sensors + {devices} Message "
        f"events + {total - devices * (SCALE_CHANNELS + 1)} of the endpoint; plain: "
        f"{total} sensors on {devices + 1} devices, one async_add_entities",
        f"CPU ours/plain ×{ours_cpu / plain_cpu:.2f} ({ours_cpu / 1000:.0f} vs "
        f"{plain_cpu / 1000:.0f} µs per entity)",
        f"wall ours/plain ×{ours_wall / plain_wall:.2f} ({ours_wall / 1e9:.2f} s vs "
        f"{plain_wall / 1e9:.2f} s)",
    ]
    if ours_memory.kept_bytes is not None and plain_memory.kept_bytes is not None:
        ours_kib = ours_memory.kept_bytes / total / 1024
        plain_kib = plain_memory.kept_bytes / total / 1024
        notes.append(
            f"memory ours/plain ×{ours_kib / plain_kib:.2f} ({ours_kib:.1f} vs "
            f"{plain_kib:.1f} KiB per entity; tracemalloc: Python heap kept after setup, "
            "separate pass)"
        )
    notes.extend(
        [
            f"ours defined one device per loop pass after setup (as from a socket); defined "
            f"before the platforms instead: CPU ×{early_cpu / plain_cpu:.2f}, wall "
            f"×{early_wall / plain_wall:.2f} of plain",
            f"targets ≤ 1.2×; {runs} runs of each; figure: our CPU µs per entity",
        ]
    )
    return Measurement([setup.cpu_ns / total / 1000 for setup in ours], notes)
