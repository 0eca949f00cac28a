"""The Scrutiny source's cost bounds: values at once, a bounded backlog, steps, big inflations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import patch
import zlib

import pytest

from custom_components.instrument_hub.events import Reading
from custom_components.instrument_hub.sources.scrutiny import (
    ScrutinySource,
    client as client_module,
)
from custom_components.instrument_hub.sources.scrutiny.mapping import watchable_key
from custom_components.instrument_hub.sources.scrutiny.protocol import (
    LOOP_INFLATE_BYTES,
    Frame,
    MessageTooLargeForLoop,
    decode_frame,
    encode_message,
)
from custom_components.instrument_hub.sources.scrutiny.source import (
    MAX_BACKLOG,
    MESSAGES_PER_STEP,
)
from tests.fake_scrutiny import FakeScrutinyServer
from tests.sources.conftest import EventRecorder

from .test_scrutiny_source import started, values


async def idle(source: ScrutinySource) -> None:
    """Wait (bounded) until the worker has nothing left to do."""
    async with asyncio.timeout(5):
        while source._busy or not source._queue.empty():
            await asyncio.sleep(0.01)  # a poll inside the bounded wait, not a time wait


@pytest.fixture
async def source(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> AsyncIterator[ScrutinySource]:
    """Start a source and wait until its worker has nothing to do; stop it after the test."""
    started_source = await started(scrutiny_server, recorder)
    try:
        await idle(started_source)
        yield started_source
    finally:
        await started_source.async_stop()


async def test_a_value_is_shown_in_the_read_that_brought_it(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Worker idle, nothing queued: the value is emitted by the push itself (no task hop)."""
    message = scrutiny_server.value_update("/Sine Wave", 0.25)
    source._on_push(message)
    assert values(recorder, "/Sine Wave") == [0.25]
    assert source._queue.empty()


async def test_values_behind_a_busy_worker_are_coalesced_past_the_bound(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Behind a busy worker values wait in order; past MAX_BACKLOG only the newest per watchable."""
    source._busy = True  # as while it waits for a response
    for index in range(MAX_BACKLOG):
        source._on_push(scrutiny_server.value_update("/Sine Wave", float(index)))
    for index in range(10 * MAX_BACKLOG):
        source._on_push(scrutiny_server.value_update("/Mode", index % 2))
        source._on_push(scrutiny_server.value_update("/Sine Wave", -float(index)))
    assert source._queue.qsize() == MAX_BACKLOG + 1
    assert source.diagnostics()["counters"]["coalesced_updates"] == 2 * (
        10 * MAX_BACKLOG - 1
    )
    source._busy = False
    async with asyncio.timeout(5):
        while not source._queue.empty():
            await asyncio.sleep(0)
    shown = values(recorder, "/Sine Wave")
    assert shown[:MAX_BACKLOG] == [float(index) for index in range(MAX_BACKLOG)]
    assert shown[MAX_BACKLOG:] == [-float(10 * MAX_BACKLOG - 1)]
    assert values(recorder, "/Mode")[-1] == "run"


async def test_a_status_after_coalesced_values_keeps_its_place(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Values after a queued non-value message start a new group: nothing overtakes it."""
    source._busy = True
    for index in range(MAX_BACKLOG):
        source._on_push(scrutiny_server.value_update("/Sine Wave", float(index)))
    source._on_push(scrutiny_server.value_update("/Sine Wave", 1.5))
    first = source._coalescing
    source._on_push({"cmd": "inform_datalogging_list_changed", "reqid": None})
    source._on_push(scrutiny_server.value_update("/Sine Wave", 2.5))
    assert source._coalescing is not None and source._coalescing is not first


async def test_the_worker_gives_the_loop_its_turn_in_a_long_backlog(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """A backlog of 5 x MESSAGES_PER_STEP messages takes at least 5 loop steps, not one."""
    source._busy = True
    count = 5 * MESSAGES_PER_STEP
    for index in range(count):
        source._on_push(scrutiny_server.value_update("/Sine Wave", float(index)))
    source._busy = False
    steps = 0
    async with asyncio.timeout(5):
        while len(values(recorder, "/Sine Wave")) < count:
            steps += 1
            await asyncio.sleep(0)
    assert steps >= 5


async def test_the_reader_gives_the_loop_its_turn_in_a_burst(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Thousands of frames sent at once: the reader yields every FRAMES_PER_STEP frames."""
    yields: list[int] = []
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float) -> None:
        if delay == 0:
            yields.append(len(values(recorder, "/Sine Wave")))
        await real_sleep(delay)

    burst = 4 * client_module.FRAMES_PER_STEP
    with patch("asyncio.sleep", counting_sleep):
        data = b"".join(
            encode_message(scrutiny_server.value_update("/Sine Wave", float(index)))
            for index in range(burst)
        )
        await scrutiny_server.send_raw(data)
        async with asyncio.timeout(5):
            while len(values(recorder, "/Sine Wave")) < burst:
                await real_sleep(0.01)
    assert len(yields) >= 3


def test_a_frame_that_inflates_large_is_not_decoded_on_the_loop() -> None:
    """A few KiB inflating past LOOP_INFLATE_BYTES: refused at the loop's limit, decodable off it."""
    message = b'{"cmd": "x", "pad": "' + b"a" * (2 * LOOP_INFLATE_BYTES) + b'"}'
    frame = Frame(zlib.compress(message, 9), compressed=True)
    assert len(frame.payload) < 16 * 1024
    try:
        decode_frame(frame, LOOP_INFLATE_BYTES)
    except MessageTooLargeForLoop:
        pass
    else:
        raise AssertionError("decoded on the loop")
    assert decode_frame(frame)["cmd"] == "x"


async def test_the_connection_sends_a_large_inflation_to_the_executor(
    source: ScrutinySource, scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """The connection decodes such a frame in the executor and still delivers it."""
    calls: list[Any] = []
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor

    def spy(executor: Any, func: Any, *args: Any) -> Any:
        calls.append(func)
        return real(executor, func, *args)

    update = scrutiny_server.value_update("/Sine Wave", 3.5)
    update["pad"] = "b" * (2 * LOOP_INFLATE_BYTES)
    with patch.object(loop, "run_in_executor", spy):
        await scrutiny_server.push(update)
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == watchable_key("/Sine Wave") and e.value == 3.5,
        )
    assert decode_frame in calls
