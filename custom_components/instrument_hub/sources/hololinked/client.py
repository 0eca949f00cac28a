"""HTTP to one hololinked Thing on an aiohttp session the caller owns (Home Assistant's shared one).

:class:`ThingClient` makes the requests (TD, property reads and writes, actions, the server's
``/liveness``) and turns every failure into a :class:`SourceError`: the Thing's own error, which
hololinked 0.4.2 returns inside an HTTP 200 body (``{"exception": {...}}``), as well as 4xx/5xx
answers and transport failures. :class:`EventStream` keeps one SSE subscription open, reconnecting
with jittered back-off. Nothing here logs a credential: they only ever travel in request headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
import contextlib
from dataclasses import dataclass
import json
import logging
import random
import time
from typing import Any, Final

import aiohttp

from ..base import (
    AuthenticationFailed,
    CannotConnect,
    CommandRejected,
    CommandTimeout,
    SourceError,
)
from ..keepalive import enable_keepalive
from ..warn_once import warn_first
from .protocol import (
    DEFAULT_MAX_LINE_BYTES,
    PayloadError,
    SseEvent,
    SseParser,
    decode_payload,
    thing_error,
)
from .td import Form, NotAThingDescription, ThingDescription, ThingUrl, parse_td

_LOGGER = logging.getLogger(__name__)

REQUEST_TIMEOUT: Final = 10.0
"""Seconds a TD fetch, a property read or a write may take."""
ACTION_TIMEOUT: Final = 60.0
"""Seconds an action may take until the Thing answers (a measurement, a move)."""
CONNECT_TIMEOUT: Final = 10.0
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
EXECUTOR_JSON_BYTES: Final = 256 * 1024
"""Bodies larger than this are JSON-decoded in the executor, not on the event loop."""
JITTER: Final = 0.2
STREAM_HEALTHY_SECONDS: Final = 30.0
"""A subscription open this long (or that delivered anything) resets its back-off."""
LIVENESS_PATH: Final = "liveness"
KEEPALIVE_IDLE: Final = 5
KEEPALIVE_INTERVAL: Final = 2
KEEPALIVE_COUNT: Final = 3
"""A subscription's host that vanished (a PC unplugged) fails the stream 11 s after its last byte:
the kernel's probes, a few bytes every 5 s on a quiet stream, never a loop wake-up."""
EVENT_STREAM: Final = "text/event-stream"
_READ_SIZE: Final = 65536
FEED_BYTES: Final = 4 * 1024
"""What the parser takes from a read in one go (a read of a busy stream holds everything buffered,
hundreds of KiB: thousands of events)."""
STEP_SECONDS: Final = 0.010
"""How long one loop step may go on delivering a read's events before the loop gets its turn."""
_CHECK_EVERY: Final = 32
_NO_BODY: Final = object()

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


