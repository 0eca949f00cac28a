"""The Scrutiny connection's failure paths: odd greetings, resets, reconnects, faults in callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import logging
import socket
import struct
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.instrument_hub.sources.base import CannotConnect
from custom_components.instrument_hub.sources.scrutiny import client as client_module
from custom_components.instrument_hub.sources.scrutiny.client import (
    NotScrutiny,
    ScrutinyConnection,
)
from custom_components.instrument_hub.sources.scrutiny.protocol import decode_frame
from tests.fake_scrutiny import FakeScrutinyServer

WAIT = 5.0
LOGGER = "custom_components.instrument_hub.sources.scrutiny.client"

type Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Links:
    """Records the link changes and pushes a connection reports; lets a test wait for them."""

    def __init__(self) -> None:
        """Start with nothing recorded."""
        self.changes: list[tuple[bool, str]] = []
        self.pushes: list[dict[str, Any]] = []
        self._new = asyncio.Event()

    def on_link(self, up: bool, reason: str) -> None:
        """Record a link change."""
        self.changes.append((up, reason))
        self._new.set()

    def on_push(self, message: dict[str, Any]) -> None:
        """Record a push."""
        self.pushes.append(message)
        self._new.set()

    async def wait(self, done: Callable[[], bool]) -> None:
        """Wait (bounded) until ``done()`` holds."""
        async with asyncio.timeout(WAIT):
            while not done():
                self._new.clear()
                await self._new.wait()

    def ups(self) -> int:
        """Return how many times the link came up."""
        return sum(up for up, _ in self.changes)

    def downs(self) -> list[str]:
        """Return the reasons of every loss."""
        return [reason for up, reason in self.changes if not up]


class LogSignal(logging.Handler):
    """Sets an event when a record containing ``marker`` is logged (to wait on it, not poll)."""

    def __init__(self, marker: str) -> None:
        """Watch for ``marker``."""
        super().__init__(logging.DEBUG)
        self.marker = marker
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        """Remember a matching record."""
        if self.marker in record.getMessage():
            self.records.append(record)
            self.seen.set()


@contextlib.contextmanager
def log_signal(marker: str) -> Any:
    """Attach a LogSignal to the client's logger (at debug level) for the block."""
    logger = logging.getLogger(LOGGER)
    handler = LogSignal(marker)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on a free port of 127.0.0.1; yield the port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _connection(port: int, links: Links, **kwargs: Any) -> ScrutinyConnection:
    return ScrutinyConnection(
        "127.0.0.1",
        port,
        on_push=links.on_push,
        on_link=links.on_link,
        backoff_min=0.01,
        backoff_max=0.05,
        **kwargs,
    )


def _sending(first: bytes) -> Handler:
    """Return a server that sends ``first``, then holds the connection until the client goes."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(first)
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    return handler


async def test_an_oversized_first_frame_is_not_the_scrutiny_framing(
    socket_enabled: None,
) -> None:
    """A first header over the MTU is refused at once, not after the welcome timeout."""
    links = Links()
    async with serving(_sending(b"<SCRUTINY size=ffffff flags=ch>")) as port:
        connection = _connection(port, links)
        try:
            async with asyncio.timeout(client_module.WELCOME_TIMEOUT - 1):
                with pytest.raises(NotScrutiny, match="does not speak the Scrutiny"):
                    await connection.connect()
            assert not connection.connected
        finally:
            await connection.close()


async def test_a_first_frame_that_is_no_json_is_no_welcome(
    socket_enabled: None,
) -> None:
    """A verified frame whose payload is not JSON: not a Scrutiny server, counted as malformed."""
    links = Links()
    async with serving(_sending(b"<SCRUTINY size=5 flags=>notjs")) as port:
        connection = _connection(port, links)
        try:
            with pytest.raises(NotScrutiny, match="no welcome"):
                await connection.connect()
            assert connection.stats()["malformed"] == 1
        finally:
            await connection.close()


async def test_a_reset_before_the_welcome_cannot_connect(socket_enabled: None) -> None:
    """The peer resets the connection before greeting: CannotConnect naming the loss, no socket left."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: an RST, not a FIN

    links = Links()
    async with serving(reset) as port:
        connection = _connection(port, links)
        try:
            with pytest.raises(CannotConnect, match="before its welcome") as caught:
                await connection.connect()
            assert not isinstance(caught.value, NotScrutiny)
            assert not connection.connected
        finally:
            await connection.close()


async def test_a_connect_that_takes_too_long_says_it_timed_out(
    scrutiny_server: FakeScrutinyServer,
) -> None:
    """No connection within the connect timeout: CannotConnect saying so (not an empty reason)."""
    links = Links()
    connection = _connection(scrutiny_server.port, links, connect_timeout=0)
    try:
        with pytest.raises(CannotConnect, match="timed out$"):
            await connection.connect()
    finally:
        await connection.close()


