"""hololinked rows: SSE parsing alone, and push -> state at 100 events/s per event stream.

Parser: a seeded stream of data points and statistics, one frame per chunk (tornado flushes each
push on its own), through ``SseParser.feed`` and ``decode_payload`` (what every pushed event costs
before it is a reading); and the same stream in 4 KiB reads (``parse-4k``), as a busy stream's reads
reach the parser. No Home Assistant runs; the per-event CPU is divided by the floor.

End to end: the integration is set up as a user's entry is (a config entry of kind "hololinked"
through ``hass.config_entries``) against ``benchmarks.hololinked_pusher`` in a separate process,
which serves hololinked's HTTP surface and pushes N data points and N statistics per round, each
stream at 100 events/s. The cost is this process's CPU from the round's request to the state write
of its last data point, divided by the 2N events; it includes what Home Assistant does while idle
between pushes (at this rate the pipeline is mostly waiting). The latency is, per data point, the
state write of its event entity minus the time the pusher wrote it (``time.time()`` in the payload,
one clock: same machine).

The minimal client (``plain``, ``plain-burst``): the same rounds, paced and as fast as sent, into a
bare aiohttp SSE reader that fires plain event entities and writes plain sensors on every event
(nothing coalesced): what a client without the integration's machinery pays.

Source: the same pusher, as fast as it sends, into the source alone (an aiohttp session, no Home
Assistant; its events go to a sink that only counts them): HTTP, SSE framing, JSON, the mapping to
readings. The integration's own share of the end-to-end figure, per pushed event.

SSE readers, ours and the peer's: the parser row's stream arriving chunk by chunk (one per loop
iteration) in an aiohttp ``StreamReader``, as a response body does, read by (a) ours:
``iter_chunked`` (the source's bounded reads) -> ``SseParser.feed`` -> ``decode_payload`` and
(b) aiohttp-sse-client 0.2.1's
``EventSource`` (its line iteration over the same reader and its field parsing), each event's data
then ``json.loads``-ed. Per event.

Loop lag: the source alone against the pusher writing each of ``FLOODS`` into the data point
stream (real data points back to back, random bytes, a 2 MiB line, an event of 20,000 lines, near
empty events); the figure is the longest event-loop callback of the integration's code.

Idle: the source connected to a Thing that pushes nothing: wake-ups and CPU per second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import functools
import gc
import json
import statistics
import time
from typing import Any, Final
from unittest.mock import patch

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.resolver import ThreadedResolver
from homeassistant.components.event import EventEntity
from homeassistant.components.sensor import SensorEntity, SensorStateClass
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
import orjson
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_config_flow,
)

from .floor import (
    DOMAIN as FLOOR_DOMAIN,
    ProbeConfigFlow,
    setup_plain_entities,
    tight_write_rounds,
)
from .harness import (
    WARMUP_ROUNDS,
    HelperProcess,
    StateWrites,
    bench_hass,
    compared_note,
    cpu_ns,
    numeric_state_is,
    remember_median,
    remembered_median,
    round_count,
    settle,
    wait_for_states,
)
from .hololinked_stream import (
    AVG_ENTITY,
    DATA_POINT,
    DATA_POINT_ENTITY,
    ENERGY_ENTITY,
    FLOODS,
    PATHS,
    PULSES_ENTITY,
    STATISTICS,
    THING_ID,
    parser_stream,
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

INTEGRATION_DOMAIN: Final = "instrument_hub"
PUSHER_MODULE: Final = "benchmarks.hololinked_pusher"
RATE: Final = 100.0
"""Events per second per event stream (the issue's figure)."""
MAX_ROUND_EVENTS: Final = 500
"""Data points per round at most (5 s at 100/s): the row's time stays bounded."""
BURST_RATE: Final = 1e9
"""Effectively unpaced: the pusher writes the frames back to back."""
STARTUP_TIMEOUT: Final = 30.0
PARSER_EVENTS_PER_EVENT: Final = 10
READ_BYTES: Final = 4096
"""The source's FEED_BYTES: the slices a busy stream's reads are parsed in."""


@row("hololinked-parse", "hololinked: SSE split + JSON decode", source="hololinked")
async def hololinked_parser(settings: Settings) -> Measurement:
    """CPU per event of SseParser.feed (one frame per chunk) and decode_payload."""
    frames = parser_stream(settings.events * PARSER_EVENTS_PER_EVENT)
    return _parse_row(settings, frames, len(frames))


@row(
    "hololinked-parse-4k",
    "hololinked: SSE split + JSON decode (4 KiB reads)",
    source="hololinked",
)
async def hololinked_parser_4k(settings: Settings) -> Measurement:
    """Measure the same stream in 4 KiB reads, as a busy stream's reads reach the parser."""
    frames = parser_stream(settings.events * PARSER_EVENTS_PER_EVENT)
    stream = b"".join(frames)
    reads = [stream[i : i + READ_BYTES] for i in range(0, len(stream), READ_BYTES)]
    return _parse_row(settings, reads, len(frames))


def _parse_row(settings: Settings, chunks: list[bytes], expected: int) -> Measurement:
    """CPU per event of feeding ``chunks`` to SseParser and decoding every event's JSON."""
    # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
    from custom_components.instrument_hub.sources.hololinked.protocol import (  # noqa: PLC0415
        SseParser,
        decode_payload,
    )

    size = sum(len(chunk) for chunk in chunks)
    samples: list[float] = []
    for repeat in range(-1, settings.repeats):
        parser = SseParser()
        decoded = 0
        begin = cpu_ns()
        for chunk in chunks:
            for event in parser.feed(chunk):
                decode_payload(event.data)
                decoded += 1
        end = cpu_ns()
        if decoded != expected:
            raise BenchError(f"{decoded} events of {expected} decoded")
        if repeat >= 0:
            samples.append((end - begin) / decoded / 1000)
    per_event_s = statistics.median(samples) / 1e6
    return Measurement(
        samples,
        [
            f"{1 / per_event_s / 1000:.0f}k ev/s",
            f"{size / expected / per_event_s / 1e6:.1f} MB/s",
            f"{expected} events in {len(chunks)} reads, {size / 1e6:.1f} MB",
        ],
    )


async def _start_pusher() -> tuple[HelperProcess, int]:
    pusher = await HelperProcess.start(PUSHER_MODULE)
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
    except BaseException:
        await pusher.stop()
        raise
    if len(words) != 2 or words[0] != "port" or not words[1].isdigit():
        await pusher.stop()
        raise BenchError(f"unexpected first line from the pusher: {' '.join(words)!r}")
    return pusher, int(words[1])


@row(
    "hololinked-e2e",
    "hololinked: push -> state (2 streams, 100 ev/s each)",
    source="hololinked",
)
async def hololinked_end_to_end(settings: Settings) -> Measurement:
    """CPU per pushed event at 100 events/s per stream (idle time included); latency per data point."""
    measured = await _pipeline(settings, RATE, min(settings.events, MAX_ROUND_EVENTS))
    remember_median("hololinked-e2e", measured.samples_us)
    return measured


@row(
    "hololinked-fire",
    "hololinked: an event entity's fire alone (plain entity, tight loop)",
    source="hololinked",
)
async def hololinked_event_fire(settings: Settings) -> Measurement:
    """CPU per fire of a plain event entity with a data point's payload, as the floor writes a sensor.

    Every pushed event fires its event entity (one state write that is never coalesced): this is
    that write alone, for the burst row to set its cost against.
    """
    event = _PlainEvent("data_point_event")

    def prepare(count: int) -> Callable[[], None]:
        payloads = [
            {"timestamp": 1.7e9 + index / 1000, "energy": index * 1e-6}
            for index in range(count)
        ]

        def run() -> None:
            for payload in payloads:
                event.fire(payload)

        return run

    with mock_config_flow(FLOOR_DOMAIN, ProbeConfigFlow):
        async with bench_hass() as hass:
            await setup_plain_entities(hass, {Platform.EVENT: [event]})
            if event.entity_id is None:
                raise BenchError("the plain event entity was not added")
            samples = await tight_write_rounds(hass, event.entity_id, settings, prepare)
    remember_median("hololinked-fire", samples)
    return Measurement(
        samples, ["1 event entity, 1 listener; payload {timestamp, energy}"]
    )


@row(
    "hololinked-burst",
    "hololinked: push -> state (2 streams, as fast as sent)",
    source="hololinked",
)
async def hololinked_burst(settings: Settings) -> Measurement:
    """CPU per pushed event when the Thing pushes as fast as it can: the pipeline's own cost."""
    measured = await _pipeline(settings, BURST_RATE, settings.events)
    remember_median("hololinked-burst", measured.samples_us)
    if (fire := remembered_median("hololinked-fire")) is not None:
        ours = statistics.median(measured.samples_us)
        measured.notes.append(
            f"×{ours / fire:.2f} of one event entity fire alone ({fire:.1f} µs, "
            f"hololinked-fire): {ours - fire:.1f} µs an event besides that write"
        )
    return measured


async def _paced_rounds(
    hass: HomeAssistant,
    pusher: HelperProcess,
    writes: StateWrites,
    markers: tuple[str, str],
    *,
    rounds: int,
    count: int,
    rate: float,
    on_round: Callable[[int], None] | None = None,
) -> tuple[list[float], list[int]]:
    """Run rounds of ``count`` data points and statistics at ``rate`` per stream and per second.

    A round ends when both ``markers`` (the entities of the energy and of the average) show the
    round's marker, -(round + 1): the last data point and the last statistics. The two streams are
    separate connections, and either may lag the other. The first WARMUP_ROUNDS are not measured.
    Returns per measured round the CPU µs per pushed event and the states written.
    """
    samples: list[float] = []
    written: list[int] = []
    for index in range(rounds):
        await settle(hass)
        if on_round is not None:
            on_round(index)
        marked = numeric_state_is(-float(index + 1))
        writes.arm(markers[0], marked, (markers[1], marked))
        begin = cpu_ns()
        await pusher.send(f"go {index} {count} {rate}")
        end = await writes.wait(30 + count / rate)
        answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
        if answer != ["sent", str(index), str(count)]:
            raise BenchError(f"the pusher answered {' '.join(answer)!r}")
        if index >= WARMUP_ROUNDS:
            samples.append((end - begin) / (2 * count) / 1000)
            written.append(writes.count)
    return samples, written


async def _pipeline(settings: Settings, rate: float, count: int) -> Measurement:
    """Run rounds of ``count`` data points and statistics at ``rate`` per stream and per second."""
    rounds = round_count(settings)
    latencies_ms: list[float] = []
    pusher, port = await _start_pusher()
    # Home Assistant's shared HTTP session resolves through zeroconf, which this bare instance
    # does not run: the plain resolver of aiohttp instead (as the test harness does).
    plain = ThreadedResolver()
    plain.real_close = plain.close  # type: ignore[attr-defined]  # what Home Assistant closes
    resolver = patch(
        "homeassistant.helpers.aiohttp_client._async_make_resolver", return_value=plain
    )
    try:
        async with bench_hass() as hass:
            url = f"http://127.0.0.1:{port}/{THING_ID}"
            entry = MockConfigEntry(
                domain=INTEGRATION_DOMAIN,
                title=f"GentecMaestroEnergyMeter (127.0.0.1:{port})",
                unique_id=f"hololinked:127.0.0.1:{port}/{THING_ID}",
                data={"source_kind": "hololinked", "url": url, "thing_id": THING_ID},
            )
            entry.add_to_hass(hass)
            resolver.start()
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError(
                    f"the hololinked entry did not load ({entry.state}: {entry.reason})"
                )
            entity_ids = [ENERGY_ENTITY, PULSES_ENTITY, DATA_POINT_ENTITY]
            await wait_for_states(hass, entity_ids, STARTUP_TIMEOUT)
            writes = StateWrites(hass, entity_ids)
            measuring = False

            @callback
            def fired(event: Event[EventStateChangedData]) -> None:
                new = event.data["new_state"]
                if (
                    measuring
                    and new is not None
                    and event.data["entity_id"] == DATA_POINT_ENTITY
                ):
                    pushed = new.attributes.get("timestamp")
                    if isinstance(pushed, float):
                        latencies_ms.append((time.time() - pushed) * 1000)

            unsubscribe = hass.bus.async_listen("state_changed", fired)
            try:

                def on_round(index: int) -> None:
                    nonlocal measuring
                    measuring = index >= WARMUP_ROUNDS

                samples, written = await _paced_rounds(
                    hass,
                    pusher,
                    writes,
                    (ENERGY_ENTITY, AVG_ENTITY),
                    rounds=rounds,
                    count=count,
                    rate=rate,
                    on_round=on_round,
                )
            finally:
                unsubscribe()
                writes.close()
    finally:
        resolver.stop()
        await pusher.stop()
    latencies_ms.sort()
    if not latencies_ms:
        raise BenchError("no data point reached its event entity")
    p50 = latencies_ms[len(latencies_ms) // 2]
    p95 = latencies_ms[int(len(latencies_ms) * 0.95)]
    return Measurement(
        samples,
        [
            f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies_ms[-1]:.1f} ms",
            f"{count} data points + {count} statistics per round",
            f"event entity fired {len(latencies_ms)}/{count * settings.repeats}",
            f"{sum(written)} state writes",
        ],
    )


_PLAIN_DEVICE: Final = DeviceInfo(
    identifiers={(FLOOR_DOMAIN, "plain-meter")}, name="Plain meter"
)


class _PlainSensor(SensorEntity):
    """A pushed number as a minimal integration would show it."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_device_info = _PLAIN_DEVICE

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = f"bench-plain-meter-{name.lower()}"

    @callback
    def show(self, value: object) -> None:
        """Write ``value`` as the state."""
        self._attr_native_value = value  # type: ignore[assignment]
        self.async_write_ha_state()


class _PlainEvent(EventEntity):
    """A pushed event as a minimal integration would fire it (one event type, its payload)."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_device_info = _PLAIN_DEVICE

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = f"bench-plain-meter-{name}"
        self._attr_event_types = [name]

    @callback
    def fire(self, payload: dict[str, Any]) -> None:
        """Fire the event with ``payload`` as its attributes."""
        self._trigger_event(self.event_types[0], payload)
        self.async_write_ha_state()


class _PlainMeter:
    """What ours shows of the energy meter, written the minimal way: the same states per event.

    A data point fires its event entity and writes the energy; a statistics event fires its event
    entity and writes min, max, avg and the pulse count (Home Assistant skips the unchanged ones,
    as it does for ours).
    """

    def __init__(self) -> None:
        self.sensors = {
            field: _PlainSensor(field.capitalize())
            for field in ("energy", "min", "max", "avg", "pulse_count")
        }
        self.events = {name: _PlainEvent(name) for name in (DATA_POINT, STATISTICS)}

    def fields(self, stream: str) -> tuple[str, ...]:
        """Return the fields of ``stream`` that are shown as sensors."""
        return (
            ("energy",)
            if stream == DATA_POINT
            else ("min", "max", "avg", "pulse_count")
        )


async def _plain_stream(
    session: aiohttp.ClientSession,
    url: str,
    meter: _PlainMeter,
    stream: str,
    opened: asyncio.Event,
) -> None:
    """Read one SSE stream line by line; each ``data:`` line is shown as ours shows it."""
    event = meter.events[stream]
    shown = [(field, meter.sensors[field]) for field in meter.fields(stream)]
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
        opened.set()
        async for line in response.content:
            if line.startswith(b"data:"):
                payload = orjson.loads(line[5:])
                event.fire(payload)
                for field, sensor in shown:
                    sensor.show(payload[field])


@row(
    "hololinked-plain",
    "hololinked: push -> state, a minimal aiohttp SSE client (100 ev/s each)",
    source="hololinked",
)
async def hololinked_plain_client(settings: Settings) -> Measurement:
    """CPU per pushed event of the same paced rounds into a minimal client: what any client pays."""
    count = min(settings.events, MAX_ROUND_EVENTS)
    samples, written = await _plain_rounds(settings, count, RATE)
    return Measurement(
        samples,
        [
            f"{count} data points + {count} statistics per round",
            f"{sum(written)} state writes of energy, pulse count and the data point event "
            "(the entities hololinked-e2e counts)",
            "aiohttp line iteration + orjson; each event fires its event entity and writes its "
            "sensors (energy; min, max, avg, pulse count), as ours shows them; nothing else",
            *compared_note("hololinked-e2e", samples),
        ],
    )


@row(
    "hololinked-plain-burst",
    "hololinked: push -> state, a minimal aiohttp SSE client (as fast as sent)",
    source="hololinked",
)
async def hololinked_plain_burst(settings: Settings) -> Measurement:
    """CPU per pushed event of the burst rounds into the minimal client (it writes every value)."""
    count = settings.events
    samples, written = await _plain_rounds(settings, count, BURST_RATE)
    return Measurement(
        samples,
        [
            f"{count} data points + {count} statistics per round",
            f"{sum(written)} state writes of energy, pulse count and the data point event",
            "every event fires its event entity and writes all its sensors (nothing coalesced: "
            "more writes than ours)",
            *compared_note("hololinked-burst", samples),
        ],
    )


async def _plain_rounds(
    settings: Settings, count: int, rate: float
) -> tuple[list[float], list[int]]:
    """Run the pusher's rounds at ``rate`` into the minimal client; CPU µs per event, writes."""
    rounds = round_count(settings)
    meter = _PlainMeter()
    pusher, port = await _start_pusher()
    try:
        with mock_config_flow(FLOOR_DOMAIN, ProbeConfigFlow):
            async with bench_hass() as hass, aiohttp.ClientSession() as session:
                await setup_plain_entities(
                    hass,
                    {
                        Platform.SENSOR: list(meter.sensors.values()),
                        Platform.EVENT: list(meter.events.values()),
                    },
                )
                shown = [
                    entity.entity_id or ""
                    for entity in (
                        meter.sensors["energy"],
                        meter.sensors["pulse_count"],
                        meter.events[DATA_POINT],
                    )
                ]
                base = f"http://127.0.0.1:{port}/{THING_ID}"
                opened = [asyncio.Event(), asyncio.Event()]
                readers = [
                    asyncio.create_task(
                        _plain_stream(
                            session, f"{base}/{PATHS[stream]}", meter, stream, event
                        )
                    )
                    for stream, event in (
                        (DATA_POINT, opened[0]),
                        (STATISTICS, opened[1]),
                    )
                ]
                writes = StateWrites(hass, shown)
                try:
                    async with asyncio.timeout(STARTUP_TIMEOUT):
                        for event in opened:
                            await event.wait()
                    samples, written = await _paced_rounds(
                        hass,
                        pusher,
                        writes,
                        (shown[0], meter.sensors["avg"].entity_id or ""),
                        rounds=rounds,
                        count=count,
                        rate=rate,
                    )
                finally:
                    writes.close()
                    for reader in readers:
                        reader.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await pusher.stop()
    return samples, written


@contextlib.asynccontextmanager
async def _running_source(port: int, sink: CountingSink) -> AsyncIterator[Any]:
    """Yield the source alone, started against the pusher on its own aiohttp session."""
    from custom_components.instrument_hub.sources.hololinked import (  # noqa: PLC0415
        HololinkedSource,
    )
    from custom_components.instrument_hub.sources.hololinked.td import (  # noqa: PLC0415
        parse_thing_url,
    )

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=ThreadedResolver())
    ) as session:
        source = HololinkedSource(
            session, parse_thing_url(f"http://127.0.0.1:{port}/{THING_ID}")
        )
        await source.async_start(sink)
        try:
            yield source
        finally:
            await source.async_stop()


