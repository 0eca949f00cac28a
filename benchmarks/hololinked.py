"""hololinked rows: SSE parsing alone, and push -> state at 100 events/s per event stream.

Parser: a seeded stream of data points and statistics, one frame per chunk (tornado flushes each
push on its own), through ``SseParser.feed`` and ``decode_payload`` (what every pushed event costs
before it is a reading). No Home Assistant runs; the per-event CPU is divided by the floor.

End to end: the integration is set up as a user's entry is (a config entry of kind "hololinked"
through ``hass.config_entries``) against ``benchmarks.hololinked_pusher`` in a separate process,
which serves hololinked's HTTP surface and pushes N data points and N statistics per round, each
stream at 100 events/s. The cost is this process's CPU from the round's request to the state write
of its last data point, divided by the 2N events; it includes what Home Assistant does while idle
between pushes (at this rate the pipeline is mostly waiting). The latency is, per data point, the
state write of its event entity minus the time the pusher wrote it (``time.time()`` in the payload,
one clock: same machine).
"""

from __future__ import annotations

import statistics
import time
from typing import Final
from unittest.mock import patch

from aiohttp.resolver import ThreadedResolver
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, EventStateChangedData, callback
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .harness import (
    HelperProcess,
    StateWrites,
    bench_hass,
    cpu_ns,
    numeric_state_is,
    settle,
    wait_for_states,
)
from .hololinked_stream import (
    DATA_POINT_ENTITY,
    ENERGY_ENTITY,
    PULSES_ENTITY,
    THING_ID,
    parser_stream,
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
WARMUP_ROUNDS: Final = 1
STARTUP_TIMEOUT: Final = 30.0
PARSER_EVENTS_PER_EVENT: Final = 10


@row("hololinked-parse", "hololinked: SSE split + JSON decode", source="hololinked")
async def hololinked_parser(settings: Settings) -> Measurement:
    """CPU per event of SseParser.feed (one frame per chunk) and decode_payload."""
    # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
    from custom_components.instrument_hub.sources.hololinked.protocol import (  # noqa: PLC0415
        SseParser,
        decode_payload,
    )

    chunks = parser_stream(settings.events * PARSER_EVENTS_PER_EVENT)
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
        if decoded != len(chunks):
            raise BenchError(f"{decoded} events of {len(chunks)} decoded")
        if repeat >= 0:
            samples.append((end - begin) / decoded / 1000)
    per_event_s = statistics.median(samples) / 1e6
    return Measurement(
        samples,
        [
            f"{1 / per_event_s / 1000:.0f}k ev/s",
            f"{size / len(chunks) / per_event_s / 1e6:.1f} MB/s",
            f"{len(chunks)} events, {size / 1e6:.1f} MB",
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
    return await _pipeline(settings, RATE, min(settings.events, MAX_ROUND_EVENTS))


@row(
    "hololinked-burst",
    "hololinked: push -> state (2 streams, as fast as sent)",
    source="hololinked",
)
async def hololinked_burst(settings: Settings) -> Measurement:
    """CPU per pushed event when the Thing pushes as fast as it can: the pipeline's own cost."""
    return await _pipeline(settings, BURST_RATE, settings.events)


async def _pipeline(settings: Settings, rate: float, count: int) -> Measurement:
    """Run rounds of ``count`` data points and statistics at ``rate`` per stream and per second."""
    rounds = WARMUP_ROUNDS + settings.repeats
    samples: list[float] = []
    latencies_ms: list[float] = []
    written: list[int] = []
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
                for index in range(rounds):
                    await settle(hass)
                    measuring = index >= WARMUP_ROUNDS
                    writes.arm(ENERGY_ENTITY, numeric_state_is(-float(index + 1)))
                    begin = cpu_ns()
                    await pusher.send(f"go {index} {count} {rate}")
                    end = await writes.wait(30 + count / rate)
                    answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                    if answer != ["sent", str(index), str(count)]:
                        raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                    if measuring:
                        samples.append((end - begin) / (2 * count) / 1000)
                        written.append(writes.count)
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
