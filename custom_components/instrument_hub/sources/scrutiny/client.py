"""One TCP connection to a Scrutiny server: frames in and out, requests by ``reqid``, reconnects.

Nothing polls: the server pushes every status change, and the connection only speaks up after real
silence (an ``echo`` with a deadline, to notice a half-open link). The server greets every
connection with ``welcome``; a peer that does not is not a Scrutiny server. Responses carry the
request's ``reqid``; pushes carry ``reqid: null`` and go to ``on_push`` in arrival order. Frames
larger than ``executor_threshold``, or inflating past ``LOOP_INFLATE_BYTES``, are inflated and parsed in
the default executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
import itertools
import logging
import random
import time
from typing import Any, Final

from ..base import CannotConnect, CommandRejected, CommandTimeout, NotConnected
from ..warn_once import warn_first
from .protocol import (
    LOOP_INFLATE_BYTES,
    Frame,
    FrameDecoder,
    MessageError,
    MessageTooLargeForLoop,
    decode_frame,
    encode_message,
)

_LOGGER = logging.getLogger(__name__)

READ_SIZE: Final = 65536
CLOSE_TIMEOUT: Final = 1.0
JITTER: Final = 0.2
WELCOME_TIMEOUT: Final = 5.0
REQUEST_TIMEOUT: Final = 10.0
SILENCE_SECONDS: Final = 30.0
"""Seconds without a byte from the server after which an echo checks the link is still there."""
ECHO_TIMEOUT: Final = 5.0
EXECUTOR_THRESHOLD: Final = 65536
FRAMES_PER_STEP: Final = 256
"""Frames handled before the reader gives the loop its turn (a busy server's reads come back to back
without a loop step between them; each frame is a few µs to decode and hand on)."""
WELCOME: Final = "welcome"
ERROR: Final = "error"

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
type PushCallback = Callable[[dict[str, Any]], None]
type LinkCallback = Callable[[bool, str], None]


def loop_task_factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Create the task on the running loop (used when no factory is given)."""
    return asyncio.get_running_loop().create_task(coro, name=name)


class NotScrutiny(CannotConnect):
    """The endpoint accepted the connection but did not greet like a Scrutiny server."""

    translation_key = "not_scrutiny"


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


@dataclass(slots=True)
class _Pending:
    """A request waiting for its response (or, for multi-part answers, its last one)."""

    future: asyncio.Future[list[dict[str, Any]]]
    multipart: bool
    parts: list[dict[str, Any]] = field(default_factory=list)