async def test_failed_reconnects_back_off_until_the_server_is_back(
    scrutiny_server: FakeScrutinyServer,
) -> None:
    """The server goes away: attempts fail (and are logged), then it is back and so is the link."""
    links = Links()
    connection = _connection(scrutiny_server.port, links)
    await connection.connect()
    connection.start()
    try:
        await links.wait(lambda: links.ups() == 1)
        with log_signal("Reconnect attempt") as failed:
            await scrutiny_server.close()  # stops listening too: reconnects are refused
            await links.wait(lambda: len(links.downs()) == 1)
            async with asyncio.timeout(WAIT):
                await failed.seen.wait()
            assert "failed" in failed.records[0].getMessage()
            assert not connection.connected
            await scrutiny_server.start()  # the same port again
            await links.wait(lambda: links.ups() == 2)
        assert connection.stats()["connected"]
        assert connection.stats()["connects"] == 2
        assert (await connection.request("echo", {"payload": "x"}))["payload"] == "x"
    finally:
        await connection.close()


async def test_an_internal_error_drops_the_link_and_it_comes_back(
    scrutiny_server: FakeScrutinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while handling a frame does not end the connection for good: it reconnects."""
    links = Links()
    connection = _connection(scrutiny_server.port, links)
    await connection.connect()
    connection.start()
    calls = 0

    def faulty(*args: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return decode_frame(*args)

    try:
        await links.wait(lambda: links.ups() == 1)
        with patch.object(client_module, "decode_frame", side_effect=faulty):
            await scrutiny_server.push({"cmd": "first", "reqid": None})
            await links.wait(lambda: links.ups() == 2)
        assert links.downs() == ["internal error: boom"]
        assert "Unexpected error on the connection" in caplog.text
        await scrutiny_server.push({"cmd": "after", "reqid": None})
        await links.wait(lambda: bool(links.pushes))
        assert [push["cmd"] for push in links.pushes] == ["after"]
    finally:
        await connection.close()


async def test_failing_callbacks_are_logged_and_the_stream_goes_on(
    scrutiny_server: FakeScrutinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_push or on_link that raises is logged; the next messages are still delivered."""
    delivered: list[str] = []
    got = asyncio.Event()

    def on_push(message: dict[str, Any]) -> None:
        if message["cmd"] == "bad":
            raise ValueError("handler bug")
        delivered.append(message["cmd"])
        got.set()

    def on_link(_up: bool, _reason: str) -> None:
        raise ValueError("link handler bug")

    connection = ScrutinyConnection(
        "127.0.0.1", scrutiny_server.port, on_push=on_push, on_link=on_link
    )
    await connection.connect()
    connection.start()
    try:
        await scrutiny_server.push({"cmd": "bad", "reqid": None})
        await scrutiny_server.push({"cmd": "good", "reqid": None})
        async with asyncio.timeout(WAIT):
            await got.wait()
        assert delivered == ["good"]
        assert connection.connected
        assert "Error while handling a message" in caplog.text
        assert "Error while reporting a link change" in caplog.text
    finally:
        await connection.close()


async def test_a_malformed_frame_decoded_off_the_loop_is_skipped(
    scrutiny_server: FakeScrutinyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Frames past the executor threshold are decoded there; a bad one is counted and skipped."""
    links = Links()
    connection = _connection(scrutiny_server.port, links, executor_threshold=8)
    await connection.connect()
    connection.start()
    try:
        await links.wait(lambda: links.ups() == 1)
        bad = b"this is not json at all"
        await scrutiny_server.send_raw(
            f"<SCRUTINY size={len(bad):x} flags=>".encode() + bad
        )
        await scrutiny_server.push({"cmd": "after", "reqid": None, "pad": "x" * 64})
        await links.wait(lambda: bool(links.pushes))
        assert [push["cmd"] for push in links.pushes] == ["after"]
        assert connection.stats()["malformed"] == 1
        assert "Skipped malformed data" in caplog.text
    finally:
        await connection.close()


async def test_a_refused_echo_keeps_the_liveness_check_going(
    scrutiny_server: FakeScrutinyServer,
) -> None:
    """A server that answers the echo with an error is alive: the link stays, later silences echo again."""
    scrutiny_server.handlers["echo"] = lambda _req: {
        "cmd": "error",
        "msg": "echo is disabled",
    }
    links = Links()
    connection = _connection(scrutiny_server.port, links, silence_seconds=0.1)
    await connection.connect()
    connection.start()
    try:
        async with asyncio.timeout(WAIT):
            while len(scrutiny_server.requests_of("echo")) < 2:
                scrutiny_server.received.clear()
                await scrutiny_server.received.wait()
        assert connection.connected
        assert links.downs() == []
    finally:
        await connection.close()


async def test_a_close_cancelled_from_outside_stays_cancelled(
    scrutiny_server: FakeScrutinyServer,
) -> None:
    """Cancelling whoever closes (Home Assistant shutting down) is not swallowed by close()."""
    links = Links()
    connection = _connection(scrutiny_server.port, links)
    await connection.connect()
    connection.start()
    current = asyncio.current_task()
    assert current is not None
    # Lands while close() waits for the reading task it has just cancelled.
    asyncio.get_running_loop().call_soon(current.cancel)
    with pytest.raises(asyncio.CancelledError):
        await connection.close()
    assert current.uncancel() == 0
    await connection.close()  # idempotent: finishes what was left
    assert not connection.connected
    with pytest.raises(CannotConnect):
        await connection.connect()
