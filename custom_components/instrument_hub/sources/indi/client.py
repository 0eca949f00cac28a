"""Keep one TCP connection to an INDI server: connect, read, split into elements, reconnect.

The connection knows nothing about properties: it hands every complete top-level element to
``on_element`` and reports link changes to ``on_link``. After every (re)connect it asks for all
properties (``getProperties``), because the server tells a new connection nothing by itself.

Liveness. INDI has no heartbeat, and a server that froze (or a network path that black-holes packets)
keeps the socket open. So after ``silence_timeout`` seconds without a byte the connection sends the
``probe`` the source gives (a getProperties for one known property of each device, which every INDI
server answers with its definition) and drops the link when nothing at all arrives within
``probe_timeout`` more: a frozen server is noticed at most ``silence_timeout + probe_timeout`` seconds
(40 s by default) after its last byte, and the connection reconnects. TCP keepalive (idle 30 s, then
every 10 s, 3 probes) covers a peer host that vanished. A server that has defined nothing may be silent
for good, so without a probe only keepalive watches it.

The link counts as up once the server answered the connection's getProperties (its first byte), so a
connection accepted by something that then says nothing (a stalled proxy) is not shown as connected;
only when there is nothing to ask for (no probe) is it up as soon as the socket is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
import logging
import random
import socket
from typing import Any

from ..base import CannotConnect, NotConnected
from .protocol import (
    DEFAULT_MAX_ELEMENT_BYTES,
    ElementSplitter,
    ProtocolError,
    get_properties,
)

_LOGGER = logging.getLogger(__name__)

READ_SIZE = 65536
CLOSE_TIMEOUT = 1.0
"""Seconds to let a closing socket flush before it is aborted."""
JITTER = 0.2
"""Each back-off delay is randomised by ±20 % so many clients do not retry in lockstep."""
SILENCE_TIMEOUT = 30.0
"""Seconds without a byte from the server before the liveness probe goes out."""
PROBE_TIMEOUT = 10.0
"""Seconds the server has to answer the probe before the link counts as dead."""
KEEPALIVE_IDLE = 30
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 3
_EXCERPT_CHARS = 80

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
"""Creates a named background task (Home Assistant passes entry.async_create_background_task)."""
type ElementCallback = Callable[[bytes], None]
type LinkCallback = Callable[[bool, str], None]
type Backpressure = Callable[[], Awaitable[None]]
"""Awaited after each read: returns when the consumer has room, so a slow consumer pauses reading
(and TCP then slows the server) instead of letting its queue grow without bound."""
type Probe = Callable[[], bytes | None]
"""Returns what to send to make a silent server speak (None: nothing it must answer is known)."""


def loop_task_factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Create the task on the running loop (used when no factory is given)."""
    return asyncio.get_running_loop().create_task(coro, name=name)


class _Silent(Exception):
    """The server stayed silent through the liveness probe."""


def _nothing_to_probe() -> None:
    return None