def _is_value(event: Any, marker: float) -> bool:
    return bool(event.value == marker)


class _BothMarked:
    """True once both streams' last events of a round (the same marker value) were emitted."""

    def __init__(self, marker: float) -> None:
        self.marker = marker
        self.seen: set[str] = set()

    def __call__(self, event: Any) -> bool:
        if event.value == self.marker:
            self.seen.add(event.channel_key)
        return len(self.seen) >= 2


@row(
    "hololinked-source",
    "hololinked: push -> source events (no-op sink, as fast as sent)",
    source="hololinked",
)
async def hololinked_source_only(settings: Settings) -> Measurement:
    """CPU per pushed event from the round's request to the source emitting both streams' last."""
    rounds = round_count(settings)
    count = settings.events
    samples: list[float] = []
    readings: list[float] = []
    pusher, port = await _start_pusher()
    sink = CountingSink()
    try:
        async with _running_source(port, sink):
            for index in range(rounds):
                gc.collect()
                sink.arm(_BothMarked(-float(index + 1)))
                begin = cpu_ns()
                await pusher.send(f"go {index} {count} {BURST_RATE}")
                end = await sink.wait(30 + count / 1000)
                answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                if answer != ["sent", str(index), str(count)]:
                    raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                if index >= WARMUP_ROUNDS:
                    samples.append((end - begin) / (2 * count) / 1000)
                    readings.append(sink.readings / (2 * count))
    except TimeoutError as err:
        raise BenchError("the round's last data point was never emitted") from err
    finally:
        await pusher.stop()
    return Measurement(
        samples,
        [
            f"{statistics.median(readings):.2f} readings per event",
            "integration's own share of hololinked-burst",
        ],
    )


