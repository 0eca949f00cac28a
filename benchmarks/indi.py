"""INDI rows: the whole pipeline from socket to state, and the parser against its peers on one stream.

End to end: the integration is set up the way a user's entry is (a config entry with
``{"source_kind": "indi", "host": "127.0.0.1", "port": N}`` through ``hass.config_entries``) against
an INDI server in a separate process (``benchmarks.indi_pusher``), so the server's CPU is not this
process's. The server defines one device with three number vectors (copied from the captures),
then, on each round, pushes N ``setNumberVector`` elements as fast as the socket takes them. The
figure is this process's CPU time from the moment the round is requested (before the first byte) to
the ``state_changed`` callback that sees the round's last value, divided by N: reading, splitting,
parsing, the source, the hub's queue, the entities and Home Assistant's state machine, all in
one number. Only public surfaces are used (config entries, ``hass.states``, the event bus), so the
row survives refactors of the internals. The pipeline may coalesce readings under pressure; the
notes report how many states were written for the events sent instead of hiding it.

Parsers: a seeded, realistic stream (number, switch, text and light set vectors, a few definitions,
messages, an occasional small BLOB) is parsed in 64 KiB and in 4 KiB chunks (what socket reads
deliver) by three parsers on the same interpreter: Python's own pull parser (``XMLPullParser`` with a
synthetic root, taking each element's and its members' attributes and text: the reference note's
recipe, and the floor of what a pure-stdlib client can do), indipyclient 0.9.4's receive path (its
``_run_rx``: the same pull parser, then its events and its model), and ours (``IndiStreamParser``:
bytes to typed elements). The notes of our rows give the speed ratios to the other two measured in
the same run (rows run in order: the peers first). Mind what is compared: ``indi-parse`` is our parser
alone against indipyclient's parser *plus* its events and model (unlike work: the peer's row does
more), and against the pull parser (parser only, like work). ``indi-events`` adds our source's model and
events (no Home Assistant): parser + model + events against the same, the like-for-like comparison with
indipyclient's row. Every row drops what it produces (indipyclient's events go to its no-op hook; ours
are counted). No Home Assistant runs; the per-element CPU is still divided by the floor so it reads in
the same unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import logging
import re
import statistics
from typing import Any, Final
import xml.etree.ElementTree as ET

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .harness import (
    WARMUP_ROUNDS,
    HelperProcess,
    StateWrites,
    bench_hass,
    cpu_ns,
    push_rounds,
    round_count,
    wait_for_states,
)
from .indi_stream import (
    E2E_CHANNELS,
    MAX_ROUNDS,
    final_channel,
    parser_stream,
    round_marker,
)
from .rows import BenchError, Measurement, RowFunction, Settings, row

INTEGRATION_DOMAIN: Final = "instrument_hub"
SOURCE_KIND_KEY: Final = "source_kind"
SOURCE_KIND_INDI: Final = "indi"
PUSHER_MODULE: Final = "benchmarks.indi_pusher"
STARTUP_TIMEOUT: Final = 30.0
CHUNK_BYTES: Final = 64 * 1024
SMALL_CHUNK_BYTES: Final = 4 * 1024
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
    rounds = round_count(settings, MAX_ROUNDS)
    events = settings.events
    entity_ids = [channel.entity_id for channel in E2E_CHANNELS]
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
                measured = await push_rounds(
                    hass,
                    pusher,
                    writes,
                    last.entity_id,
                    round_marker,
                    rounds=rounds,
                    warmup=WARMUP_ROUNDS,
                    events=events,
                    timeout=_round_timeout(events),
                )
            finally:
                writes.close()
    finally:
        await pusher.stop()
    sent = events * settings.repeats
    total = sum(measured.written)
    notes = [f"states {total}/{sent}"]
    if total < sent:
        notes.append(f"{sent - total} ({(sent - total) / sent:.1%}) coalesced or lost")
    notes.append(f"{statistics.median(measured.rates) / 1000:.0f}k ev/s wall")
    return Measurement(measured.samples, notes)


# --------------------------------------------------------------------------------------------------
# Parsers on the same stream: the stdlib pull parser, indipyclient, ours

_PARSE_RESULTS: dict[str, float] = {}
"""Median µs per element of the parser rows run so far (for the comparison notes of ours)."""


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def _parse_notes(key: str, samples: list[float], elements: int, mix: str) -> list[str]:
    per_element = statistics.median(samples)
    _PARSE_RESULTS[key] = per_element
    return [f"{1 / per_element * 1000:.0f}k el/s", f"{elements} el ({mix})"]


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in counts.items() if count)


def _pull_parse(chunks: list[bytes]) -> int:
    """Python's own pull parser, as indipyclient and the reference note use it, with attribute extraction."""
    parser = ET.XMLPullParser(events=("start", "end"))
    parser.feed(b"<root>")
    events: Any = parser.read_events()  # (event, element) pairs for these events
    started = list(events)
    depth = len(started)
    root: Any = started[0][1]  # the synthetic root
    elements = 0
    for chunk in chunks:
        parser.feed(chunk)
        events = parser.read_events()
        for event, item in events:
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth == 1:
                # What a client needs of an element: its attributes, its members' attributes and text.
                found: Any = item
                dict(found.attrib)
                [(dict(member.attrib), member.text) for member in found]
                root.remove(found)
                elements += 1
    return elements


