"""Keep one TCP connection to an INDI server: connect, read, parse, reconnect.

The connection knows nothing about properties: it parses what arrives (``stream``), hands every
complete top-level element to ``on_element`` and reports link changes to ``on_link``. After every
(re)connect it asks for all properties (``getProperties``), because the server tells a new connection
nothing by itself.

Reading is an asyncio Protocol: the bytes of a socket read are parsed in the very callback that
received them, and the elements handed on from there, in order; no task wakes up per read. One callback
parses at most ``FEED_BYTES``: when a read brought more, reading pauses and the rest is parsed in the
following loop iterations (so no input, however it is made, holds the loop longer than that costs).
When the consumer has no room (``has_room``: a BLOB's decoded bytes pile up faster than the disk takes
them) reading pauses until it calls ``room_available``, and TCP then slows the server.

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
from collections.abc import Callable, Coroutine
import logging
import random
from typing import Any, Final

from ..base import CannotConnect, NotConnected
from ..keepalive import enable_keepalive
from ..warn_once import warn_first
from .protocol import DEFAULT_MAX_ELEMENT_BYTES, get_properties
from .stream import BlobOpener, ElementCallback, IndiStreamParser

_LOGGER = logging.getLogger(__name__)

FEED_BYTES: Final = 16 * 1024
"""Most bytes parsed in one loop callback (a socket read may bring up to 256 KiB)."""
CLOSE_TIMEOUT = 1.0
"""Seconds to let a closing socket flush before it is aborted."""
JITTER = 0.2
"""Each back-off delay is randomised by ±20 % so many clients do not retry in lockstep."""
SILENCE_TIMEOUT = 30.0
"""Seconds without a byte from the server before the liveness probe goes out."""
PROBE_TIMEOUT = 10.0
"""Seconds the server has to answer the probe before the link counts as dead."""
_EXCERPT_CHARS = 80
_CLOSED_BY_SERVER: Final = "connection closed by the server"

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
"""Creates a named background task (Home Assistant passes entry.async_create_background_task)."""
type LinkCallback = Callable[[bool, str], None]
type RoomCheck = Callable[[], bool]
"""Asked after each piece parsed: False pauses reading until ``room_available`` is called."""
type Probe = Callable[[], bytes | None]
"""Returns what to send to make a silent server speak (None: nothing it must answer is known)."""


def loop_task_factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Create the task on the running loop (used when no factory is given)."""
    return asyncio.get_running_loop().create_task(coro, name=name)


def _nothing_to_probe() -> None:
    return None


def _always_room() -> bool:
    return True


def _describe(err: BaseException) -> str:
    """Return a short human-readable reason for a connection error."""
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


