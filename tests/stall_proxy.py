"""A TCP proxy on 127.0.0.1 that can stop forwarding, as a frozen server or a black-holing network does.

    proxy = StallProxy(upstream_port)
    await proxy.start()          # clients connect to proxy.port
    proxy.stall()                # nothing passes in either direction; connections stay open
    proxy.resume()               # what was held back goes through, and everything after it

While stalled the proxy still accepts connections (the kernel would too) and forwards nothing on them. A client
closing its side closes the proxy's connection upstream, so the server keeps no stale clients.
"""

from __future__ import annotations

import asyncio

from .fake_indi import WAIT_SECONDS

CHUNK = 65536


class StallProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream until stalled."""

    def __init__(self, upstream: int) -> None:
        """Nothing listens before start()."""
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._new_connection = asyncio.Event()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def wait_accepted(self, count: int) -> None:
        """Wait (bounded) until ``count`` connections were accepted in all."""
        async with asyncio.timeout(WAIT_SECONDS * 3):
            while self.accepted < count:
                self._new_connection.clear()
                await self._new_connection.wait()

    def stall(self) -> None:
        """Stop forwarding (both directions, every connection, new ones too)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again."""
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening, close every connection and end every pump."""
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for pump in list(self._pumps):
            pump.cancel()
        async with asyncio.timeout(WAIT_SECONDS):
            await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self._new_connection.set()
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream
            )
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        for reader, writer, other in (
            (client_reader, server_writer, client_writer),
            (server_reader, client_writer, server_writer),
        ):
            pump = asyncio.get_running_loop().create_task(
                self._pump(reader, writer, other)
            )
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        """Copy one direction; a stall holds the data read (and TCP then holds the sender)."""
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            # One side ended: end both at once (a stalled peer would never let a close flush).
            for end in (writer, other):
                end.transport.abort()
                self._writers.discard(end)
