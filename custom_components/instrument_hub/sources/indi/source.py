"""The INDI source: an INDI server's devices and properties as normalized events, and writes back.

The model of what the server defined is in ``model``, the channels a vector is exposed as in
``mapping`` (names in ``naming``, indilib's standard properties in ``standard``), the events emitted
from the model in ``publish``, and what a write sends (and the commands waiting for an answer) in
``commands``.

indilib devices: a driver defines the settings it needs before connecting (port, baud rate, connection
mode, polling, configuration) while its CONNECTION switch is Off; those vectors stay usable while the
device is disconnected (``Vector.setting``). A vector counts as such a setting when the driver defines it
while CONNECTION is Off: at the start (the first definitions of a disconnected device), or after a
disconnect, when the source asks the device for its properties again and the driver re-defines what it
still has (it deletes what needs the hardware).

Ordering and the hot path: the connection parses each socket read in the callback that received it and
hands every element to the source, which updates the model and emits its events to the sink right there:
no queue, no task per element, and events leave in the order the server sent them. A BLOB streams to a
spool file while it arrives (``blobs``); its reading is emitted once the file is complete, and events that
come after it wait behind it meanwhile (a slow BLOB cannot be overtaken). While BLOB bytes pile up faster
than the disk takes them, or too many events wait behind one, the connection stops reading until there is
room again. Pending commands fail at once when the link drops, so a command sent after a quick reconnect is
never failed by the old link's LinkDown.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
import functools
import logging
from math import isfinite
from pathlib import Path
from typing import Any, Final

from ...blob_store import discard_spooled
from ...events import (
    DeviceConnection,
    DeviceFound,
    DeviceLost,
    Event,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
)
from ...log_excerpt import excerpt
from ..base import (
    CommandResult,
    EventSink,
    InvalidValue,
    NotConnected,
    Source,
    UnknownTarget,
)
from .blobs import BlobTransfer
from .client import IndiConnection, TaskFactory
from .commands import PendingCommands, Until, merged_values, select_values
from .mapping import UnitOverrides
from .model import LIGHT_OPTIONS, PERM_WO, STATE_ALERT, Device, Member, Vector
from .protocol import (
    SWITCH_OFF,
    DefVector,
    DelProperty,
    IndiElement,
    ServerMessage,
    SetVector,
    VectorKind,
    enable_blob,
    get_properties,
    message_level,
    new_vector,
    parse_number,
)
from .publish import Publisher
from .standard import CONNECTION_VECTOR, DRIVER_INFO_VECTOR

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_BLOB_BYTES: Final = 50 * 1024 * 1024
BLOB_BACKLOG_HIGH_WATER: Final = 8 * 1024 * 1024
"""Decoded BLOB bytes not yet written after which the connection stops reading until the disk catches up."""
WAITING_EVENTS_HIGH_WATER: Final = 4096
"""Events waiting behind an unfinished BLOB after which the connection stops reading."""

UNKNOWN_MODEL: Final = "INDI device"
"""The model of a device whose driver does not say (no DRIVER_INFO)."""
PROBED_DEVICES: Final = 8
"""Devices asked for one property each by the liveness probe (any answer proves the server alive)."""
CONNECT_MEMBER: Final = "CONNECT"
KEEPALIVE_MESSAGE: Final = "Keep alive message"
"""IPyServer's server-wide message after 30 s of silence: a liveness signal, not news."""
DEVICE_DELETED_REASON: Final = "deleted by the server"


@dataclass(slots=True)
class _Counters:
    """What was received but could not be used, and BLOB figures (for diagnostics)."""

    unparsable_values: int = 0
    unknown_vectors: int = 0
    unknown_members: int = 0
    blobs_received: int = 0
    blob_bytes: int = 0
    blobs_skipped: int = 0
    keepalives: int = 0


@dataclass(frozen=True, slots=True)
class _PendingBlob:
    """A BLOB reading waiting for its file: events after it wait behind it (see the module's docstring)."""

    device: Device
    vector: Vector
    member: str
    timestamp: datetime | None
    transfer: BlobTransfer