class _Session(asyncio.Protocol):
    """One TCP connection: its transport, write flow control and the way it ended."""

    def __init__(self, connection: IndiConnection) -> None:
        self._connection = connection
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ended: asyncio.Future[str] = loop.create_future()
        """The reason the session ended (set once)."""
        self.closed = asyncio.Event()
        self._writable: asyncio.Future[None] | None = None
        self.received = 0
        self.rest: memoryview | None = None
        """What of the last read is not parsed yet."""
        self.pauses: set[str] = set()
        self.lost_reason: str | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Nothing is read before the session is served (this also keeps the reader from being added).
        self.pause("start")

    def data_received(self, data: bytes) -> None:
        self._connection._received(self, data)  # noqa: SLF001

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(
                None
            )  # a waiting send() sees the closed connection
        self.lost_reason = _CLOSED_BY_SERVER if exc is None else _describe(exc)
        if self.rest is None:
            self.end(self.lost_reason)
        # else: what the server sent before closing is still parsed first (see IndiConnection).

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # ------------------------------------------------------------------ for the connection

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        writable = self._writable
        if writable is not None and not writable.done():
            await asyncio.shield(writable)
        if self.closed.is_set():
            raise ConnectionResetError("the connection was closed")

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    def pause(self, why: str) -> None:
        self.pauses.add(why)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self, why: str) -> None:
        self.pauses.discard(why)
        if (
            not self.pauses
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self.transport.resume_reading()


class IndiConnection:
    """One long-lived connection to an INDI server, reconnecting with exponential back-off.

    ``on_element`` receives every complete top-level element, parsed; ``on_link`` is told
    ``(True, "")`` after every (re)connect and ``(False, reason)`` when the connection is lost. Both
    are called on the loop and must not block. ``open_blob`` receives BLOB content as it streams in
    (see ``stream``).
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
        open_blob: BlobOpener | None = None,
        has_room: RoomCheck | None = None,
        probe: Probe | None = None,
        silence_timeout: float | None = None,
        probe_timeout: float | None = None,
    ) -> None:
        """Prepare the connection; nothing happens before connect() or start().

        ``silence_timeout``/``probe_timeout`` default to SILENCE_TIMEOUT/PROBE_TIMEOUT (read now).
        """
        self._has_room = has_room or _always_room
        self._probe = probe or _nothing_to_probe
        self._silence_timeout = (
            SILENCE_TIMEOUT if silence_timeout is None else silence_timeout
        )
        self._probe_timeout = PROBE_TIMEOUT if probe_timeout is None else probe_timeout
        self._host = host
        self._port = port
        self._on_link = on_link
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_max, backoff_min)
        self._task_factory = task_factory or loop_task_factory
        # The parser guards the consumer's call (a bug there is logged, reading goes on).
        self._parser = IndiStreamParser(
            on_element,
            self._on_malformed,
            open_blob=open_blob,
            max_element_bytes=max_element_bytes,
        )
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._warned_malformed = (
            False  # one WARNING per connection, later ones at DEBUG
        )
        self._last_data = 0.0
        self._probe_sent = 0.0
        self._connects = 0
        self._disconnects = 0
        self._bytes_in = 0
        self._malformed = 0
        self._probes = 0
        self._silent_drops = 0
        self._room_pauses = 0
        self._link_up = False

    @property
    def endpoint(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        """Return True while a socket is open."""
        session = self._session
        return (
            session is not None
            and session.transport is not None
            and not session.transport.is_closing()
        )

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
            self._session = await self._open()

    def start(self) -> None:
        """Start the one background task that serves the connection and, when it drops, reconnects."""
        if self._closed:
            raise RuntimeError("start() after close()")
        if self._task is None:
            self._task = self._task_factory(
                self._run(), f"INDI connection {self.endpoint}"
            )

    async def send(self, data: bytes) -> None:
        """Write bytes to the server; raises NotConnected while the link is down."""
        session = self._session
        if (
            session is None
            or session.transport is None
            or session.transport.is_closing()
        ):
            raise self._not_connected()
        try:
            session.transport.write(data)
            await session.drain()
        except OSError as err:
            raise self._not_connected() from err

    def send_nowait(self, data: bytes) -> bool:
        """Queue bytes for the server without waiting for them to leave; False while the link is down.

        For small requests made while handling what the server sent (enableBLOB, getProperties): the
        transport buffers them in order.
        """
        session = self._session
        if (
            session is None
            or session.transport is None
            or session.transport.is_closing()
        ):
            return False
        session.transport.write(data)
        return True

    def room_available(self) -> None:
        """Continue reading if it was paused for want of room (the consumer has room again)."""
        session = self._session
        if session is None or "room" not in session.pauses:
            return
        if session.rest is not None:
            session.pauses.discard("room")
            asyncio.get_running_loop().call_soon(self._parse_rest, session)
        else:
            session.resume("room")

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
        self._parser.reset()  # an unfinished element's BLOB is thrown away

    def report_malformed(self, reason: str, raw: bytes) -> None:
        """Count a malformed or truncated element; WARNING for the first one of a connection."""
        self._malformed += 1
        self._warned_malformed = warn_first(
            _LOGGER,
            self._warned_malformed,
            "Malformed INDI data from %s (%s): %r",
            self.endpoint,
            reason,
            raw[:_EXCERPT_CHARS].decode("utf-8", "replace"),
            consequence="the element was skipped",
        )

    def stats(self) -> dict[str, Any]:
        """Return the connection's state and counters (for diagnostics)."""
        parser = self._parser
        return {
            "connected": self.connected,
            "link_up": self._link_up,
            "connects": self._connects,
            "disconnects": self._disconnects,
            "probes": self._probes,
            "silent_drops": self._silent_drops,
            "liveness_bound_s": self.liveness_bound,
            "bytes_in": self._bytes_in,
            "elements": parser.elements,
            "malformed": self._malformed,
            "truncated": parser.truncated,
            "oversized": parser.oversized,
            "skipped_bytes": parser.skipped_bytes,
            "room_pauses": self._room_pauses,
        }

    # ------------------------------------------------------------------ the task

    async def _run(self) -> None:
        """Serve the connection; after a loss, reconnect with back-off, forever until close()."""
        delay = self._backoff_min
        wait_first = False
        while True:
            if not self.connected:
                await self._reconnect(delay, wait_first=wait_first)
            received = await self._serve()
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
                self._session = await self._open()
            except CannotConnect as err:
                _LOGGER.debug(
                    "Reconnect attempt %s to %s failed: %s", attempt, self.endpoint, err
                )
                delay = min(delay * 2, self._backoff_max) if wait else delay
                wait = True
            else:
                return

    async def _serve(self) -> int:
        """Serve one connection until it is lost; return the number of bytes received."""
        session = self._session
        assert session is not None and session.transport is not None
        self._connects += 1
        if self._connects > 1:
            # The hub logs availability once at info; this is the protocol-level detail.
            _LOGGER.debug("Connection to the INDI server %s is back", self.endpoint)
        self._parser.reset()
        self._warned_malformed = False
        reason = _CLOSED_BY_SERVER
        try:
            if self._probe() is None:
                # Nothing the server must answer: up at once.
                self._notify_link(up=True, reason="")
            await self.send(get_properties())
            self._last_data = asyncio.get_running_loop().time()
            self._watch_silence()
            session.resume("start")
            reason = await session.ended
        except NotConnected as err:
            reason = _describe(err.__cause__ or err)
        finally:
            self._stop_watching()
            await self._drop_socket()
        self._disconnects += 1
        _LOGGER.debug(
            "Lost the connection to the INDI server %s: %s", self.endpoint, reason
        )
        if self._link_up:
            self._notify_link(up=False, reason=reason)
        return session.received

    async def _open(self) -> _Session:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, session = await loop.create_connection(
                    lambda: _Session(self), self._host, self._port
                )
        except OSError as err:
            # Refused, unreachable, a DNS failure and TimeoutError (an OSError) alike.
            raise CannotConnect(
                f"Cannot connect to the INDI server {self.endpoint}: {_describe(err)}",
                host=self._host,
                port=str(self._port),
            ) from err
        enable_keepalive(transport)
        return session

    async def _drop_socket(self) -> None:
        """Close the socket; abort it when it cannot flush in time (a peer that stopped reading)."""
        session, self._session = self._session, None
        if session is None or session.transport is None:
            return
        session.rest = None
        transport = session.transport
        if not transport.is_closing():
            transport.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await session.closed.wait()
        except TimeoutError:
            transport.abort()

    # ------------------------------------------------------------------ reading

    def _received(self, session: _Session, data: bytes) -> None:
        """Parse a socket read (at most FEED_BYTES now, the rest in the next loop iterations)."""
        if session is not self._session:
            return
        self._last_data = asyncio.get_running_loop().time()
        session.received += len(data)
        self._bytes_in += len(data)
        if not self._link_up:
            self._notify_link(up=True, reason="")
        if len(data) > FEED_BYTES:
            view = memoryview(data)
            session.rest = view[FEED_BYTES:]
            session.pause("rest")
            asyncio.get_running_loop().call_soon(self._parse_rest, session)
            self._parse(session, view[:FEED_BYTES])
        else:
            self._parse(session, data)

    def _parse_rest(self, session: _Session) -> None:
        """Parse the next piece of a large read; reading resumes once all of it is parsed."""
        rest = session.rest
        if rest is None or session is not self._session or "room" in session.pauses:
            return
        piece = rest[:FEED_BYTES]
        session.rest = rest[FEED_BYTES:] if len(rest) > FEED_BYTES else None
        self._parse(session, piece)
        if session.rest is not None:
            if "room" not in session.pauses:
                asyncio.get_running_loop().call_soon(self._parse_rest, session)
            return
        if session.lost_reason is not None:
            session.end(session.lost_reason)  # the server closed after sending this
        else:
            session.resume("rest")

    def _parse(self, session: _Session, data: bytes | memoryview) -> None:
        try:
            self._parser.feed(data)
        except Exception as err:
            # A bug must not end the connection for good: log it, reconnect like after a loss.
            _LOGGER.exception("Unexpected error on the connection to %s", self.endpoint)
            session.end(f"internal error: {_describe(err)}")
            if session.transport is not None:
                session.transport.abort()
            return
        if not self._has_room() and "room" not in session.pauses:
            self._room_pauses += 1
            session.pause("room")

    def _on_malformed(self, reason: str, excerpt: bytes) -> None:
        self.report_malformed(reason, excerpt)

    # ------------------------------------------------------------------ liveness

    def _watch_silence(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(
            self._last_data + self._silence_timeout, self._silence_check
        )

    def _stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _silence_check(self) -> None:
        """Probe the server after a silence, or look again later when data came meanwhile."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._last_data + self._silence_timeout:
            self._watch_silence()  # data came meanwhile: one timer per silence period, not per read
            return
        probe = self._probe()
        if probe is None:
            # Nothing the server must answer: TCP keepalive watches it; look again later.
            self._timer = loop.call_at(now + self._silence_timeout, self._silence_check)
            return
        self._probes += 1
        _LOGGER.debug(
            "No data from %s for %g s: probing it", self.endpoint, self._silence_timeout
        )
        self._probe_sent = now
        self.send_nowait(probe)
        self._timer = loop.call_at(now + self._probe_timeout, self._probe_check)

    def _probe_check(self) -> None:
        if self._last_data >= self._probe_sent:
            self._watch_silence()  # it answered
            return
        self._timer = None
        self._silent_drops += 1
        session = self._session
        if session is not None:
            session.end(
                f"the server sent nothing for {self.liveness_bound:g} s and did not answer the "
                "liveness probe"
            )

    def _notify_link(self, *, up: bool, reason: str) -> None:
        self._link_up = up
        try:
            self._on_link(up, reason)
        except Exception:
            _LOGGER.exception(
                "Error while reporting a link change of %s", self.endpoint
            )

    def _not_connected(self) -> NotConnected:
        return NotConnected(
            f"Not connected to the INDI server {self.endpoint}",
            host=self._host,
            port=str(self._port),
        )