async def _per_element(
    settings: Settings, expected: int, parse: Callable[[], int | Awaitable[int]]
) -> list[float]:
    """CPU µs per element of ``parse`` (which returns how many it parsed), a warm-up run first."""
    samples: list[float] = []
    for repeat in range(-1, settings.repeats):
        begin = cpu_ns()
        elements = parse()
        if not isinstance(elements, int):
            elements = await elements
        end = cpu_ns()
        if elements != expected:
            raise BenchError(f"{elements} elements of {expected}")
        if repeat >= 0:
            samples.append((end - begin) / expected / 1000)
    return samples


def _pull_row(chunk_bytes: int) -> RowFunction:
    async def measure(settings: Settings) -> Measurement:
        stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
        chunks = _chunks(stream.data, chunk_bytes)
        samples = await _per_element(
            settings, stream.elements, lambda: _pull_parse(chunks)
        )
        key = f"pull-{chunk_bytes}"
        return Measurement(
            samples, _parse_notes(key, samples, stream.elements, _mix(stream.counts))
        )

    return measure


class _ChunkReader:
    """What indipyclient reads from: the stream's chunks, then the end (and it is told to stop)."""

    def __init__(self, client: Any, chunks: list[bytes]) -> None:
        self._client = client
        self._chunks = iter(chunks)

    async def read(self, _size: int) -> bytes:
        chunk = next(self._chunks, b"")
        if not chunk:
            self._client._stop = True  # noqa: SLF001
        return chunk


async def _indipyclient_parse(chunks: list[bytes]) -> int:
    """Run indipyclient 0.9.4's receive path (its _run_rx: pull parser, events, its model); returns elements."""
    import indipyclient  # noqa: PLC0415

    client = indipyclient.IPyClient()
    client.resend_enableBLOB_on_def = (
        False  # nothing to send to: the bench measures receiving
    )
    received = 0
    handler = client._rxhandler  # noqa: SLF001

    async def counting(element: Any) -> None:
        nonlocal received
        received += 1
        await handler(element)

    client._rxhandler = counting  # noqa: SLF001
    client._reader = _ChunkReader(client, chunks)  # noqa: SLF001
    client._writer = object()  # "connected" (it never writes here)  # noqa: SLF001
    await client._run_rx()  # noqa: SLF001
    return received


def _indipyclient_row(chunk_bytes: int) -> RowFunction:
    async def measure(settings: Settings) -> Measurement:
        logging.getLogger("indipyclient").setLevel(logging.ERROR)
        stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
        chunks = _chunks(stream.data, chunk_bytes)
        samples = await _per_element(
            settings, stream.elements, lambda: _indipyclient_parse(chunks)
        )
        key = f"indipyclient-{chunk_bytes}"
        notes = _parse_notes(key, samples, stream.elements, _mix(stream.counts))
        return Measurement(
            samples, [*notes, "parser + its events + its model (events dropped)"]
        )

    return measure


def _discard(_element: object) -> None:
    """Take an element and keep nothing of it."""


