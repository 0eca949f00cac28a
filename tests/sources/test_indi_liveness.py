"""A server that stops talking: probed after a silence, dropped when it stays mute, reconnected.

The scripted server answers every getProperties with its definitions: emptying them makes it a server that
accepts and reads but says nothing (frozen, or behind a black hole). The timeouts are short here (0.2 s of
silence, 0.2 s for the probe); the defaults are 30 s and 10 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import socket
import time
from typing import Any

import pytest

from custom_components.instrument_hub.events import LinkDown, LinkUp
from custom_components.instrument_hub.sources.indi import IndiSource
from custom_components.instrument_hub.sources.indi.client import (
    PROBE_TIMEOUT,
    SILENCE_TIMEOUT,
)
from tests.fake_indi import FakeIndiServer

from .conftest import EventRecorder

DEFS = (
    '<defSwitchVector device="Mount" name="CONNECTION" label="Connection" group="Main" state="Idle" '
    'perm="rw" rule="OneOfMany"><defSwitch name="CONNECT" label="Connect">On</defSwitch>'
    '<defSwitch name="DISCONNECT" label="Disconnect">Off</defSwitch></defSwitchVector>'
    '<defNumberVector device="Dome" name="ABS_DOME_POSITION" label="Position" group="Main" state="Idle" '
    'perm="rw"><defNumber name="DOME_ABSOLUTE_POSITION" label="Degrees" format="%6.2f" min="0" '
    'max="360" step="1">90</defNumber></defNumberVector>'
)
SILENCE = 0.2
PROBE = 0.2

type Start = Callable[..., Awaitable[IndiSource]]


@pytest.fixture
async def start(
    indi_server: FakeIndiServer, recorder: EventRecorder
) -> AsyncIterator[Start]:
    """Start a source with short liveness timeouts against the scripted server."""
    sources: list[IndiSource] = []

    async def started(**kwargs: Any) -> IndiSource:
        source = IndiSource(
            "127.0.0.1",
            indi_server.port,
            backoff_min=0.05,
            backoff_max=0.1,
            silence_timeout=SILENCE,
            probe_timeout=PROBE,
            **kwargs,
        )
        sources.append(source)
        await source.async_start(recorder)
        return source

    try:
        yield started
    finally:
        for source in sources:
            await source.async_stop()


def test_the_documented_bound() -> None:
    """30 s of silence, then 10 s for the probe's answer: a frozen server is noticed within 40 s."""
    assert (SILENCE_TIMEOUT, PROBE_TIMEOUT) == (30.0, 10.0)
    assert IndiSource("127.0.0.1", 7624).diagnostics()["liveness_bound_s"] == 40.0


async def test_a_silent_server_is_probed_and_kept_when_it_answers(
    start: Start, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """Each silence sends a getProperties for one known property of each device; the answer keeps the link."""
    indi_server.definitions = [DEFS]
    source = await start()
    await indi_server.wait_received(b"<getProperties", count=3)
    assert indi_server.all_received(0)[1:3] == [
        b'<getProperties version="1.7" device="Mount" name="CONNECTION" />',
        b'<getProperties version="1.7" device="Dome" name="ABS_DOME_POSITION" />',
    ]
    assert recorder.of_type(LinkDown) == []
    assert source.diagnostics()["connection"]["probes"] >= 1
    assert source.diagnostics()["connection"]["silent_drops"] == 0


async def test_a_mute_server_is_dropped_within_the_bound_and_reconnected(
    start: Start, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """After its last byte, a server that does not answer the probe is dropped after silence + probe."""
    indi_server.definitions = [DEFS]
    source = await start()
    await recorder.wait_for(LinkUp)
    await indi_server.wait_received(b"<getProperties")
    indi_server.definitions = []  # from now on it accepts, reads, and says nothing
    silent_since = time.monotonic()
    down = await recorder.wait_for(LinkDown)
    took = time.monotonic() - silent_since
    assert "did not answer the liveness probe" in down.reason
    assert SILENCE + PROBE - 0.05 <= took <= SILENCE + PROBE + 1.0
    assert source.diagnostics()["connection"]["silent_drops"] == 1

    # It reconnects; the new connection is up only once the server speaks again.
    await indi_server.wait_for(lambda server: len(server.connections) >= 2)
    await indi_server.wait_received(b"<getProperties", connection=1)
    assert len(recorder.of_type(LinkUp)) == 1
    indi_server.definitions = [DEFS]
    await recorder.wait_for(LinkUp, count=2)


async def test_a_server_that_never_defined_anything_is_not_probed(
    start: Start, indi_server: FakeIndiServer, recorder: EventRecorder
) -> None:
    """With nothing known there is nothing it must answer: the link is up at once and stays (keepalive watches)."""
    indi_server.definitions = []
    source = await start()
    await recorder.wait_for(LinkUp)
    await asyncio.sleep(
        SILENCE + PROBE + 0.2
    )  # the point: longer than the bound passes without a drop
    assert recorder.of_type(LinkDown) == []
    assert source.diagnostics()["connection"]["probes"] == 0


async def test_tcp_keepalive_is_on(start: Start, indi_server: FakeIndiServer) -> None:
    """The socket asks the kernel for keepalive probes (idle 30 s, every 10 s, 3 of them)."""
    indi_server.definitions = [DEFS]
    source = await start()
    session = source._connection._session
    assert session is not None and session.transport is not None
    sock = session.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