def _enable_keepalive(writer: asyncio.StreamWriter) -> None:
    """Turn on TCP keepalive (where the platform has the options), so a vanished peer host is noticed."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except OSError as err:
        _LOGGER.debug("TCP keepalive not enabled: %s", err)


def _describe(err: BaseException) -> str:
    """Return a short human-readable reason for a connection error."""
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


class IndiConnection:
    """One long-lived connection to an INDI server, reconnecting with exponential back-off.

    ``on_element`` receives every complete top-level element (it may raise ProtocolError to have a
    malformed element counted and logged here); ``on_link`` is told ``(True, "")`` after every
    (re)connect and ``(False, reason)`` when the connection is lost. Both are called on the loop
    and must not block.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_element: ElementCallback,
        on_link: LinkCallback,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        max_element_bytes: int = DEFAULT_MAX_ELEMENT_BYTES,
        task_factory: TaskFactory | None = None,
        backpressure: Backpressure | None = None,
        probe: Probe | None = None,
        silence_timeout: float | None = None,
        probe_timeout: float | None = None,
    ) -> None:
        """Prepare the connection; nothing happens before connect() or start().

        ``silence_timeout``/``probe_timeout`` default to SILENCE_TIMEOUT/PROBE_TIMEOUT (read now).
        """
        self._backpressure = backpressure
        self._probe = probe or _nothing_to_probe
        self._silence_timeout = (
            SILENCE_TIMEOUT if silence_timeout is None else silence_timeout
        )
        self._probe_timeout = PROBE_TIMEOUT if probe_timeout is None else probe_timeout
        self._host = host
        self._port = port
        self._on_element = on_element
        self._on_link = on_link
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_max, backoff_min)
        self._task_factory = task_factory or loop_task_factory
        self._splitter = ElementSplitter(max_element_bytes, on_drop=self._on_drop)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._warned_malformed = (
            False  # one WARNING per connection, later ones at DEBUG
        )
        self._connects = 0
        self._disconnects = 0
        self._bytes_in = 0
        self._malformed = 0
        self._probes = 0
        self._silent_drops = 0
        self._link_up = False

    @property
    def endpoint(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        """Return True while a socket is open."""
        return self._writer is not None and not self._writer.is_closing()

    @property
    def liveness_bound(self) -> float:
        """Return the longest a frozen server goes unnoticed after its last byte (seconds)."""
        return self._silence_timeout + self._probe_timeout

    async def connect(self) -> None:
        """Open the first connection; raises CannotConnect on refusal, timeout or a DNS error.

        Reading (and the getProperties request) only starts with start(), so whoever consumes the
        elements can get ready in between.
        """
        if self._closed:
            raise CannotConnect(
                "The connection was closed", host=self._host, port=str(self._port)
            )
        if not self.connected:
            self._reader, self._writer = await self._open()

    def start(self) -> None:
        """Start the one background task that reads and, when the link drops, reconnects."""
        if self._closed:
            raise RuntimeError("start() after close()")
        if self._task is None:
            self._task = self._task_factory(
                self._run(), f"INDI connection {self.endpoint}"
            )

    async def send(self, data: bytes) -> None:
        """Write bytes to the server; raises NotConnected while the link is down."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise self._not_connected()
        try:
            writer.write(data)
            await writer.drain()
        except OSError as err:
            raise self._not_connected() from err

    async def close(self) -> None:
        """Stop the task and close the socket; idempotent, leaves no task behind."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # close() itself was cancelled: do not swallow that
        await self._drop_socket()

    def report_malformed(self, reason: str, raw: bytes) -> None:
        """Count a malformed or truncated element; WARNING for the first one of a connection."""
        self._malformed += 1
        excerpt = raw[:_EXCERPT_CHARS].decode("utf-8", "replace")
        if self._warned_malformed:
            _LOGGER.debug(
                "Malformed INDI data from %s (%s): %r", self.endpoint, reason, excerpt
            )
            return
        self._warned_malformed = True
        _LOGGER.warning(
            "Malformed INDI data from %s (%s): %r; the element was skipped, further ones on this "
            "connection are only logged at debug level",
            self.endpoint,
            reason,
            excerpt,
        )

    def stats(self) -> dict[str, Any]:
        """Return the connection's state and counters (for diagnostics)."""
        splitter = self._splitter
        return {
            "connected": self.connected,
            "link_up": self._link_up,
            "connects": self._connects,
            "disconnects": self._disconnects,
            "probes": self._probes,
            "silent_drops": self._silent_drops,
            "liveness_bound_s": self.liveness_bound,
            "bytes_in": self._bytes_in,
            "elements": splitter.elements,
            "malformed": self._malformed,
            "truncated": splitter.truncated,
            "oversized": splitter.oversized,
            "skipped_bytes": splitter.skipped_bytes,
            "dropped_bytes": splitter.dropped_bytes,
        }

    async def _run(self) -> None:
        """Read while connected; after a loss, reconnect with back-off, forever until close()."""
        delay = self._backoff_min
        wait_first = False
        while True:
            if not self.connected:
                await self._reconnect(delay, wait_first=wait_first)
            received = await self._session()
            # A connection that was closed before sending anything (a server that accepts and
            # drops) keeps backing off; one that worked resets the back-off.
            delay = self._backoff_min if received else min(delay * 2, self._backoff_max)
            wait_first = True

    async def _reconnect(self, delay: float, *, wait_first: bool) -> None:
        """Try to connect until it works, doubling the delay after each failure (debug logs only)."""
        attempt = 0
        wait = wait_first
        while True:
            if wait:
                await asyncio.sleep(delay * random.uniform(1 - JITTER, 1 + JITTER))
            attempt += 1
            try:
                self._reader, self._writer = await self._open()
            except CannotConnect as err:
                _LOGGER.debug(
                    "Reconnect attempt %s to %s failed: %s", attempt, self.endpoint, err
                )
                delay = min(delay * 2, self._backoff_max) if wait else delay
                wait = True
            else:
                return

    async def _session(self) -> int:
        """Serve one connection until it is lost; return the number of bytes received."""
        reader = self._reader
        assert reader is not None
        self._connects += 1
        if self._connects > 1:
            # The hub logs availability once at info; this is the protocol-level detail.
            _LOGGER.debug("Connection to the INDI server %s is back", self.endpoint)
        self._splitter.reset()
        self._warned_malformed = False
        received = 0
        reason = "connection closed by the server"
        try:
            if self._probe() is None:
                self._notify_link(
                    up=True, reason=""
                )  # nothing the server must answer: up at once
            await self.send(get_properties())
            while data := await self._read(reader):
                if not self._link_up:
                    self._notify_link(up=True, reason="")
                received += len(data)
                self._bytes_in += len(data)
                for element in self._splitter.feed(data):
                    self._deliver(element)
                if self._backpressure is not None:
                    await self._backpressure()
        except _Silent:
            self._silent_drops += 1
            reason = (
                f"the server sent nothing for {self.liveness_bound:g} s and did not answer the "
                "liveness probe"
            )
        except NotConnected as err:
            reason = _describe(err.__cause__ or err)
        except OSError as err:
            reason = _describe(err)
        except Exception as err:
            # A bug must not end the connection task for good: log it, reconnect like after a loss.
            _LOGGER.exception("Unexpected error on the connection to %s", self.endpoint)
            reason = f"internal error: {_describe(err)}"
        finally:
            await self._drop_socket()
        self._disconnects += 1
        _LOGGER.debug(
            "Lost the connection to the INDI server %s: %s", self.endpoint, reason
        )
        if self._link_up:
            self._notify_link(up=False, reason=reason)
        return received

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        """Read what arrives; after a silence probe the server, and raise _Silent when it stays mute."""
        while True:
            try:
                async with asyncio.timeout(self._silence_timeout):
                    return await reader.read(READ_SIZE)
            except TimeoutError:
                pass
            probe = self._probe()
            if probe is not None:
                break
            # Nothing the server must answer: TCP keepalive watches it; keep reading.
        self._probes += 1
        _LOGGER.debug(
            "No data from %s for %g s: probing it", self.endpoint, self._silence_timeout
        )
        try:
            async with asyncio.timeout(self._probe_timeout):
                await self.send(probe)
                return await reader.read(READ_SIZE)
        except TimeoutError:
            raise _Silent from None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except OSError as err:
            # Refused, unreachable, a DNS failure and TimeoutError (an OSError) alike.
            raise CannotConnect(
                f"Cannot connect to the INDI server {self.endpoint}: {_describe(err)}",
                host=self._host,
                port=str(self._port),
            ) from err
        _enable_keepalive(writer)
        return reader, writer

    async def _drop_socket(self) -> None:
        """Close the socket; abort it when it cannot flush in time (a peer that stopped reading)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except OSError:
            pass  # the peer reset the connection: it is closed either way

    def _deliver(self, element: bytes) -> None:
        try:
            self._on_element(element)
        except ProtocolError as err:
            self.report_malformed(str(err), element)
        except Exception:
            # A bug in the consumer must not cost the connection: log it and keep reading.
            _LOGGER.exception("Error while handling an element from %s", self.endpoint)

    def _notify_link(self, *, up: bool, reason: str) -> None:
        self._link_up = up
        try:
            self._on_link(up, reason)
        except Exception:
            _LOGGER.exception(
                "Error while reporting a link change of %s", self.endpoint
            )

    def _on_drop(self, reason: str, excerpt: bytes) -> None:
        self.report_malformed(f"{reason} element", excerpt)

    def _not_connected(self) -> NotConnected:
        return NotConnected(
            f"Not connected to the INDI server {self.endpoint}",
            host=self._host,
            port=str(self._port),
        )