def _ours_row(chunk_bytes: int) -> RowFunction:
    async def measure(settings: Settings) -> Measurement:
        # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
        from custom_components.instrument_hub.sources.indi.stream import (  # noqa: PLC0415
            IndiStreamParser,
        )

        stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
        chunks = _chunks(stream.data, chunk_bytes)
        samples: list[float] = []
        for repeat in range(-1, settings.repeats):
            # Each element is handed on and dropped, as in the source (the peers keep none either).
            parser = IndiStreamParser(_discard)
            begin = cpu_ns()
            for chunk in chunks:
                parser.feed(chunk)
            end = cpu_ns()
            if parser.elements != stream.elements or parser.malformed:
                raise BenchError(f"{parser.elements} elements of {stream.elements}")
            if repeat >= 0:
                samples.append((end - begin) / stream.elements / 1000)
        notes = _parse_notes(
            f"ours-{chunk_bytes}", samples, stream.elements, _mix(stream.counts)
        )
        per_element = statistics.median(samples)
        for name, key in (
            # Unlike work: ours parses only, indipyclient's row includes its events and model (indi-events
            # is the like-for-like comparison); the pull parser's row parses only, as ours.
            (
                "indipyclient's speed (parser only vs its parser + model)",
                f"indipyclient-{chunk_bytes}",
            ),
            ("the pull parser's speed (both parser only)", f"pull-{chunk_bytes}"),
        ):
            if key in _PARSE_RESULTS:
                notes.insert(1, f"×{_PARSE_RESULTS[key] / per_element:.2f} {name}")
        return Measurement(samples, notes)

    return measure


for _size, _label in ((CHUNK_BYTES, "64 KiB"), (SMALL_CHUNK_BYTES, "4 KiB")):
    _suffix = "" if _size == CHUNK_BYTES else "-4k"
    row(
        f"pull-parse{_suffix}",
        f"stdlib XMLPullParser + attributes ({_label} reads)",
        source="indi",
    )(_pull_row(_size))
    row(
        f"indipyclient-parse{_suffix}",
        f"indipyclient 0.9.4 receive path ({_label} reads)",
        source="indi",
    )(_indipyclient_row(_size))
    row(
        f"indi-parse{_suffix}",
        f"indi: stream parser ({_label} reads)",
        source="indi",
    )(_ours_row(_size))


_ATTRIBUTE: Final = rb'\s+([A-Za-z_][\w.\-]*)\s*=\s*"([^"<&]*)"'
_REGEX_ATTRIBUTE: Final = re.compile(_ATTRIBUTE)
_REGEX_SET: Final = re.compile(
    rb"<set(Number|Switch|Light)Vector((?:" + _ATTRIBUTE + rb")*)\s*>"
    rb"((?:\s*<one\1(?:" + _ATTRIBUTE + rb")*\s*>[^<&]*</one\1\s*>)*)"
    rb"\s*</set\1Vector\s*>"
)
_REGEX_MEMBER: Final = re.compile(
    rb"<one\w+((?:" + _ATTRIBUTE + rb")*)\s*>([^<&]*)</one"
)


def _regex_parse(data: bytes) -> int:
    """Parse the easy elements with regular expressions (C): the strictest pure-Python rival of expat.

    Only number, switch and light set vectors without entities or comments are recognised (the rest
    of the stream is passed over); the whole stream is one buffer (no chunk boundaries to handle).
    Each one gives what a client needs: the vector's and its members' attributes and texts.
    """
    elements = 0
    position = 0
    search = _REGEX_SET.search
    attributes = _REGEX_ATTRIBUTE.findall
    members = _REGEX_MEMBER.findall
    while (match := search(data, position)) is not None:
        dict(attributes(match.group(2)))
        [
            (dict(attributes(found)), text.strip())
            for found, text in members(match.group(3))
        ]
        elements += 1
        position = match.end()
    return elements


@row(
    "regex-parse",
    "regular expressions, easy elements only (one buffer)",
    source="indi",
)
async def regex_parse(settings: Settings) -> Measurement:
    """Per element it recognises: the bound on what replacing expat with C regexes could give."""
    stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
    expected = sum(stream.counts[kind] for kind in ("number", "switch", "light"))
    samples = await _per_element(settings, expected, lambda: _regex_parse(stream.data))
    notes = [f"{expected} of {stream.elements} el (number, switch, light sets)"]
    if (key := f"ours-{CHUNK_BYTES}") in _PARSE_RESULTS:
        ours = _PARSE_RESULTS[key]
        notes.insert(
            0,
            f"ours takes ×{ours / statistics.median(samples):.2f} of this per element",
        )
    return Measurement(samples, notes)


