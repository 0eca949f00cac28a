"""Normalized events: what every source turns its protocol into.

Everything after the edge (entities, availability, diagnostics) only ever sees these types, so a new
protocol is one new module under ``sources/``. This module has no Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ChannelKind(StrEnum):
    """What a channel carries; with ``writable`` it decides the entity platform."""

    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    ENUM = "enum"
    TEXT = "text"
    BLOB = "blob"
    EVENT = "event"


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
    """A device appeared (or came back). Repeating it for a known device updates its details."""

    device_key: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None
    via_device_key: str | None = None


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

    ``label`` is the device's own name for the channel; ``translation_key`` is used instead where a
    source knows the channel's meaning (fixed channels). ``options`` lists the values of an enum.
    ``keeps_available`` marks the control that (re)connects a device's hardware: it must stay usable
    while the device reports itself disconnected. ``diagnostic`` marks channels about the link or the
    device's health rather than its measurements.
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
    diagnostic: bool = False


@dataclass(frozen=True, slots=True)
class ChannelRemoved:
    """A channel was removed by the device; its entity becomes unavailable until re-defined."""

    device_key: str
    channel_key: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One pushed value of a channel."""

    device_key: str
    channel_key: str
    value: object
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class BlobData:
    """The value of a BLOB reading: decoded (and decompressed) bytes plus the device's format suffix."""

    data: bytes
    format: str
    size: int


@dataclass(frozen=True, slots=True)
class Message:
    """Commentary from a device (``device_key``) or from the server itself (``device_key`` None)."""

    device_key: str | None
    text: str
    level: MessageLevel = MessageLevel.INFO
    timestamp: datetime | None = None
    attributes: Mapping[str, object] = field(default_factory=dict)


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
