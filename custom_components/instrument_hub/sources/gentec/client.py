"""One serial port to a Gentec-EO meter: open it, frame and classify lines, one command at a time.

The line is half-duplex in practice: the meter answers one command after the other, so a command
waits for the previous one's reply (a lock), and every reply line is offered to the one exchange in
flight. Measurement lines that no exchange asked for are stream values (``*CAU``) and go to
``on_value``. Opening uses pyserial's URLs (a device path, ``socket://``, ``rfc2217://``) through
pyserial-asyncio-fast, as Home Assistant core does for serial devices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import logging
import time
from typing import Any

import serial
import serial_asyncio_fast

from ..base import CannotConnect, CommandRejected, CommandTimeout, NotConnected
from ..warn_once import warn_first
from .protocol import (
    BAUD_RATE,
    DeviceError,
    LineFramer,
    Reply,
    Unreadable,
    Value,
    parse_line,
)

_LOGGER = logging.getLogger(__name__)

OPEN_TIMEOUT = 5.0
REPLY_TIMEOUT = 0.4
"""Seconds a reply may take; the longest (``*STS``, ~0.6 kB at 115200 baud) needs ~50 ms."""
SETTLE = 0.05
"""Pause after a command without reply: INTEGRA needs 50 ms after ``*PWC`` (PyHardwareLibrary), and
the hololinked driver saw garbage from ``*GWL`` sent right after a write."""
CLOSE_TIMEOUT = 2.0
_EXCERPT = 60

type ValueCallback = Callable[[Value, float], None]
"""Called with a stream value and the monotonic time its line was complete."""
type LostCallback = Callable[[str], None]


class Exchange:
    """One command's wait for its reply: ``accept`` says which lines answer it and when it is done.

    ``accept(reply)`` returns None for a line that is not for this command, False to take the line
    and keep waiting (multi-line replies), True to take it and finish.
    """

    __slots__ = ("accept", "future", "replies")

    def __init__(
        self,
        accept: Callable[[Reply], bool | None],
        future: asyncio.Future[list[Reply]],
    ) -> None:
        """Wait for the lines ``accept`` takes."""
        self.accept = accept
        self.future = future
        self.replies: list[Reply] = []

    def offer(self, reply: Reply) -> bool:
        """Take a line if it answers the command; return whether it was taken."""
        if self.future.done():
            return False
        if isinstance(reply, DeviceError):
            self.future.set_exception(
                CommandRejected(f"Error {reply.code}: {reply.reason}")
            )
            return True
        verdict = self.accept(reply)
        if verdict is None:
            return False
        self.replies.append(reply)
        if verdict:
            self.future.set_result(self.replies)
        return True


class _PortProtocol(asyncio.Protocol):
    """Receives bytes from the transport and hands them to the connection."""

    def __init__(self, connection: MaestroConnection) -> None:
        self.connection = connection
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.connection.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.connection.connection_lost(exc)


class MaestroConnection:
    """An open port (or nothing) and its line handling; reopened by the source after a loss."""

    def __init__(
        self,
        port: str,
        *,
        on_value: ValueCallback,
        on_lost: LostCallback,
        reply_timeout: float = REPLY_TIMEOUT,
        settle: float = SETTLE,
    ) -> None:
        """Describe the port; nothing opens before open()."""
        self.port = port
        self._on_value = on_value
        self._on_lost = on_lost
        self.reply_timeout = reply_timeout
        self.settle = settle
        self.streaming = False
        """While the meter streams, bare numbers are stream values, never replies."""
        self._framer = LineFramer()
        self._transport: asyncio.Transport | None = None
        self._protocol: _PortProtocol | None = None
        self._lock = asyncio.Lock()
        self._exchange: Exchange | None = None
        self._warned = False
        self.last_line = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.lines = 0
        self.unreadable = 0
        self.stray = 0
        self.timeouts = 0

    @property
    def is_open(self) -> bool:
        """Return True while the port is open."""
        return self._transport is not None and not self._transport.is_closing()

    @property
    def oversized(self) -> int:
        """Return how many over-long lines were dropped."""
        return self._framer.oversized

    async def open(self) -> None:
        """Open the port at 115200 8N1; CannotConnect when it cannot be opened."""
        loop = asyncio.get_running_loop()
        self._framer.reset()
        self._warned = False
        self.streaming = False
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                (
                    transport,
                    protocol,
                ) = await serial_asyncio_fast.create_serial_connection(
                    loop,
                    lambda: _PortProtocol(self),
                    self.port,
                    baudrate=BAUD_RATE,
                    bytesize=serial.EIGHTBITS,
                    parity=serial.PARITY_NONE,
                    stopbits=serial.STOPBITS_ONE,
                    xonxoff=False,
                    rtscts=False,
                )
        except (OSError, TimeoutError, serial.SerialException, ValueError) as err:
            raise CannotConnect(
                f"Cannot open {self.port}: {err or 'timed out'}", port=self.port
            ) from err
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(protocol, _PortProtocol)
        self._transport = transport
        self._protocol = protocol
        self.last_line = time.monotonic()

    async def close(self) -> None:
        """Close the port and wait until it is closed (the close runs in the executor)."""
        transport, protocol = self._transport, self._protocol
        self._transport = None
        if transport is None or protocol is None:
            return
        transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(protocol.closed)
        self._protocol = None

    # ------------------------------------------------------------------ commands

    async def send(self, data: bytes) -> None:
        """Send a command that has no reply (a setter, ``*CAU``, ``*CSU``), then let the meter settle."""
        async with self._lock:
            self._write(data)
            await asyncio.sleep(self.settle)

    async def query(
        self,
        data: bytes,
        accept: Callable[[Reply], bool | None],
        *,
        timeout: float | None = None,
        then: bytes | None = None,
    ) -> list[Reply]:
        """Send a command and return the lines that answer it (``accept``: see :class:`Exchange`).

        ``then`` is sent as soon as the first answering line arrives: a marker command whose reply
        ends a reply that has no end of its own (``*DVS``). Raises CommandTimeout when no (complete)
        answer came in time, CommandRejected for ``Error X: ...``, NotConnected when the port is closed.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[list[Reply]] = loop.create_future()
            marker_sent = then is None

            def accept_with_marker(reply: Reply) -> bool | None:
                nonlocal marker_sent
                verdict = accept(reply)
                if verdict is not None and not marker_sent:
                    marker_sent = True
                    assert then is not None
                    self._write(then)
                return verdict

            exchange = Exchange(accept_with_marker, future)
            self._exchange = exchange
            try:
                self._write(data)
                async with asyncio.timeout(timeout or self.reply_timeout):
                    return await future
            except TimeoutError as err:
                self.timeouts += 1
                raise CommandTimeout(
                    f"no answer to {data.decode('ascii', 'replace')} from {self.port}"
                ) from err
            finally:
                self._exchange = None
                if not future.done():
                    future.cancel()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise NotConnected(f"{self.port} is not open", port=self.port)
        transport.write(data)
        self.bytes_out += len(data)

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes) -> None:
        """Frame, classify and route the lines ``data`` completes."""
        self.bytes_in += len(data)
        for raw in self._framer.feed(data):
            self.lines += 1
            reply = parse_line(raw)
            if isinstance(reply, Unreadable):
                self._report(reply.reason, raw)
                continue
            self.last_line = time.monotonic()
            exchange = self._exchange
            if (
                isinstance(reply, Value)
                and self.streaming
                or exchange is None
                or not exchange.offer(reply)
            ):
                self._unsolicited(reply)

    def _unsolicited(self, reply: Reply) -> None:
        if isinstance(reply, Value) and self.streaming:
            self._on_value(reply, self.last_line)
        else:
            # A late answer to a command that timed out, or a reply nobody asked for.
            self.stray += 1
            _LOGGER.debug("Unexpected reply from %s: %s", self.port, reply)

    def _report(self, reason: str, raw: bytes) -> None:
        """Count a line that is no reply; WARNING once per connection, later ones at debug."""
        self.unreadable += 1
        self._warned = warn_first(
            _LOGGER,
            self._warned,
            "Unreadable line from %s (%s): %r",
            self.port,
            reason,
            raw[:_EXCERPT],
            consequence="skipped",
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the exchange in flight and tell the source."""
        self._transport = None
        exchange = self._exchange
        if exchange is not None and not exchange.future.done():
            exchange.future.set_exception(
                NotConnected(f"{self.port} was closed", port=self.port)
            )
        self._on_lost(str(exc) if exc else "port closed")

    def stats(self) -> dict[str, Any]:
        """Return the connection's counters (for diagnostics)."""
        return {
            "open": self.is_open,
            "streaming": self.streaming,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "lines": self.lines,
            "unreadable_lines": self.unreadable,
            "oversized_lines": self.oversized,
            "unexpected_replies": self.stray,
            "reply_timeouts": self.timeouts,
        }