@row("indi-events", "indi: bytes -> events, parser + model (no HA)", source="indi")
async def indi_events(settings: Settings) -> Measurement:
    """CPU per element from bytes to the events the source emits (what indipyclient's row also does)."""
    from custom_components.instrument_hub.sources.indi import (  # noqa: PLC0415
        IndiSource,
    )

    stream = parser_stream(settings.events * PARSER_ELEMENTS_PER_EVENT)
    chunks = _chunks(stream.data, CHUNK_BYTES)
    samples: list[float] = []
    emitted = 0
    for repeat in range(-1, settings.repeats):
        # Each event is counted and dropped, as indipyclient's row drops its events (and the parser rows
        # their elements): keeping 40 000 of them alive would add allocation the peer does not pay.
        events = _Counter()
        source = IndiSource("127.0.0.1", 1, enable_blobs=False)
        source._sink = events  # noqa: SLF001
        parser = source._connection._parser  # noqa: SLF001
        begin = cpu_ns()
        for chunk in chunks:
            parser.feed(chunk)
            await asyncio.sleep(0)  # a read per loop iteration, as from a socket
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while source._waiting:  # noqa: SLF001  # behind the last small BLOB's file
                await asyncio.sleep(0.001)
        end = cpu_ns()
        await source.async_stop()
        if parser.elements != stream.elements:
            raise BenchError(f"{parser.elements} elements of {stream.elements}")
        emitted = events.count
        if repeat >= 0:
            samples.append((end - begin) / stream.elements / 1000)
    per_element = statistics.median(samples)
    per_event = per_element * stream.elements / max(1, emitted)
    notes = [
        f"{1 / per_element * 1000:.0f}k el/s",
        f"{emitted} events ({per_event:.1f} µs per event)",
    ]
    if (key := f"indipyclient-{CHUNK_BYTES}") in _PARSE_RESULTS:
        notes.insert(
            1,
            f"×{_PARSE_RESULTS[key] / per_element:.2f} indipyclient's speed "
            "(both parser + model + events)",
        )
    return Measurement(samples, notes)


class _Counter:
    """An event sink that counts the events and keeps none."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _event: object) -> None:
        self.count += 1


INDILIB_CAPTURE: Final = "tests/fixtures/indi/indilib_telescope_weather.xml"


@row(
    "indi-defs",
    "indi: indilib definitions -> channels (telescope + weather)",
    source="indi",
)
async def indi_definitions(settings: Settings) -> Measurement:
    """CPU per definition of indilib's answer to getProperties: model, names, units, channels.

    The captured definitions of indilib's telescope and weather simulators (59 vectors, about 140 channels),
    parsed once beforehand, go through the source's own steps, with names kept unique per device (each
    definition re-checks the device's names), into a list; no Home Assistant runs.
    """
    from custom_components.instrument_hub.sources.indi.model import (  # noqa: PLC0415
        Device,
        Vector,
    )
    from custom_components.instrument_hub.sources.indi.protocol import (  # noqa: PLC0415
        DefVector,
    )
    from custom_components.instrument_hub.sources.indi.publish import (  # noqa: PLC0415
        Publisher,
    )
    from custom_components.instrument_hub.sources.indi.stream import (  # noqa: PLC0415
        IndiStreamParser,
    )

    from .harness import REPO_ROOT  # noqa: PLC0415

    capture = (REPO_ROOT / INDILIB_CAPTURE).read_bytes()
    elements: list[object] = []
    IndiStreamParser(elements.append).feed(capture)
    passes = max(1, settings.events // len(elements))
    samples: list[float] = []
    channels = 0
    for repeat in range(-1, settings.repeats):
        begin = cpu_ns()
        for _ in range(passes):
            events: list[object] = []
            publisher = Publisher(events.append, {})
            devices: dict[str, Device] = {}
            for definition in elements:
                if not isinstance(definition, DefVector):
                    raise BenchError(f"not a definition: {definition!r:.60}")
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
