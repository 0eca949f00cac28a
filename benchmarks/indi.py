"""INDI rows: the whole pipeline from socket to state, and the protocol parser alone.

End to end: the integration is set up the way a user's entry is (a config entry with
``{"source_kind": "indi", "host": "127.0.0.1", "port": N}`` through ``hass.config_entries``) against
an INDI server in a separate process (``benchmarks.indi_pusher``), so the server's CPU is not this
process's. The server defines one device with three number vectors (copied from the captures),
then, on each round, pushes N ``setNumberVector`` elements as fast as the socket takes them. The
figure is this process's CPU time from the moment the round is requested (before the first byte) to
the ``state_changed`` callback that sees the round's last value, divided by N: reading, splitting,
parsing, the source's and the hub's queues, the entities and Home Assistant's state machine, all in
one number. Only public surfaces are used (config entries, ``hass.states``, the event bus), so the
row survives refactors of the internals. The pipeline may coalesce readings under pressure; the
notes report how many states were written for the events sent instead of hiding it.

Parser: a seeded, realistic stream (number, switch, text and light set vectors, a few definitions,
messages, an occasional small BLOB) goes through ``ElementSplitter.feed`` in 64 KiB chunks (what one
socket read delivers), then every element through ``parse_element``. No Home Assistant runs; the
per-element CPU is still divided by the floor so it reads in the same unit as the other rows.
"""

from __future__ import annotations

import statistics
from typing import Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from pytest_homeassistant_custom_component.common import MockConfigEntry

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
from .indi_stream import (
    E2E_CHANNELS,
    MAX_ROUNDS,
    final_channel,
    parser_stream,
    round_marker,
)
from .rows import BenchError, Measurement, Settings, row

INTEGRATION_DOMAIN: Final = "instrument_hub"
SOURCE_KIND_KEY: Final = "source_kind"
SOURCE_KIND_INDI: Final = "indi"
WARMUP_ROUNDS: Final = 1
PUSHER_MODULE: Final = "benchmarks.indi_pusher"
STARTUP_TIMEOUT: Final = 30.0
CHUNK_BYTES: Final = 64 * 1024
PARSER_ELEMENTS_PER_EVENT: Final = 10
"""The parser stream holds this many elements per ``--events`` (20 000 by default)."""


def _round_timeout(events: int) -> float:
    """Seconds a round may take before it counts as lost (generous: about 1 ms per event)."""
    return 30.0 + events / 1000


async def _start_pusher(events: int, rounds: int) -> tuple[HelperProcess, int]:
    """Start the pusher process and return it with the port it listens on."""
    pusher = await HelperProcess.start(
        PUSHER_MODULE, "--events", str(events), "--rounds", str(rounds)
    )
    try:
        words = (await pusher.read_line(STARTUP_TIMEOUT)).split()
    except BaseException:
        await pusher.stop()
        raise
    if len(words) != 2 or words[0] != "port" or not words[1].isdigit():
        await pusher.stop()
        raise BenchError(f"unexpected first line from the pusher: {' '.join(words)!r}")
    return pusher, int(words[1])


@row("indi-e2e", "indi: socket -> state (3 number vectors)", source="indi")
async def indi_end_to_end(settings: Settings) -> Measurement:
    """CPU per pushed setNumberVector, from the first byte to the last value's state write."""
    rounds = WARMUP_ROUNDS + settings.repeats
    if rounds > MAX_ROUNDS:
        raise BenchError(f"at most {MAX_ROUNDS - WARMUP_ROUNDS} repeats")
    events = settings.events
    entity_ids = [channel.entity_id for channel in E2E_CHANNELS]
    samples: list[float] = []
    written: list[int] = []
    rates: list[float] = []
    pusher, port = await _start_pusher(events, rounds)
    try:
        async with bench_hass() as hass:
            entry = MockConfigEntry(
                domain=INTEGRATION_DOMAIN,
                title=f"INDI server 127.0.0.1:{port}",
                unique_id=f"indi:127.0.0.1:{port}",
                data={
                    SOURCE_KIND_KEY: SOURCE_KIND_INDI,
                    CONF_HOST: "127.0.0.1",
                    CONF_PORT: port,
                },
            )
            entry.add_to_hass(hass)
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError(
                    f"the INDI entry did not load ({entry.state}: {entry.reason}); the "
                    "integration may be mid-edit: retry later or run from a clean worktree"
                )
            await wait_for_states(hass, entity_ids, STARTUP_TIMEOUT)
            writes = StateWrites(hass, entity_ids)
            last = final_channel()
            try:
                for round_index in range(rounds):
                    await settle(hass)
                    writes.arm(
                        last.entity_id, numeric_state_is(round_marker(round_index))
                    )
                    begin_wall = wall_ns()
                    begin = cpu_ns()
                    await pusher.send(f"go {round_index}")
                    end = await writes.wait(_round_timeout(events))
                    answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                    if answer[:2] != ["sent", str(round_index)] or answer[2:] == ["0"]:
                        raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                    if round_index < WARMUP_ROUNDS:
                        continue
                    samples.append((end - begin) / events / 1000)
                    written.append(writes.count)
                    rates.append(events / ((writes.done_wall_ns - begin_wall) / 1e9))
            finally:
                writes.close()
    finally:
        await pusher.stop()
    sent = events * settings.repeats
    total = sum(written)
    notes = [f"states {total}/{sent}"]
    if total < sent:
        notes.append(f"{sent - total} ({(sent - total) / sent:.1%}) coalesced or lost")
    notes.append(f"{statistics.median(rates) / 1000:.0f}k ev/s wall")
    return Measurement(samples, notes)


