"""A scripted INDI server for the tests, listening on 127.0.0.1 only.

Every getProperties is answered with the definitions the test gave (captured XML a real server sent,
or written by the test); reply rules may answer any other element a client sends. Each connection
records what its client sent, split into top-level elements by ``tests.indi_splitter.ElementSplitter``.
A test can push XML to every client or send it to one, drop the clients, or close the server and
start it again on the same port. Every wait is bounded and wakes on the server's own events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
import re

from .indi_splitter import ElementSplitter

WAIT_SECONDS = 5.0
"""Upper bound of every wait on the server; a healthy run needs milliseconds."""

CAPTURES = Path(__file__).parent / "fixtures" / "indi"

type ReplyRule = Callable[[bytes], bytes | None]
"""Sees one element a client sent (not getProperties); returns XML to send back, or None."""


def server_lines(capture_name: str) -> list[str]:
    """Return the XML the server sent in a capture, one top-level element per line, in order."""
    lines = (CAPTURES / capture_name).read_text(encoding="utf-8").splitlines()
    return [
        lines[index + 1]
        for index, line in enumerate(lines[:-1])
        if line.rstrip().endswith("<<< SERVER SENDS:")
    ]


def lines_matching(lines: list[str], pattern: str) -> list[str]:
    """Return the lines that match a regular expression."""
    return [line for line in lines if re.search(pattern, line)]


@dataclass
class ServerConnection:
    """One client connection to the fake server: what its client sent, split into elements."""

    writer: asyncio.StreamWriter
    received: list[bytes] = field(default_factory=list)
    closed: bool = False
    handler: asyncio.Task[None] = field(init=False)


class FakeIndiServer:
    """One listening socket on 127.0.0.1; ``connections`` lists every client so far, oldest first."""

    def __init__(self) -> None:
        """Nothing listens before start()."""
        self.definitions: list[str] = []
        self.reply_rules: list[ReplyRule] = []
        self.connections: list[ServerConnection] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (a free port unless one is given: a restart after close())."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every client connection; returns once every handler ended."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            server.close_clients()
            # Once every transport is gone, every accepted connection has a handler to wait for.
            async with asyncio.timeout(WAIT_SECONDS):
                await server.wait_closed()
        await self.drop_clients()

    async def drop_clients(self) -> None:
        """Close every client connection (the clients see EOF); returns once every handler ended."""
        for connection in self.connections:
            connection.writer.close()
        async with asyncio.timeout(WAIT_SECONDS):
            ended = await asyncio.gather(
                *(connection.handler for connection in self.connections),
                return_exceptions=True,
            )
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome  # a reply rule failed: the test's, not the client's, fault

    async def push(self, data: bytes | str) -> None:
        """Send XML to every connected client."""
        for connection in self.connections:
            if not connection.closed and not connection.writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    await self._write(connection, data)

    async def send(self, data: bytes | str, connection: int = -1) -> None:
        """Send XML to one client connection (the newest by default)."""
        await self._write(self.connections[connection], data)

    @property
    def received(self) -> bytes:
        """Everything the clients sent, as one byte string (for substring checks)."""
        return b"".join(self.all_received())

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

    async def wait_disconnected(self) -> None:
        """Wait until every connection so far has ended (its client closed it, or it was dropped)."""
        await self.wait_for(
            lambda server: all(conn.closed for conn in server.connections)
        )

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # A plain callback runs as the connection is made, so its handler is known at once.
        connection = ServerConnection(writer)
        connection.handler = asyncio.get_running_loop().create_task(
            self._serve(reader, connection),
            name=f"fake INDI server connection {len(self.connections)}",
        )
        self.connections.append(connection)
        self._changed.set()

    async def _serve(
        self, reader: asyncio.StreamReader, connection: ServerConnection
    ) -> None:
        splitter = ElementSplitter()
        try:
            while data := await reader.read(65536):
                for element in splitter.feed(data):
                    connection.received.append(element)
                    await self._answer(connection, element)
                    self._changed.set()
        except OSError:
            pass  # the client reset the connection
        finally:
            connection.writer.close()
            connection.closed = True
            self._changed.set()

    async def _answer(self, connection: ServerConnection, element: bytes) -> None:
        replies: list[bytes | None]
        if element.startswith(b"<getProperties"):
            replies = ["".join(self.definitions).encode()]
        else:
            replies = [rule(element) for rule in self.reply_rules]
        for reply in replies:
            if reply:
                connection.writer.write(reply)
        await connection.writer.drain()

    @staticmethod
    async def _write(connection: ServerConnection, data: bytes | str) -> None:
        connection.writer.write(data.encode() if isinstance(data, str) else data)
        await connection.writer.drain()