class _FeedProtocol(BaseProtocol):
    """The protocol a bare StreamReader needs (nothing to pause: the bytes are in memory)."""

    @property
    def connected(self) -> bool:
        """Say the body is still coming (a reader waits for more instead of giving up)."""
        return True


def _response_reader() -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    return aiohttp.StreamReader(_FeedProtocol(loop), 2**16, loop=loop)


async def _deliver(reader: aiohttp.StreamReader, chunks: list[bytes]) -> None:
    """Feed the chunks one loop iteration apart (as a socket delivers them), then the end."""
    for chunk in chunks:
        reader.feed_data(chunk)
        await asyncio.sleep(0)
    reader.feed_eof()


async def _sse_round(chunks: list[bytes], read: Any) -> tuple[float, int]:
    """Return (CPU ns, events) of one reader over the chunks."""
    gc.collect()
    reader = _response_reader()
    begin = cpu_ns()
    feeding = asyncio.create_task(_deliver(reader, chunks))
    events = await read(reader, len(chunks))
    await feeding
    return cpu_ns() - begin, events


async def _ours(reader: aiohttp.StreamReader, _expected: int) -> int:
    from custom_components.instrument_hub.sources.hololinked import (  # noqa: PLC0415
        client,
    )
    from custom_components.instrument_hub.sources.hololinked.protocol import (  # noqa: PLC0415
        SseParser,
        decode_payload,
    )

    # The reads the source makes: bounded ones where it has them (older code read all at once).
    feed_bytes: int | None = getattr(client, "FEED_BYTES", None)
    reads = reader.iter_chunked(feed_bytes) if feed_bytes else reader.iter_any()
    parser = SseParser()
    events = 0
    async for chunk in reads:
        for event in parser.feed(chunk):
            decode_payload(event.data)
            events += 1
    return events