class ScrutinyConnection:
    """A long-lived connection to a Scrutiny server, reconnecting with jittered exponential back-off.

    ``on_link(True, "")`` comes after every welcome, ``on_link(False, reason)`` when the link is
    lost; ``on_push`` gets every message without a request. Both run on the loop and must not block.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_push: PushCallback,
        on_link: LinkCallback,
        task_factory: TaskFactory | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        silence_seconds: float = SILENCE_SECONDS,
        executor_threshold: int = EXECUTOR_THRESHOLD,
    ) -> None:
        """Prepare the connection; nothing happens before connect()."""
        self._host = host
        self._port = port
        self._on_push = on_push
        self._on_link = on_link
        self._task_factory = task_factory or loop_task_factory
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._silence = silence_seconds
        self._executor_threshold = executor_threshold
        self._decoder = FrameDecoder(self._on_malformed)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._reqids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        self._last_received = 0.0
        self._silence_timer: asyncio.TimerHandle | None = None
        self._echo_task: asyncio.Task[None] | None = None
        self._warned_malformed = False
        self._early: list[Frame] = []
        self.server_time_zero: float | None = None
        self.connects = 0
        self.disconnects = 0
        self.bytes_in = 0
        self.messages_in = 0
        self.bad_messages = 0
        self.echoes = 0

    @property
    def endpoint(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        """Return True while a welcomed socket is open."""
        return self._writer is not None and not self._writer.is_closing()

    @property
    def malformed(self) -> int:
        """Return how many frames (or stretches of garbage) were skipped."""
        return self._decoder.malformed + self.bad_messages

    async def connect(self) -> None:
        """Open the first connection and wait for the welcome (CannotConnect, NotScrutiny)."""
        if self._closed:
            raise CannotConnect(
                "The connection was closed", host=self._host, port=str(self._port)
            )
        if not self.connected:
            await self._open()

    def start(self) -> None:
        """Start the task that reads and, when the link drops, reconnects."""
        if self._task is None and not self._closed:
            self._task = self._task_factory(
                self._run(), f"Scrutiny connection {self.endpoint}"
            )

    async def close(self) -> None:
        """Stop every task, fail pending requests and close the socket; idempotent."""
        self._closed = True
        for task in (self._task, self._echo_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise
        self._task = self._echo_task = None
        self._cancel_silence_timer()
        self._fail_pending("the connection was closed")
        await self._drop_socket()

    async def request(
        self,
        cmd: str,
        fields: Mapping[str, Any] | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> dict[str, Any]:
        """Send one request and return its response; CommandRejected for the server's error."""
        return (await self._request(cmd, fields, timeout=timeout, multipart=False))[0]

    async def request_all(
        self,
        cmd: str,
        fields: Mapping[str, Any] | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> list[dict[str, Any]]:
        """Send a request answered in several parts (the last has ``done: true``); return them all."""
        return await self._request(cmd, fields, timeout=timeout, multipart=True)

    async def send(self, message: Mapping[str, Any]) -> None:
        """Write one message; NotConnected while the link is down."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise self._not_connected()
        try:
            writer.write(encode_message(message))
            await writer.drain()
        except OSError as err:
            raise self._not_connected() from err

    def stats(self) -> dict[str, Any]:
        """Return the connection's state and counters (for diagnostics)."""
        return {
            "connected": self.connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "bytes_in": self.bytes_in,
            "messages_in": self.messages_in,
            "frames": self._decoder.frames,
            "malformed": self.malformed,
            "skipped_bytes": self._decoder.skipped_bytes,
            "pending_requests": len(self._pending),
            "echoes": self.echoes,
        }

    # ------------------------------------------------------------------ requests

    async def _request(
        self,
        cmd: str,
        fields: Mapping[str, Any] | None,
        *,
        timeout: float,
        multipart: bool,
    ) -> list[dict[str, Any]]:
        reqid = next(self._reqids)
        future: asyncio.Future[list[dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[reqid] = _Pending(future, multipart)
        try:
            await self.send({"cmd": cmd, "reqid": reqid, **(fields or {})})
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as err:
            raise CommandTimeout(
                f"The Scrutiny server {self.endpoint} did not answer {cmd} within {timeout:g} s",
                timeout=f"{timeout:g}",
            ) from err
        finally:
            self._pending.pop(reqid, None)

    def _resolve(self, message: dict[str, Any]) -> bool:
        """Hand a response to its request; False when no request waits for it."""
        reqid = message.get("reqid")
        pending = self._pending.get(reqid) if isinstance(reqid, int) else None
        if pending is None or pending.future.done():
            return False
        if message.get("cmd") == ERROR:
            pending.future.set_exception(
                CommandRejected(str(message.get("msg") or "request refused"))
            )
            return True
        pending.parts.append(message)
        if not pending.multipart or message.get("done") is not False:
            pending.future.set_result(pending.parts)
        return True

    def _fail_pending(self, why: str) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(self._not_connected(why))
        self._pending.clear()

    # ------------------------------------------------------------------ the session

    async def _open(self) -> None:
        """Connect and wait for the welcome; the socket stays open only for a Scrutiny server."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(self._host, self._port)
        except OSError as err:
            raise CannotConnect(
                f"Cannot connect to the Scrutiny server {self.endpoint}: {_describe(err)}",
                host=self._host,
                port=str(self._port),
            ) from err
        self._decoder.reset()
        self._reader, self._writer = reader, writer
        try:
            welcome = await self._read_welcome(reader)
        except BaseException:
            await self._drop_socket()
            raise
        zero = welcome.get("server_time_zero_timestamp")
        self.server_time_zero = float(zero) if isinstance(zero, int | float) else None

    async def _read_welcome(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        """Return the server's first message, which must be its welcome."""
        try:
            async with asyncio.timeout(WELCOME_TIMEOUT):
                while True:
                    data = await reader.read(READ_SIZE)
                    if not data:
                        raise NotScrutiny(
                            f"{self.endpoint} closed the connection without a welcome",
                            host=self._host,
                            port=str(self._port),
                        )
                    self.bytes_in += len(data)
                    frames = self._decoder.feed(data)
                    if frames:
                        message = self._decode(frames[0])
                        if message is None or message.get("cmd") != WELCOME:
                            raise self._not_scrutiny("its first message was no welcome")
                        # What came in the same read is the session's first traffic.
                        self._early = frames[1:]
                        return message
                    if self._decoder.malformed or self._decoder.buffered > 4096:
                        raise self._not_scrutiny(
                            "it does not speak the Scrutiny framing"
                        )
        except TimeoutError as err:
            raise self._not_scrutiny("no welcome within 5 s") from err
        except OSError as err:
            raise CannotConnect(
                f"Lost {self.endpoint} before its welcome: {_describe(err)}",
                host=self._host,
                port=str(self._port),
            ) from err

    async def _run(self) -> None:
        """Read while connected; after a loss reconnect with back-off, until close()."""
        delay = self._backoff_min
        while True:
            if not self.connected:
                delay = await self._reconnect(delay)
            worked = await self._session()
            delay = self._backoff_min if worked else min(delay * 2, self._backoff_max)

    async def _reconnect(self, delay: float) -> float:
        """Try until a server welcomes us, doubling the jittered delay after each failure."""
        attempt = 0
        while True:
            await asyncio.sleep(delay * random.uniform(1 - JITTER, 1 + JITTER))
            attempt += 1
            try:
                await self._open()
            except CannotConnect as err:
                _LOGGER.debug(
                    "Reconnect attempt %s to %s failed: %s", attempt, self.endpoint, err
                )
                delay = min(delay * 2, self._backoff_max)
            else:
                return delay

    async def _session(self) -> bool:
        """Serve one welcomed connection until it is lost; True when it carried messages."""
        reader = self._reader
        assert reader is not None
        self.connects += 1
        self._warned_malformed = False
        messages_before = self.messages_in
        reason = "connection closed by the server"
        self._last_received = time.monotonic()
        self._arm_silence_timer(self._silence)
        try:
            self._notify_link(up=True, reason="")
            early, self._early = self._early, []
            for frame in early:
                message = await self._decode_async(frame)
                if message is not None:
                    self._dispatch(message)
            handled = 0
            while data := await reader.read(READ_SIZE):
                self.bytes_in += len(data)
                self._last_received = time.monotonic()
                for frame in self._decoder.feed(data):
                    message = await self._decode_async(frame)
                    if message is not None:
                        self._dispatch(message)
                    handled += 1
                    if handled >= FRAMES_PER_STEP:
                        handled = 0
                        await asyncio.sleep(0)
        except OSError as err:
            reason = _describe(err)
        except Exception as err:
            # A bug must not end the connection task for good: log it, reconnect as after a loss.
            _LOGGER.exception("Unexpected error on the connection to %s", self.endpoint)
            reason = f"internal error: {_describe(err)}"
        finally:
            self._cancel_silence_timer()
            await self._drop_socket()
        self.disconnects += 1
        _LOGGER.debug("Lost the Scrutiny server %s: %s", self.endpoint, reason)
        self._fail_pending(f"lost the connection: {reason}")
        self._notify_link(up=False, reason=reason)
        return self.messages_in > messages_before

    def _dispatch(self, message: dict[str, Any]) -> None:
        self.messages_in += 1
        if message.get("reqid") is not None and self._resolve(message):
            return
        try:
            self._on_push(message)
        except Exception:
            _LOGGER.exception("Error while handling a message from %s", self.endpoint)

    def _decode(self, frame: Frame) -> dict[str, Any] | None:
        try:
            return decode_frame(frame)
        except MessageError as err:
            self.bad_messages += 1
            self._on_malformed(str(err), frame.payload[:80])
            return None

    async def _decode_async(self, frame: Frame) -> dict[str, Any] | None:
        if len(frame.payload) <= self._executor_threshold:
            # On the loop only while it stays small once inflated (a few KiB can hide megabytes).
            try:
                return decode_frame(frame, LOOP_INFLATE_BYTES)
            except MessageTooLargeForLoop:
                pass
            except MessageError as err:
                self.bad_messages += 1
                self._on_malformed(str(err), frame.payload[:80])
                return None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, decode_frame, frame)
        except MessageError as err:
            self.bad_messages += 1
            self._on_malformed(str(err), frame.payload[:80])
            return None

    def _on_malformed(self, reason: str, excerpt: bytes) -> None:
        """Log the first skipped frame of a connection as a warning, later ones at debug."""
        self._warned_malformed = warn_first(
            _LOGGER,
            self._warned_malformed,
            "Skipped malformed data from the Scrutiny server %s (%s): %r",
            self.endpoint,
            reason,
            excerpt,
            consequence="the stream goes on at the next frame",
        )

    # ------------------------------------------------------------------ liveness

    def _arm_silence_timer(self, delay: float) -> None:
        self._silence_timer = asyncio.get_running_loop().call_later(
            delay, self._silence_check
        )

    def _cancel_silence_timer(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None

    def _silence_check(self) -> None:
        """Re-arm for the rest of the silence, or ask the server whether it is still there."""
        quiet = time.monotonic() - self._last_received
        if quiet < self._silence:
            self._arm_silence_timer(self._silence - quiet)
            return
        self._silence_timer = None
        if self._echo_task is None or self._echo_task.done():
            self._echo_task = self._task_factory(
                self._echo(), f"Scrutiny echo {self.endpoint}"
            )

    async def _echo(self) -> None:
        """Send an echo; no answer in time means a dead link: abort it (the reader reconnects)."""
        self.echoes += 1
        try:
            await self.request(
                "echo",
                {"payload": "instrument_hub"},
                timeout=min(ECHO_TIMEOUT, self._silence),
            )
        except CommandTimeout:
            _LOGGER.debug("No echo from %s: dropping the link", self.endpoint)
            writer = self._writer
            if writer is not None:
                writer.transport.abort()
            return
        except NotConnected:
            return
        except CommandRejected:
            # Refused, but answered: the link is alive; keep checking it after the next silence.
            pass
        if self.connected:
            self._arm_silence_timer(self._silence)

    # ------------------------------------------------------------------ helpers

    async def _drop_socket(self) -> None:
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
            pass  # reset by the peer: closed either way

    def _notify_link(self, *, up: bool, reason: str) -> None:
        try:
            self._on_link(up, reason)
        except Exception:
            _LOGGER.exception(
                "Error while reporting a link change of %s", self.endpoint
            )

    def _not_scrutiny(self, why: str) -> NotScrutiny:
        return NotScrutiny(
            f"{self.endpoint} is not a Scrutiny server: {why}",
            host=self._host,
            port=str(self._port),
        )

    def _not_connected(self, why: str = "the link is down") -> NotConnected:
        return NotConnected(
            f"Not connected to the Scrutiny server {self.endpoint}: {why}",
            host=self._host,
            port=str(self._port),
        )
