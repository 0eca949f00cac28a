"""The INDI source: an INDI server's devices and properties as normalized events, and writes back.

Model: devices -> vectors (INDI properties) -> members. Channels: ``"<vector>.<member>"`` for one
channel per member, ``"<vector>"`` for the select made of a whole OneOfMany/AtMostOne switch vector.

Ordering: the connection hands raw elements (and link changes) to an asyncio.Queue that one worker
task consumes in order. Parsing a large element and decoding a large BLOB run in the default
executor while the worker awaits them, so the loop never blocks and no event overtakes another (a
slow BLOB cannot reorder the readings of its vector). Pending commands fail at once when the link
drops (not in queue order), so a command sent after a quick reconnect is never failed by the old
link's LinkDown.
"""

from __future__ import annotations

import asyncio
import binascii
from collections import deque
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
import logging
import math
from typing import Any, Final
import zlib

from ...events import (
    BlobData,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
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
from .client import IndiConnection, TaskFactory, loop_task_factory
from .protocol import (
    SWITCH_OFF,
    SWITCH_ON,
    BlobTooLarge,
    DefMember,
    DefVector,
    DelProperty,
    ProtocolError,
    ServerMessage,
    SetMember,
    SetVector,
    VectorKind,
    decode_blob,
    display_precision,
    enable_blob,
    format_number,
    new_vector,
    parse_element,
    parse_number,
)

_LOGGER = logging.getLogger(__name__)

COMMAND_TIMEOUT_MIN = 5.0
"""Shortest wait for a command's answer (also used when the vector's timeout is 0 or absent)."""
COMMAND_TIMEOUT_MAX = 60.0
"""Longest wait for a command's answer, whatever the vector's timeout says."""
DEFAULT_MAX_BLOB_BYTES: Final = 50 * 1024 * 1024
DEFAULT_EXECUTOR_THRESHOLD: Final = 65536
_ELEMENT_OVERHEAD: Final = 1024 * 1024
"""Room for the XML around a BLOB's base64 when sizing the largest element kept."""

MANUFACTURER: Final = "INDI"
LIGHT_OPTIONS: Final = ("idle", "ok", "busy", "alert")
LIGHT_TRANSLATION_KEY: Final = "light_state"
CONNECTION_VECTOR: Final = "CONNECTION"
CONNECT_MEMBER: Final = "CONNECT"
DRIVER_INFO_VECTOR: Final = "DRIVER_INFO"
DRIVER_NAME_MEMBER: Final = "DRIVER_NAME"
DRIVER_VERSION_MEMBER: Final = "DRIVER_VERSION"
KEEPALIVE_MESSAGE: Final = "Keep alive message"
"""IPyServer's server-wide message after 30 s of silence: a liveness signal, not news."""
DEVICE_DELETED_REASON: Final = "deleted by the server"

STATE_OK: Final = "Ok"
STATE_IDLE: Final = "Idle"
STATE_ALERT: Final = "Alert"
EXCLUSIVE_RULES: Final = frozenset({"OneOfMany", "AtMostOne"})
PERM_RO: Final = "ro"
TEMPERATURE_UNIT: Final = "°C"


def command_timeout(vector_timeout: float | None) -> float:
    """Return how long to wait for a command's answer: the vector's timeout, clamped."""
    return min(max(vector_timeout or 0.0, COMMAND_TIMEOUT_MIN), COMMAND_TIMEOUT_MAX)


def _element_limit(max_blob_bytes: int) -> int:
    """Return the largest element to keep: the base64 of the largest BLOB plus the XML around it."""
    return max_blob_bytes * 4 // 3 + _ELEMENT_OVERHEAD


# --------------------------------------------------------------------------------------------------
# Model


@dataclass(slots=True)
class _Member:
    """A vector member with its current raw value (as the server sent it)."""

    name: str
    label: str
    value: str
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None

    @classmethod
    def from_def(cls, member: DefMember) -> _Member:
        """Build a member from its definition."""
        return cls(
            member.name,
            member.label,
            member.value,
            member.format,
            member.minimum,
            member.maximum,
            member.step,
        )

    @property
    def is_on(self) -> bool:
        """Return True for a switch member that is On."""
        return self.value == SWITCH_ON

    @property
    def value_range(self) -> tuple[float, float] | None:
        """Return (minimum, maximum), or None when the device defines no range (min == max)."""
        if self.minimum is None or self.maximum is None or self.minimum == self.maximum:
            return None
        return min(self.minimum, self.maximum), max(self.minimum, self.maximum)


@dataclass(slots=True)
class _Vector:
    """An INDI property: its definition, current member values and whether it is defined now."""

    kind: VectorKind
    name: str
    label: str
    group: str | None
    perm: str | None
    rule: str | None
    timeout: float | None
    state: str | None
    members: dict[str, _Member]
    enabled: bool = True
    last_message: str | None = None
    blob_warned: bool = False
    channel_keys: tuple[str, ...] = ()

    @classmethod
    def from_def(cls, definition: DefVector) -> _Vector:
        """Build a vector from its definition."""
        return cls(
            kind=definition.kind,
            name=definition.name,
            label=definition.label,
            group=definition.group,
            perm=definition.perm,
            rule=definition.rule,
            timeout=definition.timeout,
            state=definition.state,
            members={
                member.name: _Member.from_def(member) for member in definition.members
            },
        )

    @property
    def writable(self) -> bool:
        """Return True when a client may send new values (Lights and BLOB downloads never)."""
        if self.kind in (VectorKind.LIGHT, VectorKind.BLOB):
            return False
        return self.perm != PERM_RO

    @property
    def exclusive(self) -> bool:
        """Return True for a switch vector of which at most one member may be On."""
        return self.kind is VectorKind.SWITCH and self.rule in EXCLUSIVE_RULES

    @property
    def is_select(self) -> bool:
        """Return True when the vector is one enum channel rather than a channel per member."""
        return self.exclusive and len(self.members) >= 2

    def options(self) -> dict[str, str]:
        """Map member name -> option: the labels, or the names when labels are not unique."""
        labels = [member.label for member in self.members.values()]
        if len(set(labels)) == len(labels):
            return {member.name: member.label for member in self.members.values()}
        return {name: name for name in self.members}

    def select_value(self) -> str | None:
        """Return the option of the member that is On (None when none is)."""
        options = self.options()
        return next((options[m.name] for m in self.members.values() if m.is_on), None)

    def member_value(self, member: _Member) -> object:
        """Return a member's value as a channel carries it."""
        match self.kind:
            case VectorKind.NUMBER:
                return parse_number(member.value)
            case VectorKind.SWITCH:
                return member.is_on
            case VectorKind.LIGHT:
                light = member.value.lower()
                return light if light in LIGHT_OPTIONS else None
            case VectorKind.BLOB:
                return None
            case _:
                return member.value

    def current_values(self) -> dict[str, object]:
        """Return every member's current value (the values of a CommandResult)."""
        return {
            member.name: self.member_value(member) for member in self.members.values()
        }

    def channel_of(self, member: _Member) -> str:
        """Return the key of the channel a member's value appears on."""
        return self.name if self.is_select else f"{self.name}.{member.name}"


@dataclass(slots=True)
class _Device:
    """An INDI device: its vectors, whether it exists now and the details last announced."""

    name: str
    vectors: dict[str, _Vector] = field(default_factory=dict)
    present: bool = False
    announced: tuple[str | None, str | None] | None = None
    channels: dict[str, str] = field(default_factory=dict)
    """channel key -> vector name."""

    def driver_info(self) -> tuple[str | None, str | None]:
        """Return (model, sw_version) from indilib's standard DRIVER_INFO text vector."""
        vector = self.vectors.get(DRIVER_INFO_VECTOR)
        if vector is None or vector.kind is not VectorKind.TEXT:
            return None, None

        def text(member_name: str) -> str | None:
            member = vector.members.get(member_name)
            return (member.value.strip() or None) if member else None

        return text(DRIVER_NAME_MEMBER), text(DRIVER_VERSION_MEMBER)


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
class _LinkChange:
    """A link change, queued in order with the elements."""

    up: bool
    reason: str


# --------------------------------------------------------------------------------------------------
# Channel definitions


def _channel_definitions(device: str, vector: _Vector) -> list[ChannelDefined]:
    """Return the channels a vector is exposed as."""
    if vector.is_select:
        return [
            ChannelDefined(
                device_key=device,
                channel_key=vector.name,
                kind=ChannelKind.ENUM,
                writable=vector.writable,
                label=vector.label,
                group=vector.group,
                options=tuple(vector.options().values()),
                value=vector.select_value(),
                keeps_available=vector.name == CONNECTION_VECTOR,
            )
        ]
    return [
        _member_definition(device, vector, member) for member in vector.members.values()
    ]


def _member_definition(device: str, vector: _Vector, member: _Member) -> ChannelDefined:
    """Return the channel of one member."""
    label = (
        vector.label if len(vector.members) == 1 else f"{vector.label} {member.label}"
    )
    common: dict[str, Any] = {
        "device_key": device,
        "channel_key": vector.channel_of(member),
        "writable": vector.writable,
        "label": label,
        "group": vector.group,
        "value": vector.member_value(member),
        "keeps_available": vector.name == CONNECTION_VECTOR,
        "diagnostic": vector.name == DRIVER_INFO_VECTOR,
    }
    match vector.kind:
        case VectorKind.NUMBER:
            return _number_definition(vector, member, common)
        case VectorKind.SWITCH:
            return ChannelDefined(kind=ChannelKind.BOOLEAN, **common)
        case VectorKind.LIGHT:
            return ChannelDefined(
                kind=ChannelKind.ENUM,
                options=LIGHT_OPTIONS,
                translation_key=LIGHT_TRANSLATION_KEY,
                **common,
            )
        case VectorKind.BLOB:
            return ChannelDefined(kind=ChannelKind.BLOB, **common)
        case _:
            return ChannelDefined(kind=ChannelKind.TEXT, **common)


def _number_definition(
    vector: _Vector, member: _Member, common: dict[str, Any]
) -> ChannelDefined:
    """Return a numeric channel: range only when min != max, step only when not 0."""
    value_range = member.value_range
    # INDI carries no units; indilib's standard temperature properties (CCD_TEMPERATURE, ...) are °C.
    names = (vector.name, vector.label, member.name, member.label)
    is_temperature = any("temperature" in name.lower() for name in names)
    return ChannelDefined(
        kind=ChannelKind.NUMERIC,
        minimum=value_range[0] if value_range else None,
        maximum=value_range[1] if value_range else None,
        step=member.step or None,
        precision=display_precision(member.format),
        unit=TEMPERATURE_UNIT if is_temperature else None,
        device_class_hint="temperature" if is_temperature else None,
        **common,
    )


# --------------------------------------------------------------------------------------------------
# Command values


def _coerce_number(value: object, member: _Member) -> str:
    """Return a number command value as a plain decimal; checks the member's range."""
    number: float | None = None
    if isinstance(value, str):
        number = parse_number(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond float's range
            number = float(value)
    if number is None or not math.isfinite(number):
        raise InvalidValue(f"{value!r} is not a number", value=str(value))
    value_range = member.value_range
    if value_range is not None and not value_range[0] <= number <= value_range[1]:
        raise InvalidValue(
            f"{number:g} is outside {value_range[0]:g}..{value_range[1]:g} for {member.name}",
            value=str(value),
        )
    return format_number(number)


def _coerce_switch(value: object) -> str:
    """Return On/Off for a bool or the strings On/Off (any case)."""
    if isinstance(value, bool):
        return SWITCH_ON if value else SWITCH_OFF
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return SWITCH_ON if value.strip().lower() == "on" else SWITCH_OFF
    raise InvalidValue(f"{value!r} is not On/Off", value=str(value))


def _coerce_text(value: object) -> str:
    """Return a text command value (strings, and numbers written as text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidValue(f"{value!r} is not a text", value=str(value))


def _current_wire_value(vector: _Vector, member: _Member) -> str:
    """Return a member's current value to resend: numbers as plain decimals when they parse."""
    if vector.kind is VectorKind.NUMBER:
        number = parse_number(member.value)
        if number is not None:
            return format_number(number)
    return member.value


def _raw_number(value: object) -> str:
    """Return a number for the raw action: strings verbatim (the device judges), numbers plain."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError, ValueError):
            return format_number(value)
    raise InvalidValue(f"{value!r} is not a number", value=str(value))


def _merged_values(
    vector: _Vector, given: Mapping[str, object], *, raw: bool = False
) -> dict[str, str]:
    """Return wire values for ALL members: the given ones coerced, the others as they are now.

    For an exclusive switch vector, turning one member On turns the unspecified ones Off. With
    ``raw`` (the set_property action) number strings go out verbatim and unchecked, so a driver's
    own parsing (sexagesimal, its Alert for nonsense) decides, as with any other INDI client.
    """
    wire: dict[str, str] = {}
    for name, value in given.items():
        member = vector.members[name]
        match vector.kind:
            case VectorKind.NUMBER if raw:
                wire[name] = _raw_number(value)
            case VectorKind.NUMBER:
                wire[name] = _coerce_number(value, member)
            case VectorKind.SWITCH:
                wire[name] = _coerce_switch(value)
            case _:
                wire[name] = _coerce_text(value)
    turned_on = [name for name, value in wire.items() if value == SWITCH_ON]
    if vector.exclusive and len(turned_on) > 1:
        raise InvalidValue(
            f"only one member of {vector.name} can be On", value=", ".join(turned_on)
        )
    exclusive_on = vector.exclusive and bool(turned_on)
    for member in vector.members.values():
        if member.name not in wire:
            wire[member.name] = (
                SWITCH_OFF if exclusive_on else _current_wire_value(vector, member)
            )
    return {name: wire[name] for name in vector.members}  # in the device's member order


def _select_member(vector: _Vector, option: object) -> str:
    """Return the member an enum option names (options first, then member names)."""
    options = vector.options()
    for name, label in options.items():
        if option == label:
            return name
    if isinstance(option, str) and option in vector.members:
        return option
    raise InvalidValue(
        f"{option!r} is not one of {', '.join(options.values())}", value=str(option)
    )


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
        task_factory: TaskFactory | None = None,
        connect_timeout: float = 10.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        executor_threshold: int = DEFAULT_EXECUTOR_THRESHOLD,
    ) -> None:
        """Prepare the source; nothing connects before async_start."""
        self._host = host
        self._port = port
        self._enable_blobs = enable_blobs
        self._max_blob_bytes = max_blob_bytes
        self._executor_threshold = executor_threshold
        self._task_factory = task_factory or loop_task_factory
        self._connection = IndiConnection(
            host,
            port,
            on_element=self._on_element,
            on_link=self._on_link,
            connect_timeout=connect_timeout,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            max_element_bytes=_element_limit(max_blob_bytes),
            task_factory=task_factory,
        )
        self._queue: asyncio.Queue[bytes | _LinkChange] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._sink: EventSink | None = None
        self._devices: dict[str, _Device] = {}
        self._pending: dict[tuple[str, str], deque[asyncio.Future[CommandResult]]] = {}
        self._counters = _Counters()

    # ------------------------------------------------------------------ Source API

    async def async_start(self, sink: EventSink) -> None:
        """Connect (raising CannotConnect), then start reading; getProperties goes out then."""
        self._sink = sink
        await self._connection.connect()
        if self._worker is None:
            self._worker = self._task_factory(
                self._process_queue(), f"INDI events {self._connection.endpoint}"
            )
        self._connection.start()

    async def async_stop(self) -> None:
        """Close the connection, stop the worker and fail pending commands; leaves no task."""
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
        self._fail_pending(
            lambda _key: True,
            lambda: self._not_connected("the INDI source was stopped"),
        )
        self._queue = asyncio.Queue()

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write one channel: send the whole vector and wait for the device's answer."""
        device, vector = self._channel_vector(device_key, channel_key)
        self._require_connected()
        self._require_writable(vector)
        if vector.is_select:
            chosen = _select_member(vector, value)
            wire = {
                name: SWITCH_ON if name == chosen else SWITCH_OFF
                for name in vector.members
            }
        else:
            member_name = channel_key.removeprefix(f"{vector.name}.")
            wire = _merged_values(vector, {member_name: value})
        return await self._command(device, vector, wire)

    async def async_set_property(
        self, device: str, name: str, values: Mapping[str, object]
    ) -> CommandResult:
        """Write members of one vector by name (the raw action); other members keep their values.

        Numbers take numbers (sent as plain decimals) or strings (sent verbatim, unchecked: the
        device answers nonsense with Alert -> CommandRejected); switches take bool or "On"/"Off";
        texts take strings. For an exclusive (OneOfMany/AtMostOne) switch vector, a member turned
        On turns the unspecified members Off.
        """
        found_device, vector = self._vector(device, name)
        unknown = sorted(set(values) - set(vector.members))
        if unknown:
            raise UnknownTarget(
                f"{device}.{name} has no member {', '.join(unknown)}",
                device=device,
                channel=name,
            )
        self._require_connected()
        self._require_writable(vector)
        if not values:
            raise InvalidValue(f"no values given for {device}.{name}", value="")
        wire = _merged_values(vector, values, raw=True)
        return await self._command(found_device, vector, wire)

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
            "pending_commands": sum(len(waiting) for waiting in self._pending.values()),
            "queued_items": self._queue.qsize(),
        }

    # ------------------------------------------------------------------ connection callbacks

    def _on_element(self, raw: bytes) -> None:
        self._queue.put_nowait(raw)

    def _on_link(self, up: bool, reason: str) -> None:
        if not up:
            self._fail_pending(
                lambda _key: True,
                lambda: self._not_connected(f"lost the connection: {reason}"),
            )
        self._queue.put_nowait(_LinkChange(up, reason))

    # ------------------------------------------------------------------ the worker

    async def _process_queue(self) -> None:
        """Handle queued elements and link changes one after the other, forever."""
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _LinkChange):
                    self._emit(LinkUp() if item.up else LinkDown(item.reason))
                else:
                    await self._process_element(item)
            except Exception:
                _LOGGER.exception(
                    "Error while handling INDI data from %s", self._connection.endpoint
                )

    async def _process_element(self, raw: bytes) -> None:
        try:
            if len(raw) > self._executor_threshold:
                loop = asyncio.get_running_loop()
                element = await loop.run_in_executor(None, parse_element, raw)
            else:
                element = parse_element(raw)
        except ProtocolError as err:
            self._connection.report_malformed(str(err), raw)
            return
        match element:
            case DefVector():
                await self._on_def(element)
            case SetVector():
                await self._on_set(element)
            case DelProperty():
                self._on_delete(element)
            case ServerMessage():
                self._on_message(element)
            case None:
                pass

    async def _on_def(self, definition: DefVector) -> None:
        device = self._devices.setdefault(definition.device, _Device(definition.device))
        previous = device.vectors.get(definition.name)
        vector = _Vector.from_def(definition)
        if previous is not None:
            vector.last_message = previous.last_message
            vector.blob_warned = previous.blob_warned
        device.vectors[vector.name] = vector
        self._announce_device(device)
        self._define_channels(device, vector, previous.channel_keys if previous else ())
        self._vector_message(
            device, vector, definition.message, definition.state, definition.timestamp
        )
        self._report_connection(device, vector)
        if vector.kind is VectorKind.BLOB and self._enable_blobs:
            # The server sends no BLOBs until asked (default Never); the setting dies with the link,
            # and the server re-sends every def after reconnecting, so this also re-enables them.
            await self._send_quietly(enable_blob(device.name, "Also", vector.name))

    async def _on_set(self, update: SetVector) -> None:
        device = self._devices.get(update.device)
        vector = device.vectors.get(update.name) if device else None
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
        if update.state is not None:
            vector.state = update.state
        if vector.kind is VectorKind.BLOB:
            await self._emit_blobs(device, vector, update)
        else:
            self._apply_values(device, vector, update)
        self._vector_message(
            device, vector, update.message, update.state, update.timestamp
        )
        self._report_connection(device, vector)
        if vector.name == DRIVER_INFO_VECTOR:
            self._announce_device(device)
        self._resolve_pending(device, vector, update)

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
        self._fail_pending(
            lambda key: key == (device.name, vector.name),
            lambda: UnknownTarget(
                f"{device.name}.{vector.name} was deleted",
                device=device.name,
                channel=vector.name,
            ),
        )
        for key in vector.channel_keys:
            self._emit(ChannelRemoved(device.name, key))
        if deletion.message:
            self._emit(
                Message(
                    device.name,
                    deletion.message,
                    timestamp=deletion.timestamp,
                    attributes={"vector": vector.name},
                )
            )

    def _delete_device(self, device: _Device, message: str | None) -> None:
        if not device.present:
            return
        device.present = False
        for vector in device.vectors.values():
            vector.enabled = False
        self._fail_pending(
            lambda key: key[0] == device.name,
            lambda: UnknownTarget(
                f"{device.name} was deleted", device=device.name, channel=""
            ),
        )
        self._emit(DeviceLost(device.name, message or DEVICE_DELETED_REASON))

    def _on_message(self, message: ServerMessage) -> None:
        if not message.message:
            return
        if message.device is None and message.message == KEEPALIVE_MESSAGE:
            self._counters.keepalives += 1
            return
        self._emit(
            Message(message.device, message.message, timestamp=message.timestamp)
        )

    # ------------------------------------------------------------------ event helpers

    def _emit(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %r", event)

    def _announce_device(self, device: _Device) -> None:
        """Emit DeviceFound for a new (or lost) device, again when its driver details change."""
        info = device.driver_info()
        if device.present and info == device.announced:
            return
        device.present = True
        device.announced = info
        model, sw_version = info
        self._emit(
            DeviceFound(
                device.name,
                device.name,
                manufacturer=MANUFACTURER,
                model=model,
                sw_version=sw_version,
            )
        )

    def _define_channels(
        self, device: _Device, vector: _Vector, previous_keys: tuple[str, ...]
    ) -> None:
        """Emit ChannelDefined for a vector's channels; ChannelRemoved for ones a redefinition dropped."""
        definitions = _channel_definitions(device.name, vector)
        vector.channel_keys = tuple(
            definition.channel_key for definition in definitions
        )
        for key in previous_keys:
            if key not in vector.channel_keys:
                device.channels.pop(key, None)
                self._emit(ChannelRemoved(device.name, key))
        for definition in definitions:
            device.channels[definition.channel_key] = vector.name
            self._emit(definition)

    def _apply_values(
        self, device: _Device, vector: _Vector, update: SetVector
    ) -> None:
        """Store the members a set carries and emit their readings."""
        changed: list[_Member] = []
        for given in update.members:
            member = vector.members.get(given.name)
            if member is None:
                self._counters.unknown_members += 1
                continue
            if not self._usable_value(vector, given):
                self._counters.unparsable_values += 1
                continue
            member.value = given.value
            changed.append(member)
        if not changed:
            return
        if vector.exclusive and any(member.is_on for member in changed):
            # The rule allows one member On: a set naming only that one implies the rest are Off.
            given_names = {member.name for member in changed}
            for member in vector.members.values():
                if member.name not in given_names:
                    member.value = SWITCH_OFF
        if vector.is_select:
            self._emit(
                Reading(
                    device.name, vector.name, vector.select_value(), update.timestamp
                )
            )
            return
        for member in changed:
            self._emit(
                Reading(
                    device.name,
                    vector.channel_of(member),
                    vector.member_value(member),
                    update.timestamp,
                )
            )

    @staticmethod
    def _usable_value(vector: _Vector, given: SetMember) -> bool:
        """Return False for a number that does not parse or a light state INDI does not define."""
        if vector.kind is VectorKind.NUMBER:
            return parse_number(given.value) is not None
        if vector.kind is VectorKind.LIGHT:
            return given.value.lower() in LIGHT_OPTIONS
        return True

    async def _emit_blobs(
        self, device: _Device, vector: _Vector, update: SetVector
    ) -> None:
        """Decode every BLOB member with content and emit it (an empty set only acknowledges)."""
        for given in update.members:
            if not given.value:
                continue
            if given.name not in vector.members:
                self._counters.unknown_members += 1
                continue
            blob = await self._decode_blob(device, vector, given)
            if blob is None:
                continue
            self._counters.blobs_received += 1
            self._counters.blob_bytes += blob.size
            self._emit(
                Reading(
                    device.name, f"{vector.name}.{given.name}", blob, update.timestamp
                )
            )

    async def _decode_blob(
        self, device: _Device, vector: _Vector, given: SetMember
    ) -> BlobData | None:
        """Decode (and decompress) one BLOB, in the executor when it is large; None when skipped."""
        encoded_estimate = len(given.value) * 3 // 4
        if encoded_estimate > self._max_blob_bytes:
            self._skip_blob(device, vector, given, f"about {encoded_estimate} bytes")
            return None
        fmt = given.format or ""
        try:
            if len(given.value) > self._executor_threshold:
                loop = asyncio.get_running_loop()
                data, fmt = await loop.run_in_executor(
                    None, decode_blob, given.value, fmt, self._max_blob_bytes
                )
            else:
                data, fmt = decode_blob(given.value, fmt, self._max_blob_bytes)
        except BlobTooLarge:
            self._skip_blob(
                device, vector, given, "more than the limit once decompressed"
            )
            return None
        except (binascii.Error, zlib.error, ValueError) as err:
            self._skip_blob(device, vector, given, f"undecodable: {err}")
            return None
        return BlobData(data, fmt, len(data))

    def _skip_blob(
        self, device: _Device, vector: _Vector, given: SetMember, why: str
    ) -> None:
        """Count a skipped BLOB; WARNING the first time for a vector, DEBUG afterwards."""
        self._counters.blobs_skipped += 1
        level = logging.DEBUG if vector.blob_warned else logging.WARNING
        vector.blob_warned = True
        _LOGGER.log(
            level,
            "Skipped a BLOB of %s.%s.%s (%s; limit %s bytes)",
            device.name,
            vector.name,
            given.name,
            why,
            self._max_blob_bytes,
        )

    def _vector_message(
        self,
        device: _Device,
        vector: _Vector,
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
        level = MessageLevel.WARNING if state == STATE_ALERT else MessageLevel.INFO
        self._emit(
            Message(
                device.name,
                message,
                level,
                timestamp,
                attributes={"vector": vector.name},
            )
        )

    def _report_connection(self, device: _Device, vector: _Vector) -> None:
        """Emit DeviceConnection from indilib's CONNECTION switch (CONNECT On = connected)."""
        if vector.name != CONNECTION_VECTOR or vector.kind is not VectorKind.SWITCH:
            return
        connect = vector.members.get(CONNECT_MEMBER)
        if connect is not None:
            self._emit(DeviceConnection(device.name, connect.is_on))

    async def _send_quietly(self, data: bytes) -> None:
        """Send a request whose loss does not matter (it is repeated after a reconnect)."""
        try:
            await self._connection.send(data)
        except NotConnected:
            _LOGGER.debug("Not sent while disconnected: %r", data)

    # ------------------------------------------------------------------ commands

    def _vector(self, device_key: str, name: str) -> tuple[_Device, _Vector]:
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
    ) -> tuple[_Device, _Vector]:
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
    def _require_writable(vector: _Vector) -> None:
        if not vector.writable:
            raise InvalidValue(f"{vector.name} is read-only", value="")

    async def _command(
        self, device: _Device, vector: _Vector, wire: Mapping[str, str]
    ) -> CommandResult:
        """Send a new*Vector with all members and wait for the set*Vector answering it."""
        payload = new_vector(vector.kind, device.name, vector.name, list(wire.items()))
        key = (device.name, vector.name)
        future: asyncio.Future[CommandResult] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.setdefault(key, deque()).append(future)
        timeout = command_timeout(vector.timeout)
        try:
            await self._connection.send(payload)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise CommandTimeout(
                f"{device.name}.{vector.name} did not answer within {timeout:g} s",
                device=device.name,
                channel=vector.name,
            ) from None
        finally:
            self._forget_pending(key, future)

    def _resolve_pending(
        self, device: _Device, vector: _Vector, update: SetVector
    ) -> None:
        """Answer the oldest pending command of the vector: Ok/Idle resolve, Alert rejects."""
        if update.state not in (STATE_OK, STATE_IDLE, STATE_ALERT):
            return  # Busy (or no state): the device is still working on it
        waiting = self._pending.get((device.name, vector.name))
        while waiting and waiting[0].done():
            waiting.popleft()
        if not waiting:
            return
        future = waiting.popleft()
        if update.state == STATE_ALERT:
            future.set_exception(
                CommandRejected(
                    update.message or STATE_ALERT,
                    device=device.name,
                    channel=vector.name,
                )
            )
        else:
            future.set_result(
                CommandResult(update.state, update.message, vector.current_values())
            )

    def _forget_pending(
        self, key: tuple[str, str], future: asyncio.Future[CommandResult]
    ) -> None:
        waiting = self._pending.get(key)
        if waiting is not None:
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                del self._pending[key]
        if future.done() and not future.cancelled():
            future.exception()  # mark it retrieved: the caller may have been cancelled meanwhile

    def _fail_pending(
        self,
        matches: Callable[[tuple[str, str]], bool],
        error: Callable[[], SourceError],
    ) -> None:
        """Fail the pending commands of the matching vectors (each with its own exception)."""
        for key, waiting in self._pending.items():
            if matches(key):
                for future in waiting:
                    if not future.done():
                        future.set_exception(error())
                waiting.clear()

    def _not_connected(self, why: str) -> NotConnected:
        return NotConnected(
            f"Not connected to the INDI server {self._connection.endpoint}: {why}",
            host=self._host,
            port=str(self._port),
        )

    @staticmethod
    def _device_diagnostics(device: _Device) -> dict[str, Any]:
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
