"""A scripted INDI server for captured-traffic tests: replays XML the real servers sent.

It listens on 127.0.0.1 only, records everything clients send, answers getProperties with the
definitions it was given, and lets a test push further XML or drop every client at any moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from pathlib import Path
import re

CAPTURES = Path(__file__).parent / "fixtures" / "indi"

type ReplyRule = Callable[[bytes], bytes | None]


def server_lines(capture_name: str) -> list[str]:
    """Return the XML the server sent in a capture file, one element per line, in order."""
    lines = (CAPTURES / capture_name).read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        if line.strip().endswith("<<< SERVER SENDS:") and index + 1 < len(lines):
            out.append(lines[index + 1])
    return out


def lines_matching(lines: list[str], pattern: str) -> list[str]:
    """Return the lines that match a regular expression."""
    return [line for line in lines if re.search(pattern, line)]


class IndiReplayServer:
    """One listening socket; every client gets the definitions, then whatever the test pushes."""

    def __init__(self) -> None:
        """Nothing listens until start()."""
        self.definitions: list[str] = []
        self.received = bytearray()
        self.reply_rules: list[ReplyRule] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._received_event = asyncio.Event()
        self.connections = 0
        self.port = 0

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (a free port unless one is given)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every client; waits for every handler to end."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop_clients()

    async def drop_clients(self) -> None:
        """Close every client connection (the server itself keeps listening unless closed)."""
        for writer in list(self._writers):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def push(self, xml: str | bytes) -> None:
        """Send XML to every connected client."""
        data = xml.encode() if isinstance(xml, str) else xml
        for writer in list(self._writers):
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def wait_received(self, needle: bytes, timeout: float = 5.0) -> None:
        """Wait until a client sent ``needle`` (bounded)."""
        async with asyncio.timeout(timeout):
            while needle not in self.received:
                self._received_event.clear()
                await self._received_event.wait()

    async def wait_closed_by_clients(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every client closed its connection (EOF seen by the server)."""
        async with asyncio.timeout(timeout):
            await asyncio.gather(*list(self._handlers))

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while data := await reader.read(65536):
                self.received.extend(data)
                self._received_event.set()
                if b"<getProperties" in data:
                    writer.write("".join(self.definitions).encode())
                for rule in self.reply_rules:
                    if (reply := rule(data)) is not None:
                        writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)
