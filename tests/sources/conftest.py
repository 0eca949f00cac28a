"""Fixtures for the protocol-source tests: pure asyncio, no Home Assistant instance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from custom_components.instrument_hub.events import Event
from custom_components.instrument_hub.sources.indi.protocol import ElementSplitter

WAIT_SECONDS = 5.0
"""Upper bound of every wait in these tests; a healthy run needs milliseconds."""

CAPTURES = Path(__file__).parent.parent / "fixtures" / "indi"

type ReplyRule = Callable[[bytes], bytes | None]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the package-wide autouse fixture: source tests need no Home Assistant instance."""


def server_lines(capture_name: str) -> list[str]:
    """Return the XML the server sent in a capture, one top-level element per line, in order."""
    lines = (CAPTURES / capture_name).read_text(encoding="utf-8").splitlines()
    return [
        lines[index + 1]
        for index, line in enumerate(lines[:-1])
        if line.rstrip().endswith("<<< SERVER SENDS:")
    ]


@dataclass
class ServerConnection:
    """One client connection to the fake server: what it sent, split into elements."""

    writer: asyncio.StreamWriter
    received: list[bytes] = field(default_factory=list)


class FakeIndiServer:
    """An INDI server on 127.0.0.1 that answers getProperties with scripted XML and records input.

    ``on_get_properties`` is sent back for every getProperties; ``reply_rules`` see every other
    element a client sends and may return XML to send back on that connection.
    """

    def __init__(self) -> None:
        """Nothing listens before start()."""
        self.on_get_properties = b""
        self.reply_rules: list[ReplyRule] = []
        self.connections: list[ServerConnection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (a free port unless one is given: a restart after close())."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every client connection."""
        if self._server is not None:
            self._server.close()
        await self.drop_clients()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def drop_clients(self) -> None:
        """Close every client connection (the clients see EOF)."""
        for connection in self.connections:
            connection.writer.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()

    async def send(self, data: bytes | str, connection: int = -1) -> None:
        """Send XML to a client connection (the newest by default)."""
        payload = data.encode() if isinstance(data, str) else data
        writer = self.connections[connection].writer
        writer.write(payload)
        await writer.drain()

    def all_received(self, connection: int | None = None) -> list[bytes]:
        """Return the elements received on one connection, or on all of them."""
        if connection is not None:
            return list(self.connections[connection].received)
        return [element for conn in self.connections for element in conn.received]

    async def wait_for(self, predicate: Callable[[FakeIndiServer], bool]) -> None:
        """Wait (bounded) until the server's state satisfies ``predicate``."""
        async with asyncio.timeout(WAIT_SECONDS):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_received(
        self, fragment: bytes, connection: int = -1, count: int = 1
    ) -> list[bytes]:
        """Wait until a connection received ``count`` elements containing ``fragment``; return them."""

        def matching(server: FakeIndiServer) -> list[bytes]:
            try:
                received = server.connections[connection].received
            except IndexError:
                return []
            return [element for element in received if fragment in element]

        await self.wait_for(lambda server: len(matching(server)) >= count)
        return matching(self)

    async def wait_connections(self, count: int) -> None:
        """Wait until ``count`` clients have connected in total."""
        await self.wait_for(lambda server: len(server.connections) >= count)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = ServerConnection(writer)
        self.connections.append(connection)
        self._changed.set()
        splitter = ElementSplitter()
        try:
            while data := await reader.read(65536):
                for element in splitter.feed(data):
                    connection.received.append(element)
                    await self._answer(connection, element)
                    self._changed.set()
        except OSError:
            pass
        finally:
            writer.close()
            self._changed.set()

    async def _answer(self, connection: ServerConnection, element: bytes) -> None:
        replies: list[bytes | None]
        if element.startswith(b"<getProperties"):
            replies = [self.on_get_properties]
        else:
            replies = [rule(element) for rule in self.reply_rules]
        for reply in replies:
            if reply:
                connection.writer.write(reply)
        await connection.writer.drain()


class EventRecorder:
    """An event sink that records events and lets a test wait for one."""

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[Event] = []
        self._new = asyncio.Event()

    def __call__(self, event: Event) -> None:
        """Record one event (the sink interface)."""
        self.events.append(event)
        self._new.set()

    def of_type[T](self, kind: type[T]) -> list[T]:
        """Return the recorded events of one type, in order."""
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for[T](
        self,
        kind: type[T],
        predicate: Callable[[T], bool] = lambda _event: True,
        count: int = 1,
    ) -> T:
        """Wait (bounded) until ``count`` events of ``kind`` match ``predicate``; return the last."""
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                found = [event for event in self.of_type(kind) if predicate(event)]
                if len(found) >= count:
                    return found[count - 1]
                self._new.clear()
                await self._new.wait()


@pytest.fixture
async def indi_server(socket_enabled: None) -> AsyncIterator[FakeIndiServer]:
    """Serve a fake INDI server on 127.0.0.1, closed after the test.

    ``socket_enabled`` lifts the test plugin's socket block; connections stay limited to 127.0.0.1.
    """
    server = FakeIndiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def recorder() -> EventRecorder:
    """Return an event sink recording everything a source emits."""
    return EventRecorder()