@row("indi-parse", "indi: split + parse (mixed stream)", source="indi")
async def indi_parser(settings: Settings) -> Measurement:
    """CPU per element of ElementSplitter.feed (64 KiB chunks) followed by parse_element."""
    # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
    from custom_components.instrument_hub.sources.indi.protocol import (  # noqa: PLC0415
        ElementSplitter,
        parse_element,
    )

    stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
    chunks = [
        stream.data[offset : offset + CHUNK_BYTES]
        for offset in range(0, len(stream.data), CHUNK_BYTES)
    ]
    samples: list[float] = []
    split_shares: list[float] = []
    for repeat in range(-1, settings.repeats):
        splitter = ElementSplitter()
        elements: list[bytes] = []
        begin = cpu_ns()
        for chunk in chunks:
            elements.extend(splitter.feed(chunk))
        split = cpu_ns()
        parsed = [parse_element(element) for element in elements]
        end = cpu_ns()
        if len(elements) != stream.elements or any(item is None for item in parsed):
            raise BenchError(
                f"{len(elements)} elements split of {stream.elements}, "
                f"{sum(item is None for item in parsed)} not parsed"
            )
        if repeat >= 0:
            samples.append((end - begin) / stream.elements / 1000)
            split_shares.append((split - begin) / (end - begin))
    per_element_s = statistics.median(samples) / 1e6
    mean_bytes = len(stream.data) / stream.elements
    mix = ", ".join(f"{kind} {count}" for kind, count in stream.counts.items() if count)
    return Measurement(
        samples,
        [
            f"{1 / per_element_s / 1000:.0f}k el/s",
            f"{mean_bytes / per_element_s / 1e6:.1f} MB/s",
            f"split {statistics.median(split_shares):.0%}",
            f"{stream.elements} el, {len(stream.data) / 1e6:.1f} MB ({mix})",
        ],
    )


INDILIB_CAPTURE: Final = "tests/fixtures/indi/indilib_telescope_weather.xml"


@row(
    "indi-defs",
    "indi: indilib definitions -> channels (telescope + weather)",
    source="indi",
)
async def indi_definitions(settings: Settings) -> Measurement:
    """CPU per definition of indilib's answer to getProperties: parse, model, names, units, channels.

    The captured definitions of indilib's telescope and weather simulators (59 vectors, about 140 channels)
    go through the source's own steps, with names kept unique per device (each definition re-checks the
    device's names), into a list; no Home Assistant runs.
    """
    from custom_components.instrument_hub.sources.indi.model import (  # noqa: PLC0415
        Device,
        Vector,
    )
    from custom_components.instrument_hub.sources.indi.protocol import (  # noqa: PLC0415
        DefVector,
        ElementSplitter,
        parse_element,
    )
    from custom_components.instrument_hub.sources.indi.publish import (  # noqa: PLC0415
        Publisher,
    )

    from .harness import REPO_ROOT  # noqa: PLC0415

    capture = (REPO_ROOT / INDILIB_CAPTURE).read_bytes()
    elements = ElementSplitter().feed(capture)
    passes = max(1, settings.events // len(elements))
    samples: list[float] = []
    channels = 0
    for repeat in range(-1, settings.repeats):
        begin = cpu_ns()
        for _ in range(passes):
            events: list[object] = []
            publisher = Publisher(events.append, {})
            devices: dict[str, Device] = {}
            for raw in elements:
                definition = parse_element(raw)
                if not isinstance(definition, DefVector):
                    raise BenchError(f"not a definition: {raw[:60]!r}")
                device = devices.setdefault(
                    definition.device, Device(definition.device)
                )
                vector = Vector.from_def(definition)
                device.vectors[vector.name] = vector
                publisher.define(device, vector, ())
            channels = sum(len(device.channels) for device in devices.values())
        end = cpu_ns()
        if repeat >= 0:
            samples.append((end - begin) / (passes * len(elements)) / 1000)
    return Measurement(
        samples,
        [
            f"{len(elements)} definitions, {channels} channels, {passes} passes per repeat"
        ],
    )