def loop_task_factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Create the task on the running loop (used when no factory is given)."""
    return asyncio.get_running_loop().create_task(coro, name=name)


def jittered(delay: float) -> float:
    """Return a back-off delay randomised by ±20 %, so many clients do not retry in lockstep."""
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """HTTP Basic user and password and/or an API key (hololinked's ``X-API-Key``)."""

    username: str | None = None
    password: str | None = None
    api_key: str | None = None

    def __repr__(self) -> str:
        """Say which kinds of credentials there are, never their values."""
        kinds = [kind for kind in ("basic", "api_key") if self.has(kind)]
        return f"Credentials({', '.join(kinds) or 'none'})"

    def has(self, kind: str) -> bool:
        """Tell whether credentials of a kind (``basic``, ``api_key``) are given."""
        if kind == "basic":
            return bool(self.username)
        return bool(self.api_key)

    @property
    def empty(self) -> bool:
        """Tell whether no credentials are given."""
        return not (self.username or self.api_key)

    def headers(self) -> dict[str, str]:
        """Return the request headers that carry the credentials."""
        headers: dict[str, str] = {}
        if self.username:
            headers["Authorization"] = aiohttp.encode_basic_auth(
                self.username, self.password or ""
            )
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers


def describe(err: BaseException) -> str:
    """Return a short reason for a transport error (never a URL's credentials: there are none)."""
    if isinstance(err, TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


class ThingClient:
    """Requests to one Thing: every answer checked, every failure a SourceError."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: ThingUrl,
        credentials: Credentials | None = None,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """Use ``session`` (not closed here) for the Thing at ``url``."""
        self.session = session
        self.url = url
        self.credentials = credentials or Credentials()
        self.request_timeout = request_timeout
        self._headers = self.credentials.headers()

    def headers(self, accept: str = "application/json") -> dict[str, str]:
        """Return the headers of a request (credentials included)."""
        return {"Accept": accept, **self._headers}

    async def fetch_td(self) -> ThingDescription:
        """Fetch and parse the TD, asking for hrefs on the configured authority.

        CannotConnect when nothing answers, AuthenticationFailed on 401/403, NotAThingDescription for
        anything that is not a TD (a 404 page, another JSON document).
        """
        try:
            document = await self._request(
                "GET",
                self.url.td_url(),
                params={"authority": json.dumps(self.url.origin)},
                timeout=self.request_timeout,
            )
        except CommandRejected as err:
            raise NotAThingDescription(err.message) from err
        except CommandTimeout as err:
            raise CannotConnect(err.message, url=self.url.base) from err
        return parse_td(document, self.url)

    async def check_alive(self, timeout: float) -> None:
        """Ask the server's ``/liveness``; any HTTP answer means alive, CannotConnect otherwise."""
        try:
            async with self.session.get(
                self.url.server_url(LIVENESS_PATH),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                await response.release()
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise CannotConnect(
                f"{self.url.authority} does not answer: {describe(err)}",
                url=self.url.base,
            ) from err

    async def read(self, form: Form) -> object:
        """Read a property; return its value."""
        return await self._request(form.method, form.href, timeout=self.request_timeout)

    async def write(self, form: Form, value: object) -> object:
        """Write a property; return the Thing's reply (hololinked: null)."""
        return await self._request(
            form.method, form.href, body=value, timeout=self.request_timeout
        )

    async def invoke(self, form: Form, payload: object = _NO_BODY) -> object:
        """Invoke an action (keyword arguments as a JSON object); return its output."""
        return await self._request(
            form.method, form.href, body=payload, timeout=ACTION_TIMEOUT
        )

    async def _request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        body: object = _NO_BODY,
        params: Mapping[str, str] | None = None,
    ) -> object:
        headers = self.headers()
        data: bytes | None = None
        if body is not _NO_BODY:
            # hololinked refuses anything but application/json (400 "Content-Type not supported").
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            async with asyncio.timeout(timeout):
                async with self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    params=params,
                    timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
                    allow_redirects=False,
                ) as response:
                    raw = await self._read_body(response)
                    status = response.status
                    reason = response.reason or ""
        except SourceError:
            raise
        except TimeoutError as err:
            raise CommandTimeout(
                f"no answer from {self.url.authority} within {timeout:g} s",
                url=self.url.base,
            ) from err
        except (aiohttp.ClientError, OSError) as err:
            raise CannotConnect(
                f"{self.url.authority}: {describe(err)}", url=self.url.base
            ) from err
        return await self._answer(status, reason, raw)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_READ_SIZE):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise CommandRejected(
                    f"the answer is larger than {MAX_BODY_BYTES} bytes",
                    url=self.url.base,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _answer(self, status: int, reason: str, raw: bytes) -> object:
        if status in (401, 403):
            raise AuthenticationFailed(
                f"{self.url.authority} refused the credentials (HTTP {status})",
                url=self.url.base,
            )
        body = await self._decode(raw)
        error = thing_error(body)
        if status == 408:
            raise CommandTimeout(
                error.message if error else f"the Thing timed out (HTTP 408 {reason})",
                url=self.url.base,
            )
        if error is not None:
            raise CommandRejected(error.message, url=self.url.base)
        if status >= 300:
            raise CommandRejected(f"HTTP {status} {reason}".strip(), url=self.url.base)
        return body

    @staticmethod
    async def _decode(raw: bytes) -> object:
        """Return a body's JSON (None when empty); a body that is not JSON comes back as text."""
        if not raw.strip():
            return None
        try:
            if len(raw) > EXECUTOR_JSON_BYTES:
                return await asyncio.get_running_loop().run_in_executor(
                    None, json.loads, raw
                )
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------
# Event streams


type PayloadCallback = Callable[[object, int], None]
"""Told every decoded payload of the stream and the size of its data (characters)."""
type LostCallback = Callable[[str, bool], None]
"""Told (reason, authentication refused) every time the subscription ends or cannot be opened."""


@dataclass(slots=True)
class StreamStats:
    """What one subscription saw (for diagnostics)."""

    connects: int = 0
    failures: int = 0
    events: int = 0
    bytes_in: int = 0
    malformed_lines: int = 0
    not_json: int = 0
    keepalive: bool = False
    """TCP keepalive is on for the open subscription's socket."""


class EventStream:
    """One SSE subscription (an event, or an observable property's change events), kept open.

    :meth:`start` runs a task that subscribes, parses and decodes, and on any end (the Thing went
    away, the server closed the stream, an HTTP error) tells ``on_lost`` and subscribes again after
    a back-off of ``backoff_min`` doubling up to ``backoff_max`` (±20 %). The stream carries no
    heartbeat, so silence is never taken for a loss and nothing times out a read; the socket gets
    TCP keepalive (a vanished host ends the stream within 11 s), and ``heard_at`` tells the source
    how long the stream has been quiet. Malformed lines
    and data that is not JSON are skipped: the first of a connection is a WARNING, later ones DEBUG.
    """

    def __init__(
        self,
        client: ThingClient,
        name: str,
        form: Form,
        *,
        on_payload: PayloadCallback,
        on_lost: LostCallback,
        task_factory: TaskFactory | None = None,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        """Prepare the subscription; nothing is requested before start()."""
        self.client = client
        self.name = name
        self.form = form
        self._on_payload = on_payload
        self._on_lost = on_lost
        self._task_factory = task_factory or loop_task_factory
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._parser = SseParser(max_line_bytes, on_drop=self._on_drop)
        self._step_started = 0.0
        self._new_step = True
        self._clock = time.monotonic
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self.opened = asyncio.Event()
        """Set while the subscription is open (the server sent its headers: it is subscribed)."""
        self.tried = asyncio.Event()
        """Set once the first subscription attempt opened or failed."""
        self.heard_at = 0.0
        """``time.monotonic()`` of the subscription's last read (or its opening)."""
        self.stats = StreamStats()

    @property
    def open(self) -> bool:
        """Tell whether the subscription is open."""
        return self.opened.is_set()

    def start(self) -> None:
        """Start subscribing (idempotent)."""
        if self._task is None or self._task.done():
            self._task = self._task_factory(self._run(), f"hololinked SSE {self.name}")

    async def stop(self) -> None:
        """Stop the task and close the subscription; leaves no task behind."""
        task, self._task = self._task, None
        self.opened.clear()
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self) -> None:
        delay = self._backoff_min
        while True:
            started = time.monotonic()
            delivered = False
            try:
                delivered = await self._subscribe()
                reason, refused = "the server ended the stream", False
            except AuthenticationFailed as err:
                reason, refused = err.message, True
            except SourceError as err:
                reason, refused = err.message, False
            except (aiohttp.ClientError, OSError) as err:
                reason, refused = describe(err), False
            except Exception as err:
                # A bug must not end the subscription for good: log it, subscribe again.
                _LOGGER.exception("Unexpected error on the event stream %s", self.name)
                reason, refused = f"internal error: {describe(err)}", False
            self.opened.clear()
            self.tried.set()
            self.stats.failures += 1
            _LOGGER.debug("Event stream %s ended: %s", self.name, reason)
            with contextlib.suppress(Exception):
                self._on_lost(reason, refused)
            healthy = delivered or time.monotonic() - started >= STREAM_HEALTHY_SECONDS
            delay = self._backoff_min if healthy else min(delay * 2, self._backoff_max)
            await asyncio.sleep(jittered(delay))

    async def _subscribe(self) -> bool:
        """Read one subscription until it ends; return whether it delivered anything."""
        client = self.client
        self._parser.reset()
        self._warned = False
        delivered = False
        async with client.session.request(
            self.form.method,
            self.form.href,
            headers={**client.headers(EVENT_STREAM), "Cache-Control": "no-cache"},
            # No read timeout: an idle stream sends nothing at all (no heartbeat).
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT
            ),
            allow_redirects=False,
        ) as response:
            if response.status in (401, 403):
                raise AuthenticationFailed(
                    f"{client.url.authority} refused the credentials (HTTP {response.status})"
                )
            if response.status != 200:
                raise CommandRejected(
                    f"HTTP {response.status} {response.reason or ''}".strip()
                )
            if response.content_type != EVENT_STREAM:
                raise CommandRejected(f"not an event stream ({response.content_type})")
            # A vanished host is the kernel's to notice: no request, no wake-up while quiet.
            connection = response.connection
            self.stats.keepalive = enable_keepalive(
                connection.transport if connection is not None else None,
                idle=KEEPALIVE_IDLE,
                interval=KEEPALIVE_INTERVAL,
                count=KEEPALIVE_COUNT,
            )
            self.heard_at = time.monotonic()
            self.opened.set()
            self.tried.set()
            self.stats.connects += 1
            # Bounded reads: a busy stream buffers hundreds of HTTP chunks (one per event), and
            # handing them all over at once is aiohttp's own work in this task's step.
            async for chunk in response.content.iter_chunked(FEED_BYTES):
                self.heard_at = self._clock()
                self.stats.bytes_in += len(chunk)
                delivered = True
                await self._feed(chunk)
        return delivered

    async def _feed(self, chunk: bytes) -> None:
        """Parse and deliver a read, giving the loop its turn every ``STEP_SECONDS`` of work.

        A busy stream's read holds thousands of events; handled in one go they would hold the loop
        for tens of milliseconds. Slices of ``FEED_BYTES`` bound the parsing between two checks,
        every ``_CHECK_EVERY`` events bounds the delivering; the loop only yields when the step
        has really run long, so a normal read is still handled in one step. The next read is often
        there already (the reader hands it over within the same loop step), so a step's time is
        counted from its true start: a callback scheduled at the start of a step runs only once
        the step has ended, and tells that the next read starts a new one.
        """
        clock = self._clock
        if self._new_step:
            self._begin_step()
        for start in range(0, len(chunk), FEED_BYTES):
            events = self._parser.feed(chunk[start : start + FEED_BYTES])
            for index, event in enumerate(events, start=1):
                self._deliver(event)
                if (
                    index % _CHECK_EVERY == 0
                    and clock() - self._step_started > STEP_SECONDS
                ):
                    await asyncio.sleep(0)
                    self._begin_step()
            if clock() - self._step_started > STEP_SECONDS:
                await asyncio.sleep(0)
                self._begin_step()

    def _begin_step(self) -> None:
        self._new_step = False
        self._step_started = self._clock()
        asyncio.get_running_loop().call_soon(self._step_ended)

    def _step_ended(self) -> None:
        self._new_step = True

    def _deliver(self, event: SseEvent) -> None:
        try:
            payload = decode_payload(event.data)
        except PayloadError as err:
            self.stats.not_json += 1
            self._warn("data that is not JSON", f"{err}: {event.data[:80]!r}")
            return
        self.stats.events += 1
        try:
            self._on_payload(payload, len(event.data))
        except Exception:
            # A bug in the consumer must not cost the subscription: log it and keep reading.
            _LOGGER.exception("Error while handling an event of %s", self.name)

    def _on_drop(self, reason: str, excerpt: bytes) -> None:
        self.stats.malformed_lines += 1
        self._warn(
            "a malformed line", f"{reason}: {excerpt.decode('utf-8', 'replace')!r}"
        )

    def _warn(self, what: str, detail: str) -> None:
        self._warned = warn_first(
            _LOGGER,
            self._warned,
            "Event stream %s: skipped %s (%s)",
            self.name,
            what,
            detail,
            consequence="the stream goes on",
        )
