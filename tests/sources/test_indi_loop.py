"""No input holds the event loop: bounded work per callback, whatever the server sends.

Structure: a socket read is parsed at most ``FEED_BYTES`` at a time, each piece in a callback of its
own. Bound: every callback the loop runs while a flood arrives is timed (``asyncio.Handle._run``);
none may take 100 ms (the target is 20 ms; the margin is for a slow, shared test machine in asyncio's
debug mode). The benchmark (``benchmarks/indi_floods.py``) measures the real figures.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
import contextlib
from pathlib import Path
import time
from typing import Any

import pytest

from custom_components.instrument_hub.blob_store import spool_folder
from custom_components.instrument_hub.events import BlobData, Message, Reading
from custom_components.instrument_hub.sources.indi import IndiSource
from custom_components.instrument_hub.sources.indi.client import FEED_BYTES
from custom_components.instrument_hub.sources.indi.stream import IndiStreamParser
from tests.fake_indi import WAIT_SECONDS, FakeIndiServer

from .conftest import EventRecorder

DEFS = (
    '<defNumberVector device="Flood" name="VALUE" label="Value" group="Main" state="Ok" perm="ro">'
    '<defNumber name="V" label="Value" format="%g" min="0" max="0" step="0">0</defNumber></defNumberVector>'
    '<defBLOBVector device="Flood" name="CCD1" label="Image" group="Main" state="Idle" perm="ro">'
    '<defBLOB name="CCD1" label="Image"/></defBLOBVector>'
)
MARKER = '<message device="Flood" message="end of flood"/>'
BOUND = 0.1
MIB = 1024 * 1024


@contextlib.contextmanager
def longest_callback() -> Iterator[list[float]]:
    """Time every callback the loop runs meanwhile; the list holds the longest (seconds)."""
    longest = [0.0]
    run = asyncio.events.Handle._run

    def timed(handle: Any) -> None:
        begin = time.perf_counter()
        run(handle)
        longest[0] = max(longest[0], time.perf_counter() - begin)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    try:
        yield longest
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]


@pytest.fixture
async def flooded(
    indi_server: FakeIndiServer, recorder: EventRecorder, tmp_path: Path
) -> AsyncIterator[IndiSource]:
    """Start a source connected to the scripted server, files spooled under tmp_path."""
    indi_server.definitions = [DEFS]
    source = IndiSource(
        "127.0.0.1",
        indi_server.port,
        max_blob_bytes=64 * MIB,
        spool_folder=spool_folder(tmp_path),
    )
    await source.async_start(recorder)
    try:
        await indi_server.wait_received(b"<enableBLOB")
        yield source
    finally:
        await source.async_stop()


def flood_of(kind: str) -> bytes:
    """Return one of the floods a client must survive."""
    if kind == "unknown":
        return b"<x/>" * 1_000_000
    if kind == "garbage":
        return b"<" * (8 * MIB)
    if kind == "malformed":
        return (
            b'<setNumberVector device="Flood" name="VALUE"><oneNumber name="V">1</oneText>'
            b"</setNumberVector>"
        ) * 20_000
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["unknown", "garbage", "malformed"])
async def test_floods_never_hold_the_loop(
    flooded: IndiSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    kind: str,
) -> None:
    """1 M tiny unknown elements, 8 MiB of '<', 20 000 bad elements: no callback near the bound."""
    data = flood_of(kind)
    with longest_callback() as longest:
        await indi_server.send(data + MARKER.encode())
        async with asyncio.timeout(WAIT_SECONDS * 6):
            await recorder.wait_for(Message, lambda e: e.text == "end of flood")
    assert longest[0] < BOUND
    assert flooded.diagnostics()["connection"]["bytes_in"] >= len(data)


async def test_a_large_blob_never_holds_the_loop(
    flooded: IndiSource, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """A 16 MiB BLOB streams into its file in bounded pieces; the reading after it still comes after it."""
    payload = bytes(range(256)) * (16 * MIB // 256)
    blob = (
        '<setBLOBVector device="Flood" name="CCD1" state="Ok"><oneBLOB name="CCD1" format=".fits" '
        f'size="{len(payload)}">'
    ).encode()
    text = base64.b64encode(payload)
    blob += b"\n".join(text[i : i + 72] for i in range(0, len(text), 72))
    blob += b"</oneBLOB></setBLOBVector>"
    with longest_callback() as longest:
        await indi_server.send(blob + MARKER.encode())
        async with asyncio.timeout(WAIT_SECONDS * 6):
            await recorder.wait_for(Message, lambda e: e.text == "end of flood")
    assert longest[0] < BOUND
    readings = [e for e in recorder.events if isinstance(e, Reading | Message)]
    file = readings[-2].value if isinstance(readings[-2], Reading) else None
    assert isinstance(file, BlobData) and file.spooled is not None
    assert file.spooled.read_bytes() == payload


async def test_a_large_read_is_parsed_in_bounded_pieces(
    flooded: IndiSource,
    indi_server: FakeIndiServer,
    recorder: EventRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However much one read brings, the parser is fed at most FEED_BYTES per loop callback."""
    fed: list[tuple[int, int]] = []
    ticks = [0]
    real_feed = IndiStreamParser.feed

    def recording_feed(self: IndiStreamParser, data: Any) -> None:
        fed.append((len(data), ticks[0]))
        real_feed(self, data)

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    monkeypatch.setattr(IndiStreamParser, "feed", recording_feed)
    task = asyncio.get_running_loop().create_task(ticker())
    try:
        readings = "".join(
            '<setNumberVector device="Flood" name="VALUE"><oneNumber name="V">'
            f"{i}</oneNumber></setNumberVector>"
            for i in range(20_000)
        )
        await indi_server.send(readings + MARKER)
        await recorder.wait_for(Message, lambda e: e.text == "end of flood")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert max(size for size, _ in fed) <= FEED_BYTES
    assert sum(size for size, _ in fed) >= len(readings)
    # Other callbacks (the ticker) ran between the pieces: never two pieces in one loop step.
    steps = [tick for _, tick in fed]
    assert len(set(steps)) == len(steps)
    assert len(recorder.of_type(Reading)) >= 20_000
