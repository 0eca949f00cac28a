"""The hololinked event stream's cost bounds: a big read is delivered in steps, a small one at once."""

from __future__ import annotations

import asyncio
from itertools import count, pairwise
from typing import cast
from unittest.mock import patch

import aiohttp

from custom_components.instrument_hub.sources.hololinked.client import (
    _CHECK_EVERY,
    STEP_SECONDS,
    EventStream,
    ThingClient,
)
from custom_components.instrument_hub.sources.hololinked.td import Form, parse_thing_url


def _stream(delivered: list[object]) -> EventStream:
    """Return a stream that is never opened (its reads are fed by hand), delivering to ``delivered``."""
    return EventStream(
        ThingClient(
            cast("aiohttp.ClientSession", object()),
            parse_thing_url("http://127.0.0.1:1/t"),
        ),
        "data",
        Form("http://127.0.0.1:1/t/data", "GET"),
        on_payload=lambda payload, _size: delivered.append(payload),
        on_lost=lambda _reason, _refused: None,
    )


async def test_a_big_read_is_delivered_in_steps_of_bounded_time() -> None:
    """Thousands of events in one read: in order, the loop getting its turn every few ms."""
    delivered: list[object] = []
    stream = _stream(delivered)
    ticks = count()
    stream._clock = lambda: next(ticks) / 1000  # every look at the clock: 1 ms more
    steps: list[int] = []
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float) -> None:
        steps.append(len(delivered))
        await real_sleep(delay)

    chunk = b"".join(b"data: %d\n\n" % index for index in range(3000))
    with patch("asyncio.sleep", counting_sleep):
        await stream._feed(chunk)
    assert delivered == list(range(3000))
    assert len(steps) > 3, "a read this big must give the loop its turn"
    # A step looks at the clock every _CHECK_EVERY events, and yields once STEP_SECONDS passed.
    most = (STEP_SECONDS * 1000 + 2) * _CHECK_EVERY
    assert all(later - earlier <= most for earlier, later in pairwise([0, *steps]))


async def test_a_small_read_is_one_step() -> None:
    """A few events (the normal case): delivered at once, no extra loop iteration."""
    delivered: list[object] = []
    stream = _stream(delivered)
    with patch("asyncio.sleep", side_effect=AssertionError):
        await stream._feed(b'data: {"energy": 1}\n\ndata: {"energy": 2}\n\n')
    assert delivered == [{"energy": 1}, {"energy": 2}]
