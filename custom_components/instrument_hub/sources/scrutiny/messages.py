"""What the Scrutiny server's messages mean: its status, the SDK's events, watchables, acquisitions.

The SDK's events (DeviceReady, DeviceGone, SFDLoaded, SFDUnLoaded, DataloggingStateChanged) are no
wire messages: the SDK derives them by comparing successive ``inform_server_status`` messages
(``ScrutinyClient._wt_process_device_state``, and ``_wt_disconnect`` when the link is lost);
:func:`status_changes` does exactly the same. No Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import csv
from dataclasses import dataclass, field
from enum import StrEnum
import io
import math
import struct
from typing import Any, Final

from ...events import NUMBER_TYPES

DATALOGGING_STATES: Final = (
    "unavailable",
    "standby",
    "waiting_for_trigger",
    "acquiring",
    "downloading",
    "error",
)
"""The server's datalogger states (API.DataloggingStateString)."""
DATALOGGING_UNAVAILABLE: Final = "unavailable"


class WatchableType(StrEnum):
    """The three kinds of watchables a server lists."""

    VARIABLE = "var"
    ALIAS = "alias"
    RPV = "rpv"


class EventKind(StrEnum):
    """The SDK's event kinds (``ScrutinyClient.Events``), by the names automations use."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    DEVICE_READY = "device_ready"
    DEVICE_GONE = "device_gone"
    SFD_LOADED = "sfd_loaded"
    SFD_UNLOADED = "sfd_unloaded"
    DATALOGGING_STATE_CHANGED = "datalogging_state_changed"
    STATUS_UPDATE = "status_update"
    DATALOGGING_LIST_CHANGED = "datalogging_list_changed"


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One ``inform_server_status``: the device link, the session, the SFD and the datalogger."""

    device_status: str
    session_id: str | None
    firmware_id: str | None
    datalogging_state: str
    completion_ratio: float | None
    link_type: str | None = None
    link_operational: bool = False
    demo_mode: bool = False

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> ServerStatus:
        """Read a status message; fields of the wrong type count as absent."""
        datalogging = _mapping(message.get("datalogging_status"))
        link = _mapping(message.get("device_comm_link"))
        state = datalogging.get("datalogging_state")
        ratio = datalogging.get("completion_ratio")
        return cls(
            device_status=_text(message.get("device_status")) or "unknown",
            session_id=_text(message.get("device_session_id")),
            firmware_id=_text(message.get("loaded_sfd_firmware_id")),
            datalogging_state=state
            if state in DATALOGGING_STATES
            else DATALOGGING_UNAVAILABLE,
            completion_ratio=float(ratio)
            if isinstance(ratio, int | float) and not isinstance(ratio, bool)
            else None,
            link_type=_text(link.get("link_type")),
            link_operational=link.get("link_operational") is True,
            demo_mode=link.get("demo_mode") is True,
        )


@dataclass(frozen=True, slots=True)
class SdkEvent:
    """One of the SDK's events, with what it carries (session id, firmware id, datalogger state)."""

    kind: EventKind
    session_id: str | None = None
    firmware_id: str | None = None
    state: str | None = None
    completion_ratio: float | None = None


def status_changes(
    previous: ServerStatus | None, current: ServerStatus | None
) -> list[SdkEvent]:
    """Return the SDK's events between two statuses (``current`` None: the link was lost).

    A new session id is a device gone followed by a device ready; the datalogger's change is only
    reported from a known previous status on, as the SDK does.
    """
    events: list[SdkEvent] = []
    if current is None:
        if previous is not None:
            if previous.session_id is not None:
                events.append(
                    SdkEvent(EventKind.DEVICE_GONE, session_id=previous.session_id)
                )
            if previous.firmware_id is not None:
                events.append(
                    SdkEvent(EventKind.SFD_UNLOADED, firmware_id=previous.firmware_id)
                )
        return events
    if previous is not None and previous.session_id is not None:
        if previous.session_id != current.session_id:
            events.append(
                SdkEvent(EventKind.DEVICE_GONE, session_id=previous.session_id)
            )
            if current.session_id is not None:
                events.append(
                    SdkEvent(EventKind.DEVICE_READY, session_id=current.session_id)
                )
    elif current.session_id is not None:
        events.append(SdkEvent(EventKind.DEVICE_READY, session_id=current.session_id))
    if previous is not None and previous.firmware_id is not None:
        if previous.firmware_id != current.firmware_id:
            events.append(
                SdkEvent(EventKind.SFD_UNLOADED, firmware_id=previous.firmware_id)
            )
            if current.firmware_id is not None:
                events.append(
                    SdkEvent(EventKind.SFD_LOADED, firmware_id=current.firmware_id)
                )
    elif current.firmware_id is not None:
        events.append(SdkEvent(EventKind.SFD_LOADED, firmware_id=current.firmware_id))
    if previous is not None and (
        previous.datalogging_state != current.datalogging_state
        or previous.completion_ratio != current.completion_ratio
    ):
        events.append(
            SdkEvent(
                EventKind.DATALOGGING_STATE_CHANGED,
                session_id=current.session_id,
                firmware_id=current.firmware_id,
                state=current.datalogging_state,
                completion_ratio=current.completion_ratio,
            )
        )
    return events