async def _aiohttp_sse_client(reader: aiohttp.StreamReader, expected: int) -> int:
    from aiohttp_sse_client.client import EventSource  # noqa: PLC0415

    source = EventSource("http://127.0.0.1/", session=object())
    source._response = _Response(reader)  # noqa: SLF001
    source._origin = "http://127.0.0.1"  # noqa: SLF001
    events = 0
    while events < expected:
        message = await source.__anext__()
        json.loads(message.data)
        events += 1
    return events


class _Response:
    """What EventSource reads of a response: its status and its body."""

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self.status = 200
        self.content = content


async def _sse_row(settings: Settings, read: Any) -> Measurement:
    chunks = parser_stream(settings.events * PARSER_EVENTS_PER_EVENT)
    samples: list[float] = []
    for repeat in range(-1, settings.repeats):
        elapsed, events = await _sse_round(chunks, read)
        if events != len(chunks):
            raise BenchError(f"{events} events of {len(chunks)}")
        if repeat >= 0:
            samples.append(elapsed / events / 1000)
    return Measurement(
        samples, [f"{len(chunks)} events, one chunk each, through a StreamReader"]
    )


@row(
    "hololinked-sse-ours",
    "hololinked: SSE reader, ours (StreamReader reads + SseParser + JSON)",
    source="hololinked",
)
async def hololinked_sse_ours(settings: Settings) -> Measurement:
    """CPU per event of our reader on a response body arriving chunk by chunk."""
    return await _sse_row(settings, _ours)


