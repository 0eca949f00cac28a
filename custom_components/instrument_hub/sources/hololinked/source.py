"""The hololinked source: one Thing, from its Thing Description, as normalized events, and commands.

Pushed, not polled: every event and every observable property is an SSE subscription
(:class:`EventStream`); the other readable properties are read at start, after each write and
every ``refresh_interval`` seconds. A hololinked stream has no heartbeat, so silence is not death:
the link is the server's ``/liveness``, asked at once when a subscription ends (a killed Thing
closes every socket, so that is noticed within milliseconds) and after ``liveness_interval`` seconds
in which no stream brought a byte (a frozen Thing: noticed within ``liveness_interval +
liveness_timeout``, 40 s). While the Thing pushes, nothing is asked; while it is quiet, one request
per ``liveness_interval``. A host that vanished (a PC unplugged) ends the streams by TCP keepalive
within 11 s of their last byte, and that is a subscription ending.
When the link is lost every subscription stops; coming back means the TD again (a changed Thing
redefines its channels, never duplicates them), the properties read again and every subscription
opened again, retried with jittered back-off (1 s doubling to 60 s) until it works.

Credentials the Thing refuses (HTTP 401/403) raise AuthenticationFailed from ``async_start``; later
on they take the link down and ``on_auth_failed`` is called once, so the entry asks for new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
import logging
import time
from typing import Any, Final

import aiohttp

from ...events import (
    ChannelRemoved,
    DeviceFound,
    Event,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
)
from ...log_excerpt import excerpt
from ..base import (
    AuthenticationFailed,
    CannotConnect,
    CommandResult,
    EventSink,
    InvalidValue,
    NotConnected,
    Source,
    SourceError,
    UnknownTarget,
)
from .client import (
    Credentials,
    EventStream,
    TaskFactory,
    ThingClient,
    jittered,
    loop_task_factory,
)
from .mapping import (
    EventBinding,
    PropertyBinding,
    ThingMap,
    event_readings,
    humanize,
    map_thing,
    property_reading,
    write_value,
)
from .protocol import thing_error
from .td import Form, NotAThingDescription, ThingDescription, ThingUrl

_LOGGER = logging.getLogger(__name__)

REFRESH_INTERVAL: Final = 30.0
"""Seconds between two reads of the properties that push no change events."""
LIVENESS_INTERVAL: Final = 30.0
"""Seconds without a byte on any stream before ``/liveness`` is asked (as INDI's silence)."""
LIVENESS_TIMEOUT: Final = 10.0
"""Seconds ``/liveness`` has to answer: a frozen Thing is noticed within 40 s of its last byte."""
STREAM_OPEN_TIMEOUT: Final = 5.0
"""Seconds the subscriptions get to open (or fail) before the properties are read (no change lost)."""
AUTH_REFUSED: Final = "the Thing refused the credentials"


@dataclass(slots=True)
class _Counters:
    connects: int = 0
    td_fetches: int = 0
    liveness_failures: int = 0
    property_reads: int = 0
    read_failures: int = 0
    writes: int = 0
    actions: int = 0
    thing_errors: int = 0


class HololinkedSource(Source):
    """One hololinked Thing over HTTP (any Thing: the channels come from its TD)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: ThingUrl,
        credentials: Credentials | None = None,
        *,
        local_tz: tzinfo = UTC,
        task_factory: TaskFactory | None = None,
        on_auth_failed: Callable[[], None] | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
        liveness_interval: float = LIVENESS_INTERVAL,
        liveness_timeout: float = LIVENESS_TIMEOUT,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        request_timeout: float | None = None,
    ) -> None:
        """Prepare the source on ``session`` (Home Assistant's shared one; never closed here)."""
        self._client = ThingClient(session, url, credentials)
        if request_timeout is not None:
            self._client.request_timeout = request_timeout
        self._url = url
        self._local_tz = local_tz
        self._task_factory = task_factory or loop_task_factory
        self._on_auth_failed = on_auth_failed
        self._refresh_interval = refresh_interval
        self._liveness_interval = liveness_interval
        self._liveness_timeout = liveness_timeout
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._sink: EventSink | None = None
        self._td: ThingDescription | None = None
        self._map: ThingMap | None = None
        self._streams: list[EventStream] = []
        self._stream_seq: dict[str, int] = {}
        self._link_up = False
        self._kick = asyncio.Event()
        self._checked_at = 0.0
        self._auth_refused = False
        self._auth_reported = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error: str | None = None
        self._counters = _Counters()

    # ------------------------------------------------------------------ Source API

    @property
    def thing(self) -> ThingDescription | None:
        """The Thing Description of the last connection."""
        return self._td

    async def async_start(self, sink: EventSink) -> None:
        """Fetch the TD, define the channels, read and subscribe; then keep it all up."""
        self._sink = sink
        await self._connect()
        self._tasks = [
            self._task_factory(
                self._supervise(), f"hololinked link {self._url.authority}"
            ),
            self._task_factory(
                self._refresh(), f"hololinked refresh {self._url.authority}"
            ),
        ]

    async def async_stop(self) -> None:
        """Stop every task and subscription; leaves nothing behind (the session is not ours)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        await self._stop_streams()
        self._link_up = False
        self._sink = None

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write a property; resolves once the Thing accepted it and its new value was read back."""
        self._require_link()
        binding = self._property_binding(device_key, channel_key)
        form = binding.affordance.write
        if form is None or not self._is_writable(channel_key):
            raise InvalidValue(f"{binding.name} is read-only", value=str(value))
        wire = write_value(binding, value)
        self._counters.writes += 1
        await self._client.write(form, wire)
        confirmed = await self._read_back(binding)
        return CommandResult("Ok", values={binding.name: confirmed})

    async def async_run_action(
        self, device_key: str, channel_key: str
    ) -> CommandResult:
        """Invoke a button's action (one without input)."""
        self._require_link()
        thing_map = self._require_map(device_key)
        action = thing_map.actions.get(channel_key)
        if action is None:
            return await super().async_run_action(device_key, channel_key)
        self._counters.actions += 1
        output = await self._client.invoke(action.invoke)
        return CommandResult("Ok", values={"output": output})

    async def async_invoke(self, name: str, payload: object = None) -> CommandResult:
        """Invoke any action of the TD by name, with its input (a JSON object of keyword arguments)."""
        self._require_link()
        td = self._td
        action = td.actions.get(name) if td is not None else None
        if action is None:
            raise UnknownTarget(
                f"the Thing has no action {name!r}",
                device=td.id if td else "",
                channel=name,
            )
        schema = action.input
        if payload is not None and schema is not None and schema.type == "object":
            if not isinstance(payload, dict):
                raise InvalidValue(
                    f"{name} takes a JSON object as input", value=excerpt(payload)
                )
        if schema is not None and schema.required:
            given = payload if isinstance(payload, dict) else {}
            missing = [key for key in schema.required if key not in given]
            if missing:
                raise InvalidValue(
                    f"{name} needs {', '.join(missing)} in its input",
                    value=excerpt(payload),
                )
        self._counters.actions += 1
        if payload is None:
            output = await self._client.invoke(action.invoke)
        else:
            output = await self._client.invoke(action.invoke, payload)
        return CommandResult("Ok", values={"output": output})

    def diagnostics(self) -> dict[str, Any]:
        """Return the Thing's model, the subscriptions' figures and the counters (no secrets)."""
        td, thing_map = self._td, self._map
        return {
            "url": self._url.base,
            "credentials": repr(self._client.credentials),
            "link_up": self._link_up,
            "thing_id": td.id if td else None,
            "title": td.title if td else None,
            "security": list(td.security) if td else [],
            "properties": sorted(td.properties) if td else [],
            "events": sorted(td.events) if td else [],
            "actions": sorted(td.actions) if td else [],
            "buttons": sorted(a.name for a in thing_map.actions.values())
            if thing_map
            else [],
            "unmapped": list(thing_map.unmapped) if thing_map else [],
            "streams": {
                stream.name: {"open": stream.open, **asdict(stream.stats)}
                for stream in self._streams
            },
            "counters": asdict(self._counters),
            "last_error": self._scrub(self._last_error),
            "refresh_interval": self._refresh_interval,
            "liveness_interval": self._liveness_interval,
        }

    # ------------------------------------------------------------------ connecting

    async def _connect(self) -> None:
        """Fetch the TD, (re)define the channels, subscribe, read the properties, report the link."""
        self._counters.td_fetches += 1
        try:
            td = await self._client.fetch_td()
        except NotAThingDescription as err:
            raise CannotConnect(
                f"{self._url.authority} did not answer with a Thing Description: {err}",
                url=self._url.base,
            ) from err
        except AuthenticationFailed:
            self._auth_refused = True
            raise
        self._auth_refused = False
        self._auth_reported = False
        self._counters.connects += 1
        self._apply_td(td)
        self._checked_at = time.monotonic()
        self._set_link(up=True, reason="")
        self._start_streams()
        await self._wait_streams_open()
        await self._read_properties(self._readable())

    def _apply_td(self, td: ThingDescription) -> None:
        thing_map = map_thing(td)
        previous = self._map
        self._td, self._map = td, thing_map
        self._emit(
            DeviceFound(
                td.id,
                humanize(td.id),
                manufacturer="hololinked",
                model=td.title,
            )
        )
        keys = {definition.channel_key for definition in thing_map.definitions}
        if previous is not None:
            # A Thing restarted with another TD: what it no longer has becomes unavailable.
            for definition in previous.definitions:
                if definition.channel_key not in keys:
                    self._emit(ChannelRemoved(td.id, definition.channel_key))
        for definition in thing_map.definitions:
            self._emit(definition)

    def _start_streams(self) -> None:
        td, thing_map = self._td, self._map
        assert td is not None and thing_map is not None
        streams = [
            self._stream(
                event.name, td.events[event.name].subscribe, self._event_handler(event)
            )
            for event in thing_map.events.values()
        ]
        streams += [
            self._stream(
                f"{prop.name}/change-event", observe, self._change_handler(prop)
            )
            for prop in thing_map.properties.values()
            if (observe := prop.affordance.observe) is not None
        ]
        self._streams = streams
        for stream in streams:
            stream.start()

    def _stream(
        self, name: str, form: Form, on_payload: Callable[[object, int], None]
    ) -> EventStream:
        return EventStream(
            self._client,
            name,
            form,
            on_payload=on_payload,
            on_lost=self._on_stream_lost,
            task_factory=self._task_factory,
            backoff_min=self._backoff_min,
            backoff_max=self._backoff_max,
        )

    async def _wait_streams_open(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STREAM_OPEN_TIMEOUT):
                # A stream that cannot open (its route fails) does not hold the others up.
                await asyncio.gather(*(stream.tried.wait() for stream in self._streams))

    async def _stop_streams(self) -> None:
        streams, self._streams = self._streams, []
        await asyncio.gather(*(stream.stop() for stream in streams))

    def _on_stream_lost(self, reason: str, refused: bool) -> None:
        if refused:
            self._auth_refused = True
        self._kick.set()

    # ------------------------------------------------------------------ the link

    async def _supervise(self) -> None:
        """Watch the link while up; while down, reconnect with back-off. Forever, until stopped."""
        delay = self._backoff_min
        while True:
            if self._link_up:
                quiet_left = self._liveness_interval - (
                    time.monotonic() - self._heard_at()
                )
                if quiet_left > 0 and not self._kick.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(quiet_left):
                            await self._kick.wait()
                    if not self._kick.is_set():
                        continue  # the streams may have spoken meanwhile: measure again
                self._kick.clear()
                reason = await self._check()
                self._checked_at = time.monotonic()
                if reason is not None:
                    await self._go_down(reason)
                    delay = self._backoff_min
                continue
            await asyncio.sleep(jittered(delay))
            try:
                await self._connect()
            except AuthenticationFailed as err:
                self._last_error = err.message
                self._report_auth()
            except SourceError as err:
                self._last_error = err.message
                _LOGGER.debug("Reconnecting to %s failed: %s", self._url.authority, err)
            else:
                continue
            delay = min(delay * 2, self._backoff_max)

    def _heard_at(self) -> float:
        """Return when the Thing last proved alive: a stream's read, a connect or a check."""
        return max([self._checked_at, *(stream.heard_at for stream in self._streams)])

    async def _check(self) -> str | None:
        """Return why the link is lost (None while it is fine)."""
        if self._auth_refused:
            return AUTH_REFUSED
        try:
            await self._client.check_alive(self._liveness_timeout)
        except CannotConnect as err:
            self._counters.liveness_failures += 1
            self._last_error = err.message
            return err.message
        return None

    async def _go_down(self, reason: str) -> None:
        await self._stop_streams()
        self._set_link(up=False, reason=reason)
        if self._auth_refused:
            self._report_auth()

    def _report_auth(self) -> None:
        """Ask for new credentials once per loss (the entry starts its reauthentication)."""
        if self._auth_reported or self._on_auth_failed is None:
            return
        self._auth_reported = True
        try:
            self._on_auth_failed()
        except Exception:
            _LOGGER.exception("Error while reporting refused credentials")

    def _set_link(self, *, up: bool, reason: str) -> None:
        if up == self._link_up:
            return
        self._link_up = up
        self._emit(LinkUp() if up else LinkDown(reason))

    async def _refresh(self) -> None:
        """Read the properties without change events every ``refresh_interval`` seconds."""
        while True:
            await asyncio.sleep(self._refresh_interval)
            if self._link_up:
                await self._read_properties(
                    b for b in self._readable() if b.affordance.observe is None
                )

    # ------------------------------------------------------------------ values

    def _readable(self) -> list[PropertyBinding]:
        thing_map = self._map
        if thing_map is None:
            return []
        return [
            b for b in thing_map.properties.values() if b.affordance.read is not None
        ]

    async def _read_properties(self, bindings: Iterable[PropertyBinding]) -> None:
        results = await asyncio.gather(
            *(self._read_property(binding) for binding in bindings),
            return_exceptions=True,
        )
        if any(isinstance(result, CannotConnect) for result in results):
            self._kick.set()

    async def _read_property(self, binding: PropertyBinding) -> object:
        """Read one property and emit its value, unless a change event overtook the read."""
        form = binding.affordance.read
        assert form is not None
        seq = self._stream_seq.get(binding.channel_key, 0)
        self._counters.property_reads += 1
        try:
            value = await self._client.read(form)
        except CannotConnect:
            self._counters.read_failures += 1
            raise
        except SourceError as err:
            # The Thing's getter raised: the property stays as it was; the rest goes on.
            self._counters.read_failures += 1
            _LOGGER.debug("Reading %s failed: %s", binding.name, err)
            return None
        if (
            self._stream_seq.get(binding.channel_key, 0) == seq
            and self._map is not None
        ):
            self._emit(property_reading(self._device_key, binding, value))
        return value

    async def _read_back(self, binding: PropertyBinding) -> object:
        if binding.affordance.read is None:
            return None
        try:
            return await self._read_property(binding)
        except CannotConnect:
            self._kick.set()
            return None

    def _event_handler(self, binding: EventBinding) -> Callable[[object, int], None]:
        def handle(payload: object, size: int) -> None:
            if self._report_thing_error(binding.name, payload):
                return
            for reading in event_readings(
                self._device_key,
                binding,
                payload,
                arrival=datetime.now(UTC),
                local=self._local_tz,
                size=size,
            ):
                self._emit(reading)

        return handle

    def _change_handler(
        self, binding: PropertyBinding
    ) -> Callable[[object, int], None]:
        def handle(payload: object, _size: int) -> None:
            if self._report_thing_error(binding.name, payload):
                return
            key = binding.channel_key
            self._stream_seq[key] = self._stream_seq.get(key, 0) + 1
            self._emit(property_reading(self._device_key, binding, payload))

        return handle

    def _report_thing_error(self, name: str, payload: object) -> bool:
        """Turn an ``{"exception": ...}`` pushed instead of a value into an error message."""
        error = thing_error(payload)
        if error is None:
            return False
        self._counters.thing_errors += 1
        self._emit(
            Message(
                self._device_key,
                error.message,
                MessageLevel.ERROR,
                attributes={"source": name, "type": error.type},
            )
        )
        return True

    # ------------------------------------------------------------------ helpers

    @property
    def _device_key(self) -> str:
        assert self._td is not None
        return self._td.id

    def _emit(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %s", excerpt(event))

    def _require_link(self) -> None:
        if not self._link_up:
            raise NotConnected(
                f"the Thing at {self._url.authority} is not connected",
                url=self._url.base,
            )

    def _require_map(self, device_key: str) -> ThingMap:
        thing_map = self._map
        if thing_map is None or self._td is None or device_key != self._td.id:
            raise UnknownTarget(f"no Thing {device_key}", device=device_key, channel="")
        return thing_map

    def _property_binding(self, device_key: str, channel_key: str) -> PropertyBinding:
        binding = self._require_map(device_key).properties.get(channel_key)
        if binding is None:
            raise UnknownTarget(
                f"{device_key} has no property channel {channel_key}",
                device=device_key,
                channel=channel_key,
            )
        return binding

    def _is_writable(self, channel_key: str) -> bool:
        thing_map = self._map
        assert thing_map is not None
        return any(
            d.channel_key == channel_key and d.writable for d in thing_map.definitions
        )

    def _scrub(self, text: str | None) -> str | None:
        """Leave the Thing's address out of a message (diagnostics redact hosts)."""
        if text is None:
            return None
        return text.replace(self._url.base, "<url>").replace(
            self._url.authority, "<host>"
        )