# --------------------------------------------------------------------------------------------------
# The source


class IndiSource(Source):
    """An INDI 1.7 client: one connection to an INDI server, all its devices as events."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        enable_blobs: bool = True,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        spool_folder: Path | None = None,
        task_factory: TaskFactory | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        unit_overrides: UnitOverrides | None = None,
        silence_timeout: float | None = None,
        probe_timeout: float | None = None,
    ) -> None:
        """Prepare the source; nothing connects before async_start.

        BLOBs are written to files in ``spool_folder`` as they arrive (see blob_store.spool_folder) and
        emitted as BlobData with that path; without a folder they are kept in memory.
        """
        self._host = host
        self._port = port
        self._enable_blobs = enable_blobs
        self._max_blob_bytes = max_blob_bytes
        self._spool_folder = spool_folder
        self._connection = IndiConnection(
            host,
            port,
            on_element=self._on_element,
            on_link=self._on_link,
            connect_timeout=connect_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            task_factory=task_factory,
            open_blob=self._open_blob,
            has_room=self._has_room,
            probe=self._liveness_probe,
            silence_timeout=silence_timeout,
            probe_timeout=probe_timeout,
        )
        # Events waiting behind an unfinished BLOB (empty almost always: then events go straight out).
        self._waiting: deque[Event | _PendingBlob] = deque()
        self._transfers: set[BlobTransfer] = set()
        self._sink: EventSink | None = None
        self._devices: dict[str, Device] = {}
        self._pending = PendingCommands()
        self._counters = _Counters()
        self._publish = Publisher(self._emit, unit_overrides or {})

    # ------------------------------------------------------------------ Source API

    async def async_start(self, sink: EventSink) -> None:
        """Connect (raising CannotConnect), then start reading; getProperties goes out then."""
        self._sink = sink
        await self._connection.connect()
        self._connection.start()

    async def async_stop(self) -> None:
        """Close the connection, throw away unfinished BLOBs and fail pending commands; leaves no task."""
        await self._connection.close()
        transfers = list(self._transfers)
        self._transfers.clear()
        for transfer in transfers:
            transfer.abort()
        for transfer in transfers:
            await transfer.wait_idle()  # its spool file is removed, no job of it runs
        # Complete files whose readings were still waiting are not handed on: remove them.
        unsent = [
            pending.transfer.result.spooled
            for pending in self._waiting
            if isinstance(pending, _PendingBlob)
            and pending.transfer.result is not None
            and pending.transfer.result.spooled is not None
        ]
        self._waiting.clear()
        for path in unsent:
            await asyncio.get_running_loop().run_in_executor(
                None, discard_spooled, path
            )
        self._pending.fail(
            lambda _key: True,
            lambda: self._not_connected("the INDI source was stopped"),
        )

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write one channel: send the whole vector and wait for the device's answer."""
        # Connection first: while down every vector is undefined, and "not connected" is the real cause.
        self._require_connected()
        device, vector = self._channel_vector(device_key, channel_key)
        self._require_writable(vector)
        member = None if vector.is_select else vector.member_of(channel_key)
        if member is None:
            wire = select_values(vector, value)
        else:
            wire = merged_values(vector, {member.name: value})
        return await self._command(device, vector, wire)

    async def async_run_action(
        self, device_key: str, channel_key: str
    ) -> CommandResult:
        """Press a command switch (a button): its member On, returning once the device accepted it."""
        self._require_connected()
        device, vector = self._channel_vector(device_key, channel_key)
        member = vector.member_of(channel_key)
        if not vector.commands or member is None:
            raise UnknownTarget(
                f"{device_key} has no action {channel_key}",
                device=device_key,
                channel=channel_key,
            )
        return await self._command(
            device, vector, merged_values(vector, {member.name: True})
        )

    async def async_set_property(
        self,
        device: str,
        name: str,
        values: Mapping[str, object],
        *,
        timeout: float | None = None,
    ) -> CommandResult:
        """Write members of one vector by name (the raw action); other members keep their values.

        Numbers take numbers (sent as plain decimals) or strings (sent verbatim, unchecked: the
        device answers nonsense with Alert -> CommandRejected); switches take bool or "On"/"Off";
        texts take strings. For an exclusive (OneOfMany/AtMostOne) switch vector, a member turned
        On turns the unspecified members Off. Without ``timeout`` it returns once the device
        accepted the command (Ok, or Busy: in progress); with one, once the device finished it (Ok)
        or that many seconds passed (CommandTimeout).
        """
        self._require_connected()
        found_device, vector = self._vector(device, name)
        unknown = sorted(set(values) - set(vector.members))
        if unknown:
            raise UnknownTarget(
                f"{device}.{name} has no member {', '.join(unknown)}",
                device=device,
                channel=name,
            )
        self._require_writable(vector)
        if not values:
            raise InvalidValue(f"no values given for {device}.{name}", value="")
        wire = merged_values(vector, values, raw=True)
        if timeout is None:
            return await self._command(found_device, vector, wire)
        return await self._command(
            found_device, vector, wire, until=Until.FINISHED, timeout=timeout
        )

    def command_lane(self, device_key: str, channel_key: str) -> Hashable:
        """Return the vector's lane: its writes stay in order (each sends all members), others run."""
        device = self._devices.get(device_key)
        vector_name = device.channels.get(channel_key) if device else None
        return self.vector_lane(device_key, vector_name or channel_key)

    @staticmethod
    def vector_lane(device: str, name: str) -> Hashable:
        """Return the command lane of a vector (shared by its channels and the set_property action)."""
        return ("vector", device, name)

    def diagnostics(self) -> dict[str, Any]:
        """Return the connection state, counters and the device/vector model (no BLOB bytes)."""
        connection = self._connection.stats()
        return {
            "host": self._host,
            "port": self._port,
            "connected": self._connection.connected,
            "enable_blobs": self._enable_blobs,
            "max_blob_bytes": self._max_blob_bytes,
            "connection": connection,
            "device_count": len(self._devices),
            "vector_count": sum(
                len(device.vectors) for device in self._devices.values()
            ),
            "devices": {
                name: self._device_diagnostics(device)
                for name, device in self._devices.items()
            },
            "counters": {
                "malformed": connection["malformed"],
                **asdict(self._counters),
            },
            "liveness_bound_s": self._connection.liveness_bound,
            "pending_commands": self._pending.count(),
            "late_answers": self._pending.late_answers,
            "waiting_events": len(self._waiting),
            "blob_backlog_bytes": self._blob_backlog(),
        }

    # ------------------------------------------------------------------ connection callbacks

    def _on_element(self, element: IndiElement) -> None:
        """Handle one parsed element, in stream order, right in the read callback."""
        kind = type(element)
        if kind is SetVector:
            self._on_set(element)  # type: ignore[arg-type]
        elif kind is DefVector:
            self._on_def(element)  # type: ignore[arg-type]
        elif kind is DelProperty:
            self._on_delete(element)  # type: ignore[arg-type]
        elif kind is ServerMessage:
            self._on_message(element)  # type: ignore[arg-type]

    def _on_link(self, up: bool, reason: str) -> None:
        if up:
            self._publish.forget_states()
        else:
            self._pending.fail(
                lambda _key: True,
                lambda: self._not_connected(f"lost the connection: {reason}"),
            )
            self._forget_definitions()
        self._emit(LinkUp() if up else LinkDown(reason))

    def _has_room(self) -> bool:
        """Tell the connection whether to go on reading (see the module's docstring)."""
        if not self._transfers and not self._waiting:
            return True
        return (
            self._blob_backlog() <= BLOB_BACKLOG_HIGH_WATER
            and len(self._waiting) <= WAITING_EVENTS_HIGH_WATER
        )

    def _blob_backlog(self) -> int:
        return sum(transfer.backlog for transfer in self._transfers)

    def _transfer_progress(self) -> None:
        # A finished transfer is only still the source's while its reading waits to be emitted.
        self._transfers = {
            transfer for transfer in self._transfers if not transfer.done
        }
        if self._has_room():
            self._connection.room_available()

    # ------------------------------------------------------------------ elements

    def _on_def(self, definition: DefVector) -> None:
        device = self._devices.setdefault(definition.device, Device(definition.device))
        previous = device.vectors.get(definition.name)
        vector = Vector.from_def(definition)
        if previous is not None:
            vector.blob_warned = previous.blob_warned
            vector.setting = previous.setting
        # A definition's message is what the vector said before (a server answering getProperties
        # repeats it after every reconnect or reload): remembered, not news.
        vector.last_message = definition.message
        if device.connected is False:
            vector.setting = True
        device.vectors[vector.name] = vector
        self._announce_device(device)
        self._publish.define(device, vector, previous.channel_keys if previous else ())
        self._report_connection(device, vector)
        if vector.kind is VectorKind.BLOB and self._enable_blobs:
            # The server sends no BLOBs until asked (default Never); the setting dies with the link,
            # and the server re-sends every def after reconnecting, so this also re-enables them.
            self._send_quietly(enable_blob(device.name, "Also", vector.name))

    def _on_set(self, update: SetVector) -> None:
        """Apply new values: the hot path (every reading of every device comes through here)."""
        device = self._devices.get(update.device)
        vector = device.vectors.get(update.name) if device is not None else None
        if (
            device is None
            or vector is None
            or not vector.enabled
            or vector.kind is not update.kind
        ):
            self._counters.unknown_vectors += 1
            return
        if update.timeout is not None:
            vector.timeout = update.timeout
        state = update.state
        state_changed = state is not None and state != vector.state
        if state_changed:
            vector.state = state
        kind = vector.kind
        if kind is VectorKind.NUMBER and not state_changed and vector.perm != PERM_WO:
            self._set_numbers(device, vector, update)
        elif kind is VectorKind.BLOB:
            self._emit_blobs(device, vector, update)
        else:
            changed = self._apply_values(vector, update)
            self._publish.values(
                device, vector, changed, update.timestamp, state_changed=state_changed
            )
        if state_changed:
            self._publish.device_state(device)
        if update.message != vector.last_message:
            self._vector_message(
                device, vector, update.message, state, update.timestamp
            )
        name = vector.name
        if name == CONNECTION_VECTOR:
            self._report_connection(device, vector)
        elif name == DRIVER_INFO_VECTOR:
            self._announce_device(device)
        if state is not None and self._pending.waiting:
            self._pending.resolve(device.name, vector, update)

    def _on_delete(self, deletion: DelProperty) -> None:
        device = self._devices.get(deletion.device)
        if device is None:
            self._counters.unknown_vectors += 1
            return
        if deletion.name is None:
            self._delete_device(device, deletion.message)
            return
        vector = device.vectors.get(deletion.name)
        if vector is None or not vector.enabled:
            self._counters.unknown_vectors += 1
            return
        vector.enabled = False
        self._pending.fail(
            lambda key: key == (device.name, vector.name),
            lambda: UnknownTarget(
                f"{device.name}.{vector.name} was deleted",
                device=device.name,
                channel=vector.name,
            ),
        )
        self._publish.removed(device, vector)
        if deletion.message:
            self._emit(
                Message(
                    device.name,
                    deletion.message,
                    timestamp=deletion.timestamp,
                    attributes={"vector": vector.name},
                )
            )

    def _delete_device(self, device: Device, message: str | None) -> None:
        if not device.present:
            return
        device.present = False
        for vector in device.vectors.values():
            vector.enabled = False
        self._pending.fail(
            lambda key: key[0] == device.name,
            lambda: UnknownTarget(
                f"{device.name} was deleted", device=device.name, channel=""
            ),
        )
        self._emit(DeviceLost(device.name, message or DEVICE_DELETED_REASON))

    def _forget_definitions(self) -> None:
        """After a lost link only what the server defines again is real: disable every vector.

        The server answers the getProperties of the reconnect with a def for everything it still has;
        a property (or device) that vanished while the link was down then stays unavailable instead of
        coming back with a stale value.
        """
        for device in self._devices.values():
            for vector in device.vectors.values():
                if vector.enabled:
                    vector.enabled = False
                    self._publish.removed(device, vector)

    def _on_message(self, message: ServerMessage) -> None:
        if not message.message:
            return
        if message.device is None and message.message == KEEPALIVE_MESSAGE:
            self._counters.keepalives += 1
            return
        level, text = message_level(message.message)
        level = level or MessageLevel.INFO
        if message.device is not None:
            self._pending.note_message(message.device, level, text)
        self._emit(Message(message.device, text, level, message.timestamp))

    # ------------------------------------------------------------------ event helpers

    def _emit(self, event: Event) -> None:
        if self._waiting:
            self._waiting.append(event)  # behind an unfinished BLOB
            return
        sink = self._sink
        if sink is None:
            return
        try:
            sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %s", excerpt(event))

    def _send(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %s", excerpt(event))

    def _flush_waiting(self) -> None:
        """Emit what waited, up to the next BLOB whose file is not complete yet."""
        waiting = self._waiting
        while waiting:
            head = waiting[0]
            if isinstance(head, _PendingBlob):
                if not head.transfer.done:
                    break
                waiting.popleft()
                self._transfers.discard(head.transfer)
                self._blob_finished(head)
            else:
                waiting.popleft()
                self._send(head)
        self._transfer_progress()

    def _announce_device(self, device: Device) -> None:
        """Emit DeviceFound for a new (or lost) device, again when its driver details change."""
        info = device.driver_info()
        if device.present and info == device.announced:
            return
        device.present = True
        device.announced = info
        model, sw_version = info
        # INDI names no manufacturer: DRIVER_INFO's driver name is the model, when the driver has one.
        self._emit(
            DeviceFound(
                device.name,
                device.name,
                model=model or UNKNOWN_MODEL,
                sw_version=sw_version,
            )
        )

    def _set_numbers(self, device: Device, vector: Vector, update: SetVector) -> None:
        """Store and emit new numbers in one pass (the most common set; Publisher.values does the rest)."""
        members = vector.members
        attributes = vector.state_attributes()
        timestamp = update.timestamp
        name = device.name
        # Straight to the sink unless events wait behind a BLOB (nothing here can start such a wait).
        sink = None if self._waiting else self._sink
        for given in update.members:
            member = members.get(given.name)
            if member is None:
                self._counters.unknown_members += 1
                continue
            value = given.value
            # parse_number's common case inline (a plain decimal); sexagesimal and the rest go to it.
            try:
                number: float | None = float(value)
            except ValueError:
                number = parse_number(value)
            else:
                if not isfinite(number):  # type: ignore[arg-type]
                    number = None
            if number is None:
                self._counters.unparsable_values += 1
                continue
            member.value = value
            member.number = number
            reading = Reading(name, member.channel_key, number, timestamp, attributes)
            if sink is None:
                self._emit(reading)
                continue
            try:
                sink(reading)
            except Exception:
                _LOGGER.exception("Event sink failed on %s", excerpt(reading))

    def _apply_values(self, vector: Vector, update: SetVector) -> list[Member]:
        """Store the members a set carries (numbers parsed here, once); return those that changed."""
        changed: list[Member] = []
        members = vector.members
        number = vector.kind is VectorKind.NUMBER
        light = vector.kind is VectorKind.LIGHT
        for given in update.members:
            member = members.get(given.name)
            if member is None:
                self._counters.unknown_members += 1
                continue
            value = given.value
            if number:
                parsed = parse_number(value)
                if parsed is None:
                    self._counters.unparsable_values += 1
                    continue
                member.number = parsed
            elif light and value.lower() not in LIGHT_OPTIONS:
                # A light state INDI does not define (numbers are checked as they are parsed).
                self._counters.unparsable_values += 1
                continue
            member.value = value
            changed.append(member)
        if vector.exclusive and any(member.is_on for member in changed):
            # The rule allows one member On: a set naming only that one implies the rest are Off.
            given_names = {member.name for member in changed}
            for member in vector.members.values():
                if member.name not in given_names and member.is_on:
                    member.value = SWITCH_OFF
                    changed.append(member)
        return changed

    def _open_blob(
        self, device: str, vector: str, member: str, fmt: str, _size: int | None
    ) -> BlobTransfer | None:
        """Return where a BLOB member's base64 goes while it arrives (None: it is not wanted)."""
        found = self._devices.get(device)
        blob_vector = found.vectors.get(vector) if found else None
        if (
            blob_vector is None
            or not blob_vector.enabled
            or blob_vector.kind is not VectorKind.BLOB
        ):
            return None  # counted as an unknown vector when the set ends
        if member not in blob_vector.members:
            self._counters.unknown_members += 1
            return None
        transfer = BlobTransfer(
            fmt, self._max_blob_bytes, self._spool_folder, self._transfer_progress
        )
        self._transfers.add(transfer)
        return transfer

    def _emit_blobs(self, device: Device, vector: Vector, update: SetVector) -> None:
        """Complete every BLOB member with content; its reading is emitted once its file is complete."""
        for given in update.members:
            transfer = given.blob
            if not isinstance(transfer, BlobTransfer):
                continue  # unknown member, or unwanted
            if transfer.empty:
                # An empty member only acknowledges.
                self._transfers.discard(transfer)
                transfer.abort()
                continue
            self._waiting.append(
                _PendingBlob(device, vector, given.name, update.timestamp, transfer)
            )
            transfer.finish(self._blob_done)

    def _blob_done(self, _transfer: BlobTransfer) -> None:
        self._flush_waiting()

    def _blob_finished(self, pending: _PendingBlob) -> None:
        """Emit a completed BLOB's reading, or log why it was skipped."""
        transfer = pending.transfer
        blob = transfer.result
        if blob is None:
            self._skip_blob(
                pending.device, pending.vector, pending.member, transfer.error or "?"
            )
            return
        self._counters.blobs_received += 1
        self._counters.blob_bytes += blob.size
        self._send(
            Reading(
                pending.device.name,
                pending.vector.members[pending.member].channel_key,
                blob,
                pending.timestamp,
            )
        )

    def _skip_blob(self, device: Device, vector: Vector, member: str, why: str) -> None:
        """Count a skipped BLOB; WARNING the first time for a vector, DEBUG afterwards."""
        self._counters.blobs_skipped += 1
        level = logging.DEBUG if vector.blob_warned else logging.WARNING
        vector.blob_warned = True
        _LOGGER.log(
            level,
            "Skipped a BLOB of %s.%s.%s (%s; limit %s bytes)",
            device.name,
            vector.name,
            member,
            why,
            self._max_blob_bytes,
        )

    def _vector_message(
        self,
        device: Device,
        vector: Vector,
        message: str | None,
        state: str | None,
        timestamp: datetime | None,
    ) -> None:
        """Emit a vector's message when it differs from the last one.

        indipydriver repeats a vector's message on every later set (it is sticky), so a repeat is
        not news; a set without message clears the memory, so indilib's recurring messages still
        come through each time.
        """
        if message == vector.last_message:
            return
        vector.last_message = message
        if message is None:
            return
        level, text = message_level(message)
        if level is None:
            level = MessageLevel.WARNING if state == STATE_ALERT else MessageLevel.INFO
        self._emit(
            Message(
                device.name,
                text,
                level,
                timestamp,
                attributes={"vector": vector.name},
            )
        )

    def _report_connection(self, device: Device, vector: Vector) -> None:
        """Follow indilib's CONNECTION switch (CONNECT On = connected): DeviceConnection, and settings.

        When a device goes from connected to disconnected its driver deletes what needs the hardware
        and keeps the rest, without defining it again: asking for the device's properties makes it
        define what it still has, and what it defines while disconnected is a setting (see
        ``Vector.setting``).
        """
        if vector.name != CONNECTION_VECTOR or vector.kind is not VectorKind.SWITCH:
            return
        connect = vector.members.get(CONNECT_MEMBER)
        if connect is None:
            return
        was_connected, device.connected = device.connected, connect.is_on
        self._emit(DeviceConnection(device.name, connect.is_on))
        if was_connected and not connect.is_on:
            self._send_quietly(get_properties(device.name))

    def _liveness_probe(self) -> bytes | None:
        """Return a getProperties for one known property of each present device (None: none known).

        The server forwards it to the driver, which answers with that property's definition; asking a
        few devices keeps one hung driver from making a live server look dead.
        """
        probes = []
        for device in self._devices.values():
            # A defined property if there is one; after a lost link none is, but the server had them.
            names = [v.name for v in device.vectors.values() if v.enabled] or list(
                device.vectors
            )
            if device.present and names:
                probes.append(get_properties(device.name, names[0]))
        return b"".join(probes[:PROBED_DEVICES]) if probes else None

    def _send_quietly(self, data: bytes) -> None:
        """Send a request whose loss does not matter (it is repeated after a reconnect)."""
        if not self._connection.send_nowait(data) and _LOGGER.isEnabledFor(
            logging.DEBUG
        ):
            # The excerpt only when it is logged: a disconnected device's CONNECTION sets come here.
            _LOGGER.debug("Not sent while disconnected: %s", excerpt(data))

    # ------------------------------------------------------------------ commands

    def _vector(self, device_key: str, name: str) -> tuple[Device, Vector]:
        """Return a defined (present, enabled) vector or raise UnknownTarget."""
        device = self._devices.get(device_key)
        vector = device.vectors.get(name) if device else None
        if device is None or vector is None or not device.present or not vector.enabled:
            raise UnknownTarget(
                f"{device_key} has no property {name}", device=device_key, channel=name
            )
        return device, vector

    def _channel_vector(
        self, device_key: str, channel_key: str
    ) -> tuple[Device, Vector]:
        """Return the defined vector behind a channel or raise UnknownTarget."""
        device = self._devices.get(device_key)
        vector_name = device.channels.get(channel_key) if device else None
        if vector_name is None:
            raise UnknownTarget(
                f"{device_key} has no channel {channel_key}",
                device=device_key,
                channel=channel_key,
            )
        return self._vector(device_key, vector_name)

    def _require_connected(self) -> None:
        if not self._connection.connected:
            raise self._not_connected("the link is down")

    @staticmethod
    def _require_writable(vector: Vector) -> None:
        if not vector.writable:
            raise InvalidValue(f"{vector.name} is read-only", value="")

    async def _command(
        self,
        device: Device,
        vector: Vector,
        wire: Mapping[str, str],
        *,
        until: Until = Until.ACCEPTED,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send a new*Vector with all members and wait for the set*Vector answering it."""
        payload = new_vector(vector.kind, device.name, vector.name, list(wire.items()))
        return await self._pending.send_and_wait(
            device.name,
            vector,
            functools.partial(self._connection.send, payload),
            wire,
            until=until,
            timeout=timeout,
        )

    def _not_connected(self, why: str) -> NotConnected:
        return NotConnected(
            f"Not connected to the INDI server {self._connection.endpoint}: {why}",
            host=self._host,
            port=str(self._port),
        )

    @staticmethod
    def _device_diagnostics(device: Device) -> dict[str, Any]:
        model, sw_version = device.driver_info()
        return {
            "present": device.present,
            "model": model,
            "sw_version": sw_version,
            "vectors": [
                {
                    "name": vector.name,
                    "kind": vector.kind.value,
                    "perm": vector.perm,
                    "rule": vector.rule,
                    "state": vector.state,
                    "enabled": vector.enabled,
                    "members": len(vector.members),
                }
                for vector in device.vectors.values()
            ],
        }