# --------------------------------------------------------------------------------------------------
# Device and firmware


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What ``get_device_info`` tells of the target (the parts worth showing)."""

    display_name: str | None
    device_id: str | None
    protocol: str | None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> DeviceInfo | None:
        """Read a ``response_get_device_info``; None when the device is not available."""
        info = _mapping(message.get("device_info"))
        if message.get("available") is not True or not info:
            return None
        major, minor = info.get("protocol_major"), info.get("protocol_minor")
        return cls(
            display_name=_text(info.get("display_name")),
            device_id=_text(info.get("device_id")),
            protocol=f"{major}.{minor}"
            if isinstance(major, int) and isinstance(minor, int)
            else None,
        )


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    """The loaded Scrutiny Firmware Description's metadata (``get_loaded_sfd``)."""

    firmware_id: str
    project_name: str | None = None
    version: str | None = None
    author: str | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> FirmwareInfo | None:
        """Read a ``response_get_loaded_sfd``; None when no SFD is loaded."""
        sfd = _mapping(message.get("sfd"))
        firmware_id = _text(sfd.get("firmware_id"))
        if firmware_id is None:
            return None
        metadata = _mapping(sfd.get("metadata"))
        return cls(
            firmware_id=firmware_id,
            project_name=_text(metadata.get("project_name")),
            version=_text(metadata.get("version")),
            author=_text(metadata.get("author")),
        )

    @property
    def title(self) -> str:
        """Return the firmware as people name it: project and version (its id when it has neither)."""
        parts = [part for part in (self.project_name, self.version) if part]
        return " ".join(parts) or self.firmware_id


# --------------------------------------------------------------------------------------------------
# Watchables

_INTEGER_BITS: Final = {8, 16, 32, 64, 128, 256}


@dataclass(frozen=True, slots=True)
class Watchable:
    """One entry of ``get_watchable_list``: its display path, type and data type (and enum)."""

    path: str
    type: WatchableType
    dtype: str
    enum: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_boolean(self) -> bool:
        """Return True for the ``bool*`` data types."""
        return self.dtype.startswith("bool")

    @property
    def is_integer(self) -> bool:
        """Return True for the signed and unsigned integer data types."""
        return self.dtype.startswith(("sint", "uint"))

    def integer_range(self) -> tuple[int, int] | None:
        """Return the range of an integer data type (None for others)."""
        bits = _bits(self.dtype)
        if not self.is_integer or bits is None:
            return None
        if self.dtype.startswith("uint"):
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def written_value(self, value: float | bool) -> float | int | bool:
        """Return the value the device holds after writing ``value`` (float32 rounding, integers)."""
        if self.is_boolean:
            return bool(value)
        if self.is_integer:
            return int(value)
        if self.dtype == "float32" and math.isfinite(value):
            return float(struct.unpack("<f", struct.pack("<f", float(value)))[0])
        return float(value)


def _bits(dtype: str) -> int | None:
    digits = "".join(char for char in dtype if char.isdigit())
    return int(digits) if digits and int(digits) in _INTEGER_BITS else None


def parse_watchable_list(message: Mapping[str, Any]) -> list[Watchable]:
    """Return the watchables of one ``response_get_watchable_list`` (bad entries are left out)."""
    content = _mapping(message.get("content"))
    found: list[Watchable] = []
    for watchable_type in WatchableType:
        entries = content.get(watchable_type.value)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            path, dtype = _text(entry.get("path")), _text(entry.get("dtype"))
            if path is None or dtype is None:
                continue
            enum = _mapping(_mapping(entry.get("enum")).get("values"))
            found.append(
                Watchable(
                    path,
                    watchable_type,
                    dtype,
                    {
                        str(name): value
                        for name, value in enum.items()
                        if isinstance(value, int)
                    },
                )
            )
    return found


@dataclass(slots=True)  # one per message: not frozen, as events.Reading
class ValueUpdate:
    """One value of a ``watchable_update``: the server's id, the value (None: invalid), server µs."""

    server_id: str
    value: object
    server_time_us: float | None


def parse_updates(message: Mapping[str, Any]) -> list[ValueUpdate]:
    """Return the values of one ``watchable_update`` (records without an id are left out)."""
    updates = message.get("updates")
    if not isinstance(updates, list):
        return []
    found: list[ValueUpdate] = []
    for update in updates:
        if not isinstance(update, Mapping) or not isinstance(update.get("id"), str):
            continue
        value = update.get("v")
        time_us = update.get("t")
        found.append(
            ValueUpdate(
                update["id"],
                value if isinstance(value, NUMBER_TYPES) else None,  # bool is an int
                float(time_us) if isinstance(time_us, NUMBER_TYPES) else None,
            )
        )
    return found


# --------------------------------------------------------------------------------------------------
# Datalogging acquisitions


def acquisition_csv(content: Mapping[str, Any]) -> str:
    """Return a ``response_read_datalogging_acquisition_content`` as CSV: the X axis, then each signal.

    The first row names the columns; non-finite samples come as the server writes them ("nan").
    """
    xdata = _mapping(content.get("xdata"))
    signals: Sequence[Any] = content.get("signals") or []
    columns: list[tuple[str, Sequence[Any]]] = [
        (_text(xdata.get("name")) or "x", _samples(xdata.get("data")))
    ]
    for index, signal in enumerate(signals):
        signal_map = _mapping(signal)
        watchable = _mapping(signal_map.get("watchable"))
        name = (
            _text(signal_map.get("name"))
            or _text(watchable.get("path"))
            or f"signal {index}"
        )
        columns.append((name, _samples(signal_map.get("data"))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _data in columns])
    rows = max(len(data) for _name, data in columns)
    for row in range(rows):
        writer.writerow(
            [data[row] if row < len(data) else "" for _name, data in columns]
        )
    return out.getvalue()


def _samples(data: object) -> Sequence[Any]:
    return data if isinstance(data, list) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
