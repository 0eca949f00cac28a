"""The Scrutiny source: a server's target, firmware, datalogger and chosen watchables as events.

Pushes and link changes go through one queue that one worker handles in order; what a change needs
from the server (device info, the loaded SFD, the watchable list, subscriptions) is requested by
that worker while the connection keeps reading, so responses are never stuck behind it.

Cost bounds: a value update that finds the worker idle and nothing queued is shown at once, in the
read's own step (no task hop per message); one that must wait behind a request waits in order, and
once ``MAX_BACKLOG`` messages wait, later values are coalesced to the newest per watchable, so a
fast stream never grows the backlog without bound. The worker gives the loop its turn every
``MESSAGES_PER_STEP`` messages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection, Mapping
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
import math
from typing import Any, Final

from ...events import (
    BlobData,
    ChannelRemoved,
    DeviceLost,
    Event,
    LinkDown,
    LinkUp,
    Reading,
)
from ...log_excerpt import excerpt
from ..base import (
    CommandRejected,
    CommandResult,
    CommandTimeout,
    EventSink,
    InvalidValue,
    NotConnected,
    Source,
    SourceError,
    UnknownTarget,
)
from .client import ScrutinyConnection, TaskFactory, loop_task_factory
from .mapping import (
    ACQUISITION_COMPLETE,
    ACQUISITION_FILE,
    DATALOGGER_COMPLETION,
    DATALOGGER_STATE,
    FIRMWARE,
    FIRMWARE_ID,
    SESSION_ID,
    TARGET,
    event_channels,
    fire,
    sdk_event_reading,
    target_channels,
    target_device,
    watchable_channel,
    watchable_key,
    watchable_value,
)
from .messages import (
    DeviceInfo,
    EventKind,
    FirmwareInfo,
    SdkEvent,
    ServerStatus,
    ValueUpdate,
    Watchable,
    WatchableType,
    acquisition_csv,
    parse_updates,
    parse_watchable_list,
    status_changes,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT: Final = 8765
WRITE_TIMEOUT: Final = 10.0
WATCHABLE_LIST_PAGE: Final = 1000
EARLY_COMPLETIONS: Final = 100
"""Write completions kept for a write whose response has not been handled yet."""
CSV_EXECUTOR_SAMPLES: Final = 20000
MAX_BACKLOG: Final = 1000
"""Messages waiting for the worker (busy with a request) beyond which value updates are coalesced:
only the newest value per watchable waits, so the backlog stays bounded however fast values come."""
MESSAGES_PER_STEP: Final = 100
"""Queued messages the worker handles before it gives the loop its turn."""


@dataclass(frozen=True, slots=True)
class _LinkChange:
    up: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Values:
    """The newest value of each watchable, gathered while the worker is far behind."""

    updates: dict[str, ValueUpdate]


@dataclass(frozen=True, slots=True)
class WriteCompletion:
    """What the server reported of a write: success, its reason when it failed, when it completed."""

    path: str
    success: bool
    value: object
    failure_reason: str
    completed_at: datetime | None


class ScrutinySource(Source):
    """A Scrutiny server's client: its target, datalogger and the watchables the entry watches."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        watched: Collection[str] = (),
        writable: Collection[str] = (),
        update_rate: float | None = None,
        task_factory: TaskFactory | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        write_timeout: float = WRITE_TIMEOUT,
        silence_seconds: float | None = None,
    ) -> None:
        """Prepare the source; nothing connects before async_start."""
        self._host = host
        self._port = port
        self._watched = tuple(dict.fromkeys(watched))
        self._writable = frozenset(writable)
        self._rate = update_rate
        self._write_timeout = write_timeout
        self._task_factory = task_factory or loop_task_factory
        extra: dict[str, Any] = {}
        if silence_seconds is not None:
            extra["silence_seconds"] = silence_seconds
        self._connection = ScrutinyConnection(
            host,
            port,
            on_push=self._on_push,
            on_link=self._on_link,
            task_factory=task_factory,
            connect_timeout=connect_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            **extra,
        )
        self._queue: asyncio.Queue[dict[str, Any] | _LinkChange | _Values] = (
            asyncio.Queue()
        )
        self._busy = False
        self._coalescing: _Values | None = None
        self._worker: asyncio.Task[None] | None = None
        self._sink: EventSink | None = None
        self._status: ServerStatus | None = None
        self._device_info: DeviceInfo | None = None
        self._firmware: FirmwareInfo | None = None
        self._target_announced = False
        self.catalog: dict[str, Watchable] = {}
        """Every watchable the server listed last (path -> watchable), for the options form."""
        self._subscribed: dict[str, str] = {}  # server id -> path
        self._ids: dict[str, str] = {}  # path -> server id
        self._defined: set[str] = set()  # paths whose channel is defined
        self._writes: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self._early_completions: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
        self.export_lock = asyncio.Lock()
        """Held by whoever exports an acquisition: one export's file is the one it reports."""
        self.last_acquisition: str | None = None
        self._counters: dict[str, int] = {
            "status_updates": 0,
            "value_updates": 0,
            "coalesced_updates": 0,
            "unknown_ids": 0,
            "writes": 0,
            "writes_failed": 0,
            "exports": 0,
        }

    # ------------------------------------------------------------------ Source API

    async def async_start(self, sink: EventSink) -> None:
        """Connect (CannotConnect, NotScrutiny), announce the server's events, then start reading."""
        self._sink = sink
        await self._connection.connect()
        for definition in event_channels():
            self._emit(definition)
        if self._worker is None:
            self._worker = self._task_factory(
                self._process_queue(), f"Scrutiny events {self._connection.endpoint}"
            )
        self._connection.start()

    async def async_stop(self) -> None:
        """Close the connection, stop the worker, fail pending writes; leaves no task."""
        await self._connection.close()
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._fail_writes("the Scrutiny source was stopped")
        self._queue = asyncio.Queue()
        self._busy = False
        self._coalescing = None

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write a watched watchable; returns once the server reports the write completed."""
        path = next(
            (path for path in self._defined if watchable_key(path) == channel_key), None
        )
        if device_key != TARGET or path is None:
            raise UnknownTarget(
                f"{device_key} has no writable channel {channel_key}",
                device=device_key,
                channel=channel_key,
            )
        completion = await self.async_write_path(path, value)
        return CommandResult("ok", None, {path: completion.value})

    async def async_write_path(self, path: str, value: object) -> WriteCompletion:
        """Write any watchable by its path (the write_variable action), watched or not."""
        self._require_connected()
        watchable = self.catalog.get(path)
        if watchable is None:
            raise UnknownTarget(
                f"The server has no watchable {path}", device=TARGET, channel=path
            )
        wire = _wire_value(watchable, value)
        server_id = self._ids.get(path)
        temporary = server_id is None
        if server_id is None:
            server_id = await self._subscribe_one(path)
        try:
            completion = await self._write(server_id, path, wire)
        finally:
            if temporary:
                await self._unsubscribe_quietly(path)
        written = watchable.written_value(wire)
        shown = watchable_value(watchable, written)
        completion = WriteCompletion(
            path,
            completion.success,
            shown,
            completion.failure_reason,
            completion.completed_at,
        )
        if path in self._defined:
            # The server confirmed the device holds the value: show it now, as INDI's Ok does.
            self._emit(
                Reading(TARGET, watchable_key(path), shown, completion.completed_at)
            )
        return completion

    async def async_export_acquisition(self, reference_id: str | None) -> str:
        """Fetch an acquisition (the newest when None), emit it as a CSV file; return its reference."""
        self._require_connected()
        if reference_id is None:
            listing = await self._connection.request(
                "list_datalogging_acquisitions", {"count": 1}
            )
            acquisitions = listing.get("acquisitions")
            if not isinstance(acquisitions, list) or not acquisitions:
                raise UnknownTarget(
                    "The server has no datalogging acquisition",
                    device=TARGET,
                    channel="acquisition",
                )
            reference_id = str(acquisitions[0].get("reference_id"))
        try:
            content = await self._connection.request(
                "read_datalogging_acquisition_content", {"reference_id": reference_id}
            )
        except CommandRejected as err:
            raise UnknownTarget(
                err.message, device=TARGET, channel=reference_id
            ) from err
        samples = sum(
            len(signal.get("data") or [])
            for signal in content.get("signals") or []
            if isinstance(signal, dict)
        )
        if samples > CSV_EXECUTOR_SAMPLES:
            text = await asyncio.get_running_loop().run_in_executor(
                None, acquisition_csv, content
            )
        else:
            text = acquisition_csv(content)
        data = text.encode()
        self._counters["exports"] += 1
        self._emit(Reading(TARGET, ACQUISITION_FILE, BlobData(data, ".csv", len(data))))
        return reference_id

    def diagnostics(self) -> dict[str, Any]:
        """Return the link, the server's status, the watched set and counters (host redacted later)."""
        status = self._status
        return {
            "host": self._host,
            "port": self._port,
            "connection": self._connection.stats(),
            "status": None
            if status is None
            else {
                "device_status": status.device_status,
                "session_id": status.session_id,
                "firmware_id": status.firmware_id,
                "datalogging_state": status.datalogging_state,
                "completion_ratio": status.completion_ratio,
                "link_type": status.link_type,
                "demo_mode": status.demo_mode,
            },
            "firmware": None if self._firmware is None else self._firmware.title,
            "catalog_size": len(self.catalog),
            "watched": list(self._watched),
            "writable": sorted(self._writable),
            "subscribed": sorted(self._ids),
            "update_rate": self._rate,
            "pending_writes": len(self._writes),
            "counters": dict(self._counters),
        }

    # ------------------------------------------------------------------ connection callbacks

    def _on_push(self, message: dict[str, Any]) -> None:
        cmd = message.get("cmd")
        if cmd == "inform_write_completion":
            # Resolved at once (not queued): a write waits for it while the worker may be busy.
            self._write_completed(message)
            return
        if cmd == "watchable_update":
            if not self._busy and self._queue.empty():
                # Nothing waits before it: shown now, in the read's own step (no task hop).
                self._values(parse_updates(message))
                return
            if self._queue.qsize() >= MAX_BACKLOG:
                self._coalesce(message)
                return
        self._enqueue(message)

    def _on_link(self, up: bool, reason: str) -> None:
        if not up:
            self._fail_writes(f"lost the connection: {reason}")
        self._enqueue(_LinkChange(up, reason))

    def _enqueue(self, item: dict[str, Any] | _LinkChange) -> None:
        self._coalescing = None  # later values must not overtake this message
        self._queue.put_nowait(item)

    def _coalesce(self, message: Mapping[str, Any]) -> None:
        """Keep only the newest value per watchable while the worker is far behind (memory bound)."""
        pending = self._coalescing
        if pending is None:
            pending = self._coalescing = _Values({})
            self._queue.put_nowait(pending)
        for update in parse_updates(message):
            if update.server_id in pending.updates:
                self._counters["coalesced_updates"] += 1
            pending.updates[update.server_id] = update

    # ------------------------------------------------------------------ the worker

    async def _process_queue(self) -> None:
        handled = 0
        while True:
            if self._queue.empty():
                self._busy = False
            item = await self._queue.get()
            self._busy = True
            handled += 1
            if handled >= MESSAGES_PER_STEP:
                handled = 0
                await asyncio.sleep(
                    0
                )  # a long backlog: the loop gets its turn between steps
            try:
                if isinstance(item, _LinkChange):
                    await self._link_changed(item)
                elif isinstance(item, _Values):
                    if item is self._coalescing:
                        self._coalescing = None
                    self._values(list(item.updates.values()))
                else:
                    await self._handle(item)
            except SourceError as err:
                # A request of this step failed (the link went, the server refused): the next
                # status or reconnect brings the model up to date again.
                _LOGGER.debug("Scrutiny %s: %s", self._connection.endpoint, err)
            except Exception:
                _LOGGER.exception(
                    "Error while handling Scrutiny data from %s",
                    self._connection.endpoint,
                )

    async def _link_changed(self, change: _LinkChange) -> None:
        if change.up:
            self._emit(LinkUp())
            self._emit(
                fire(EventKind.CONNECTED.value, host=self._host, port=self._port)
            )
            status = await self._connection.request("get_server_status")
            await self._apply_status(ServerStatus.from_message(status))
            return
        for event in status_changes(self._status, None):
            await self._apply_event(event, None)
        self._status = None
        self._emit(fire(EventKind.DISCONNECTED.value, host=self._host, port=self._port))
        self._emit(LinkDown(change.reason))

    async def _handle(self, message: dict[str, Any]) -> None:
        match message.get("cmd"):
            case "watchable_update":
                self._values(parse_updates(message))
            case "inform_server_status":
                await self._apply_status(ServerStatus.from_message(message))
            case "inform_datalogging_list_changed":
                self._list_changed(message)
            case "inform_datalogging_acquisition_complete":
                pass  # only its requester gets it; everyone gets the list change that follows
            case other:
                _LOGGER.debug("Ignored Scrutiny message %s", other)

    async def _apply_status(self, status: ServerStatus) -> None:
        """Derive the SDK's events from the previous status and apply them, in the SDK's order."""
        previous, self._status = self._status, status
        self._counters["status_updates"] += 1
        for event in status_changes(previous, status):
            await self._apply_event(event, status)
        if self._target_announced:
            self._emit(Reading(TARGET, DATALOGGER_STATE, status.datalogging_state))
            ratio = status.completion_ratio
            self._emit(
                Reading(
                    TARGET,
                    DATALOGGER_COMPLETION,
                    round(ratio * 100, 1) if ratio is not None else None,
                )
            )
        self._emit(
            fire(
                EventKind.STATUS_UPDATE.value,
                session_id=status.session_id,
                firmware_id=status.firmware_id,
                state=status.datalogging_state,
                completion_ratio=status.completion_ratio,
                device_status=status.device_status,
            )
        )

    async def _apply_event(self, event: SdkEvent, status: ServerStatus | None) -> None:
        match event.kind:
            case EventKind.DEVICE_READY:
                await self._device_ready(event)
            case EventKind.DEVICE_GONE:
                self._emit(sdk_event_reading(event))
                self._forget_watchables(WatchableType)
                self._emit_lost("the device is gone")
            case EventKind.SFD_LOADED:
                await self._sfd_loaded(event)
            case EventKind.SFD_UNLOADED:
                self._firmware = None
                self._forget_watchables((WatchableType.VARIABLE, WatchableType.ALIAS))
                if self._target_announced and status is not None and status.session_id:
                    self._announce_target()
                    self._emit_firmware()
                self._emit(sdk_event_reading(event))
            case _:
                self._emit(sdk_event_reading(event))

    async def _device_ready(self, event: SdkEvent) -> None:
        info = await self._connection.request("get_device_info")
        self._device_info = DeviceInfo.from_message(info)
        status = self._status
        if self._firmware is None and status is not None and status.firmware_id:
            # Its SFD is loaded already: the first announcement carries the SFD's name, which
            # entity ids are made from (otherwise they would depend on what Home Assistant handled
            # before the SFD's answer came).
            # Refused: unloaded meanwhile, and the status that says so follows.
            with contextlib.suppress(CommandRejected):
                sfd = await self._connection.request("get_loaded_sfd")
                self._firmware = FirmwareInfo.from_message(sfd)
        self._announce_target()
        self._emit(Reading(TARGET, SESSION_ID, event.session_id))
        self._emit_firmware()
        self._emit(sdk_event_reading(event))
        # RPVs exist as soon as the device is ready; variables and aliases wait for the SFD (a new
        # session of a device whose SFD stays loaded has them at once).
        await self._refresh_catalog()
        status = self._status
        if status is not None and status.firmware_id is not None:
            await self._watch(tuple(WatchableType))
        else:
            await self._watch((WatchableType.RPV,))

    async def _sfd_loaded(self, event: SdkEvent) -> None:
        answer = await self._connection.request("get_loaded_sfd")
        self._firmware = FirmwareInfo.from_message(answer)
        if self._target_announced:
            self._announce_target()
            self._emit_firmware()
        self._emit(sdk_event_reading(event))
        await self._refresh_catalog()
        await self._watch((WatchableType.VARIABLE, WatchableType.ALIAS))

    def _announce_target(self) -> None:
        self._emit(target_device(self._device_info, self._firmware))
        if not self._target_announced:
            self._target_announced = True
            for definition in target_channels():
                self._emit(definition)

    def _emit_firmware(self) -> None:
        firmware = self._firmware
        self._emit(Reading(TARGET, FIRMWARE, firmware.title if firmware else None))
        self._emit(
            Reading(TARGET, FIRMWARE_ID, firmware.firmware_id if firmware else None)
        )

    def _emit_lost(self, reason: str) -> None:
        if self._target_announced:
            self._emit(DeviceLost(TARGET, reason))

    def _list_changed(self, message: Mapping[str, Any]) -> None:
        reference_id = message.get("reference_id")
        action = message.get("action")
        status = self._status
        self._emit(
            fire(
                EventKind.DATALOGGING_LIST_CHANGED.value,
                change_type=action,
                reference_id=reference_id,
                firmware_id=status.firmware_id if status else None,
            )
        )
        if action == "new" and isinstance(reference_id, str):
            self.last_acquisition = reference_id
            self._emit(
                fire(
                    ACQUISITION_COMPLETE,
                    reference_id=reference_id,
                    session_id=status.session_id if status else None,
                    firmware_id=status.firmware_id if status else None,
                )
            )

    # ------------------------------------------------------------------ watchables

    async def _refresh_catalog(self) -> None:
        parts = await self._connection.request_all(
            "get_watchable_list", {"max_per_response": WATCHABLE_LIST_PAGE}
        )
        catalog: dict[str, Watchable] = {}
        for part in parts:
            for watchable in parse_watchable_list(part):
                catalog[watchable.path] = watchable
        self.catalog = catalog

    async def _watch(self, types: Collection[WatchableType]) -> None:
        """Subscribe the watched watchables of these types that the server has; define their channels."""
        paths = [
            path
            for path in self._watched
            if (watchable := self.catalog.get(path)) is not None
            and watchable.type in types
            and path not in self._ids
        ]
        if not paths:
            return
        for path in paths:
            self._emit(
                watchable_channel(self.catalog[path], writable=path in self._writable)
            )
            self._defined.add(path)
        try:
            subscribed = await self._subscribe(paths)
        except CommandRejected:
            # One of them vanished meanwhile: the others one by one.
            subscribed = {}
            for path in paths:
                try:
                    subscribed.update(await self._subscribe([path]))
                except CommandRejected as err:
                    _LOGGER.debug("Cannot watch %s: %s", path, err)
        for path, server_id in subscribed.items():
            self._subscribed[server_id] = path
            self._ids[path] = server_id

    async def _subscribe(self, paths: list[str]) -> dict[str, str]:
        answer = await self._connection.request(
            "subscribe_watchable", {"watchables": paths, "rate": self._rate}
        )
        subscribed = answer.get("subscribed")
        found: dict[str, str] = {}
        if isinstance(subscribed, Mapping):
            for path, definition in subscribed.items():
                if isinstance(definition, Mapping) and isinstance(
                    definition.get("id"), str
                ):
                    found[str(path)] = definition["id"]
        return found

    async def _subscribe_one(self, path: str) -> str:
        try:
            subscribed = await self._subscribe([path])
        except CommandRejected as err:
            raise UnknownTarget(err.message, device=TARGET, channel=path) from err
        if path not in subscribed:
            raise UnknownTarget(
                f"The server did not subscribe {path}", device=TARGET, channel=path
            )
        return subscribed[path]

    async def _unsubscribe_quietly(self, path: str) -> None:
        try:
            await self._connection.request(
                "unsubscribe_watchable", {"watchables": [path]}
            )
        except SourceError as err:
            _LOGGER.debug("Could not unsubscribe %s: %s", path, err)

    def _forget_watchables(self, types: Collection[WatchableType]) -> None:
        """Drop the subscriptions of these types (the server dropped them); their channels go."""
        for path in list(self._ids):
            watchable = self.catalog.get(path)
            if watchable is not None and watchable.type not in types:
                continue
            server_id = self._ids.pop(path)
            self._subscribed.pop(server_id, None)
        for path in list(self._defined):
            watchable = self.catalog.get(path)
            if watchable is None or watchable.type in types:
                self._defined.discard(path)
                self._emit(ChannelRemoved(TARGET, watchable_key(path)))

    def _values(self, updates: list[ValueUpdate]) -> None:
        for update in updates:
            path = self._subscribed.get(update.server_id)
            watchable = self.catalog.get(path) if path else None
            if path is None or watchable is None:
                self._counters["unknown_ids"] += 1
                continue
            self._counters["value_updates"] += 1
            self._emit(
                Reading(
                    TARGET,
                    watchable_key(path),
                    watchable_value(watchable, update.value),
                    self._server_time(update.server_time_us),
                )
            )

    def _server_time(self, server_time_us: float | None) -> datetime | None:
        zero = self._connection.server_time_zero
        if zero is None or server_time_us is None:
            return None
        return datetime.fromtimestamp(zero + server_time_us / 1e6, UTC)

    # ------------------------------------------------------------------ writes

    async def _write(
        self, server_id: str, path: str, value: float | bool
    ) -> WriteCompletion:
        self._counters["writes"] += 1
        answer = await self._connection.request(
            "write_watchable",
            {"updates": [{"batch_index": 0, "watchable": server_id, "value": value}]},
        )
        token = answer.get("request_token")
        if not isinstance(token, str):
            raise CommandRejected(f"The server did not accept the write of {path}")
        future = self._early_future(token)
        try:
            async with asyncio.timeout(self._write_timeout):
                completion = await future
        except TimeoutError as err:
            raise CommandTimeout(
                f"The server did not complete the write of {path} within {self._write_timeout:g} s",
                timeout=f"{self._write_timeout:g}",
            ) from err
        finally:
            self._writes.pop(token, None)
        if completion.get("success") is not True:
            self._counters["writes_failed"] += 1
            reason = str(
                completion.get("failure_reason") or "the device refused the write"
            )
            raise CommandRejected(f"Writing {path} failed: {reason}")
        time_us = completion.get("completion_server_time_us")
        return WriteCompletion(
            path,
            True,
            value,
            "",
            self._server_time(
                float(time_us) if isinstance(time_us, int | float) else None
            ),
        )

    def _early_future(self, token: str) -> asyncio.Future[Mapping[str, Any]]:
        future: asyncio.Future[Mapping[str, Any]] = (
            asyncio.get_running_loop().create_future()
        )
        early = self._early_completions.pop(token, None)
        if early is not None:
            future.set_result(early)
        else:
            self._writes[token] = future
        return future

    def _write_completed(self, message: Mapping[str, Any]) -> None:
        token = message.get("request_token")
        if not isinstance(token, str):
            return
        future = self._writes.pop(token, None)
        if future is None:
            # The write's response is still on its way to the writer: keep it for a moment.
            self._early_completions[token] = message
            while len(self._early_completions) > EARLY_COMPLETIONS:
                self._early_completions.popitem(last=False)
            return
        if not future.done():
            future.set_result(message)

    def _fail_writes(self, why: str) -> None:
        for future in self._writes.values():
            if not future.done():
                future.set_exception(self._not_connected(why))
        self._writes.clear()
        self._early_completions.clear()

    # ------------------------------------------------------------------ helpers

    def _emit(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %s", excerpt(event))

    def _require_connected(self) -> None:
        if not self._connection.connected:
            raise self._not_connected("the link is down")

    def _not_connected(self, why: str) -> NotConnected:
        return NotConnected(
            f"Not connected to the Scrutiny server {self._connection.endpoint}: {why}",
            host=self._host,
            port=str(self._port),
        )


def _wire_value(watchable: Watchable, value: object) -> float | bool:
    """Return a value as the server takes it for this watchable; InvalidValue when it cannot be."""
    if watchable.enum and isinstance(value, str):
        if value not in watchable.enum:
            raise InvalidValue(
                f"{value} is not one of {', '.join(watchable.enum)}", value=value
            )
        return watchable.enum[value]
    if watchable.is_boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise InvalidValue(f"{watchable.path} takes true or false", value=str(value))
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
    ):
        raise InvalidValue(f"{watchable.path} takes a number", value=str(value))
    bounds = watchable.integer_range()
    if bounds is not None:
        if value != int(value) or not bounds[0] <= value <= bounds[1]:
            raise InvalidValue(
                f"{watchable.path} ({watchable.dtype}) takes whole numbers from {bounds[0]} to {bounds[1]}",
                value=str(value),
            )
        return int(value)
    return float(value)