@row(
    "hololinked-sse-peer",
    "aiohttp-sse-client 0.2.1: SSE reader (its line iteration + fields + json.loads)",
    source="hololinked",
)
async def hololinked_sse_peer(settings: Settings) -> Measurement:
    """CPU per event of aiohttp-sse-client's EventSource on the same body."""
    return await _sse_row(settings, _aiohttp_sse_client)


@row(
    "hololinked-lag",
    "hololinked: longest callback of ours under floods (µs; bound 20 ms)",
    source="hololinked",
)
async def hololinked_loop_lag(settings: Settings) -> Measurement:
    """Measure the longest event-loop callback of ours while the Thing floods a stream."""
    counts = {
        "burst": 20000,
        "garbage": 500,
        "long_line": 4,
        "many_lines": 10,
        "tiny": 50,
    }
    if settings.quick:
        counts = {kind: max(1, count // 10) for kind, count in counts.items()}
    pusher, port = await _start_pusher()
    sink = CountingSink()
    tally = FloodTally()
    try:
        async with _running_source(port, sink):
            for repeat in range(settings.repeats):
                for index, kind in enumerate(FLOODS):
                    marker = -1000.0 - repeat * 100 - index
                    sink.arm(functools.partial(_is_value, marker=marker))
                    with CallbackTimer() as timer:
                        await pusher.send(f"flood {kind} {counts[kind]} {marker}")
                        await sink.wait(120.0)
                        answer = (await pusher.read_line(120.0)).split()
                    if answer[:2] != ["flooded", kind]:
                        raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                    tally.add(kind, timer)
                tally.end_repeat()
    except TimeoutError as err:
        raise BenchError("the marker after a flood was never emitted") from err
    finally:
        await pusher.stop()
    return Measurement(
        tally.samples,
        [
            tally.per_kind(),
            f"longest in {tally.longest_name()}" if tally.worst_us else "",
            f"longest not ours {tally.others.longest_s * 1000:.1f} ms "
            f"({tally.others.longest_name}: aiohttp's HTTP parsing of one socket read)",
            tally.gc_note(),
        ],
    )


@row(
    "hololinked-idle",
    "hololinked: source idle, Thing silent (CPU µs per second)",
    source="hololinked",
)
async def hololinked_idle(settings: Settings) -> Measurement:
    """Wake-ups, our timers and CPU per second of a connected source whose Thing pushes nothing."""
    pusher, port = await _start_pusher()
    sink = CountingSink()
    try:
        baseline = await idle_window(idle_seconds(settings))
        async with _running_source(port, sink):
            await asyncio.sleep(0.5)
            return await idle_windows(
                settings,
                baseline,
                notes=[
                    "outside these windows: one /liveness request per 30 s without a byte "
                    "(a frozen Thing has no other sign) and the 30 s read of the properties "
                    "that push no changes"
                ],
            )
    finally:
        await pusher.stop()
