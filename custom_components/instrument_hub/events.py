"""Normalized events: what every source turns its protocol into.

Everything after the edge (entities, availability, diagnostics) only ever sees these types, so a new
protocol is one new module under ``sources/``. This module has no Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

NO_ATTRIBUTES: Final[Mapping[str, object]] = MappingProxyType({})
"""The one empty attribute mapping every event and channel without attributes shares."""
NUMBER_TYPES: Final = (int, float)
"""For ``isinstance`` on the per-reading path: ``int | float`` there builds a union at every call
(measured 150 ns against 55 for this tuple). ``bool`` is an ``int``: callers rule it out first."""

CONNECTION_MAC: Final = "mac"
"""Connection type of a network MAC address in ``DeviceFound.connections`` (Home Assistant's own name)."""


class ChannelKind(StrEnum):
    """What a channel carries; with ``writable`` it decides the entity platform.

    ``EVENT`` channels fire (their ``options`` are the event types, each Reading an :class:`EventData`);
    ``ACTION`` channels are commands without a value (a button): Abort, reset statistics, a Thing's action.
    """

    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    ENUM = "enum"
    TEXT = "text"
    BLOB = "blob"
    EVENT = "event"
    ACTION = "action"


class StateClass(StrEnum):
    """How a numeric channel's values add up (Home Assistant's sensor state classes)."""

    MEASUREMENT = "measurement"
    TOTAL = "total"
    TOTAL_INCREASING = "total_increasing"


class ChannelCategory(StrEnum):
    """Channels that are not the device's primary data: its health/link, or its configuration."""

    DIAGNOSTIC = "diagnostic"
    CONFIG = "config"


class MessageLevel(StrEnum):
    """Severity of a device or server message."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The connection to the endpoint (server, plug, port) is established."""


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The connection to the endpoint was lost; every entity of the entry becomes unavailable."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeviceFound:
    """A device appeared (or came back). Repeating it for a known device updates its details.

    A ``hardware_id`` (a MAC address, a serial number; stable for the device's life) anchors the
    device's identifier and its entities' unique ids instead of the config entry, so that deleting
    and re-adding the entry keeps entity ids and long-term statistics. ``connections`` are
    ``(type, value)`` pairs such as ``(CONNECTION_MAC, "aa:bb:cc:dd:ee:ff")``.
    """

    device_key: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None
    via_device_key: str | None = None
    hardware_id: str | None = None
    connections: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceLost:
    """A device went away; its entities become unavailable, the device stays in the registry."""

    device_key: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceConnection:
    """The device's own link to its hardware (indilib's CONNECTION switch), separate from presence."""

    device_key: str
    connected: bool


@dataclass(frozen=True, slots=True)
class ChannelDefined:
    """A channel was defined; a re-definition of a known channel updates it, never duplicates it.

    ``channel_key`` is built with :func:`join_key`, so keys of distinct names never collide.
    ``label`` is the device's own name for the channel; ``translation_key`` is used instead where a
    source knows the channel's meaning (fixed channels). ``options`` lists the values of an enum or the
    event types of an event channel. ``keeps_available`` marks a control that must stay usable while
    the device reports itself disconnected (indilib's CONNECTION, and the settings a driver wants set
    before connecting). ``state_class`` applies to read-only numeric channels (None: no state class);
    ``last_reset`` goes with ``TOTAL`` (a source re-defines the channel when its meter resets).
    ``precision`` is the suggested display precision; ``category`` and ``enabled_by_default`` say
    whether the entity is a diagnostic/config one and whether it starts enabled (noisy ones do not).
    ``attributes`` are the entity's extra state attributes (a reading may replace them). ``replaces``
    names channels of the same device this one supersedes (a source that now maps a thing to other
    channels): their entities are removed from the registry.
    """

    device_key: str
    channel_key: str
    kind: ChannelKind
    writable: bool
    label: str | None
    group: str | None = None
    unit: str | None = None
    device_class_hint: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    precision: int | None = None
    options: tuple[str, ...] = ()
    translation_key: str | None = None
    value: object = None
    keeps_available: bool = False
    category: ChannelCategory | None = None
    enabled_by_default: bool = True
    state_class: StateClass | None = StateClass.MEASUREMENT
    last_reset: datetime | None = None
    attributes: Mapping[str, object] = NO_ATTRIBUTES
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelRemoved:
    """A channel was removed by the device; its entity becomes unavailable until re-defined."""

    device_key: str
    channel_key: str


@dataclass(slots=True)
class Reading:
    """One pushed value of a channel (None or NaN: the device has no valid value, shown as unknown).

    ``attributes``, when given, replace the channel's extra state attributes (None: unchanged).

    Not frozen, unlike the other events, but never changed once made: a source makes one per
    pushed value, and a frozen dataclass takes 3.5 times as long to construct (250 ns against 70,
    measured), because each field goes through ``object.__setattr__``.
    """

    device_key: str
    channel_key: str
    value: object
    timestamp: datetime | None = None
    attributes: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class BlobData:
    """The value of a BLOB reading: decoded (and decompressed) bytes plus the device's format suffix.

    A source that wrote the bytes to a spool file as they arrived gives its path as ``spooled`` (``data``
    is empty then): whoever handles the reading moves the file into place or removes it.
    """

    data: bytes
    format: str
    size: int
    spooled: Path | None = None


@dataclass(slots=True)
class EventData:
    """The value of a Reading on an EVENT channel: which of its event types fired, and with what.

    Not frozen, for the reason :class:`Reading` is not (one per pushed event); never changed.
    """

    event_type: str
    attributes: Mapping[str, object] = NO_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class Message:
    """Commentary from a device (``device_key``) or from the server itself (``device_key`` None)."""

    device_key: str | None
    text: str
    level: MessageLevel = MessageLevel.INFO
    timestamp: datetime | None = None
    attributes: Mapping[str, object] = NO_ATTRIBUTES


type Event = (
    LinkUp
    | LinkDown
    | DeviceFound
    | DeviceLost
    | DeviceConnection
    | ChannelDefined
    | ChannelRemoved
    | Reading
    | Message
)

LIFECYCLE_EVENTS = (
    LinkUp,
    LinkDown,
    DeviceFound,
    DeviceLost,
    DeviceConnection,
    ChannelDefined,
    ChannelRemoved,
)
"""Events that change what exists; the collector never drops or coalesces these."""


# --------------------------------------------------------------------------------------------------
# Keys. A channel key joins name parts with "."; each part is escaped so that distinct names never
# give the same key (vector "a.b" + member "c" vs vector "a" + member "b.c"), keys never contain ":"
# (the separator of unique ids) and never start with "_" (the hub's own channels). A name without
# any of these characters is its own key part, so existing ids of ordinary names never change.

_PART_ESCAPES: Final = {"%": "%25", ".": "%2E", ":": "%3A"}
_DEVICE_ESCAPES: Final = {"%": "%25", ":": "%3A"}


def _escape(name: str, escapes: Mapping[str, str]) -> str:
    if not any(char in name for char in escapes):
        return name
    return "".join(escapes.get(char, char) for char in name)


def key_part(name: str) -> str:
    """Return one part of a channel key: the name with ``%``, ``.``, ``:`` and a leading ``_`` escaped."""
    part = _escape(name, _PART_ESCAPES)
    return f"%5F{part[1:]}" if part.startswith("_") else part


def join_key(*names: str) -> str:
    """Return the channel key of a path of names (vector, member, ...): the escaped parts joined by ``.``."""
    return ".".join(key_part(name) for name in names)


def split_key(key: str) -> tuple[str, ...]:
    """Return the names a channel key was joined from (the inverse of :func:`join_key`)."""
    return tuple(unquote(part) for part in key.split("."))


def device_key_part(name: str) -> str:
    """Return a device key as it appears in identifiers: ``%`` and ``:`` escaped, nothing else."""
    return _escape(name, _DEVICE_ESCAPES)
