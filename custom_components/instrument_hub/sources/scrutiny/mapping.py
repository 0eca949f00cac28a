"""How a Scrutiny server's target, datalogger, SDK events and watchables become channels."""

from __future__ import annotations

from typing import Final

from ...events import (
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    DeviceFound,
    EventData,
    Reading,
    join_key,
)
from .messages import (
    DATALOGGING_STATES,
    DeviceInfo,
    EventKind,
    FirmwareInfo,
    SdkEvent,
    Watchable,
)

SERVER: Final = ""
"""The entry's own device (the hub's HUB_DEVICE_KEY): the server."""
TARGET: Final = "target"
"""The device the server talks to (one per entry, whatever firmware it runs)."""
MANUFACTURER: Final = "Scrutiny"

DATALOGGER_STATE: Final = join_key("datalogger", "state")
DATALOGGER_COMPLETION: Final = join_key("datalogger", "completion")
FIRMWARE: Final = join_key("firmware")
FIRMWARE_ID: Final = join_key("firmware", "id")
SESSION_ID: Final = join_key("session")
ACQUISITION_FILE: Final = join_key("datalogger", "export")
WATCHABLE_PREFIX: Final = "w"
FLOAT_STEP: Final = 0.001

NOISY_EVENTS: Final = frozenset({EventKind.STATUS_UPDATE})
"""Event kinds that fire on every status push (5 per second during an acquisition)."""
ACQUISITION_COMPLETE: Final = "acquisition_complete"
"""Not an SDK event kind: an acquisition joined the server's list (``inform_datalogging_list_changed`` new)."""
EVENT_TYPES: Final = (*(kind.value for kind in EventKind), ACQUISITION_COMPLETE)


def event_channel_key(event_type: str) -> str:
    """Return the key of the server's event channel of one event type."""
    return join_key("event", event_type)


def watchable_key(path: str) -> str:
    """Return the channel key of a watchable (its display path, escaped)."""
    return join_key(WATCHABLE_PREFIX, path)


def event_channels() -> list[ChannelDefined]:
    """Return the server's event channels: one per SDK event kind, plus acquisition complete."""
    return [
        ChannelDefined(
            SERVER,
            event_channel_key(event_type),
            ChannelKind.EVENT,
            writable=False,
            label=None,
            translation_key=event_type,
            options=(event_type,),
            category=ChannelCategory.DIAGNOSTIC if event_type in NOISY_EVENTS else None,
            enabled_by_default=event_type not in NOISY_EVENTS,
        )
        for event_type in EVENT_TYPES
    ]


def fire(event_type: str, **attributes: object) -> Reading:
    """Return the reading that fires the server's event entity of one event type."""
    return Reading(
        SERVER, event_channel_key(event_type), EventData(event_type, attributes)
    )


def sdk_event_reading(event: SdkEvent) -> Reading:
    """Return the reading that fires an SDK event with what it carries."""
    return fire(
        event.kind.value,
        session_id=event.session_id,
        firmware_id=event.firmware_id,
        state=event.state,
        completion_ratio=event.completion_ratio,
    )


def target_device(
    info: DeviceInfo | None, firmware: FirmwareInfo | None
) -> DeviceFound:
    """Return the target as a device: named by its firmware's project, else by itself."""
    display_name = info.display_name if info else None
    name = (
        (firmware.project_name if firmware else None) or display_name or "Target device"
    )
    return DeviceFound(
        TARGET,
        name,
        manufacturer=(firmware.author if firmware else None) or MANUFACTURER,
        model=display_name,
        sw_version=firmware.version if firmware else None,
        via_device_key=SERVER,
    )


def target_channels() -> list[ChannelDefined]:
    """Return the target's fixed channels: datalogger, firmware, session and the CSV exports."""
    return [
        ChannelDefined(
            TARGET,
            DATALOGGER_STATE,
            ChannelKind.ENUM,
            writable=False,
            label=None,
            translation_key="datalogger_state",
            options=DATALOGGING_STATES,
        ),
        ChannelDefined(
            TARGET,
            DATALOGGER_COMPLETION,
            ChannelKind.NUMERIC,
            writable=False,
            label=None,
            translation_key="datalogger_completion",
            unit="%",
            precision=0,
            state_class=None,
        ),
        ChannelDefined(
            TARGET,
            FIRMWARE,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key="firmware",
            category=ChannelCategory.DIAGNOSTIC,
        ),
        ChannelDefined(
            TARGET,
            FIRMWARE_ID,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key="firmware_id",
            category=ChannelCategory.DIAGNOSTIC,
        ),
        ChannelDefined(
            TARGET,
            SESSION_ID,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key="session_id",
            category=ChannelCategory.DIAGNOSTIC,
            enabled_by_default=False,
        ),
        ChannelDefined(
            TARGET,
            ACQUISITION_FILE,
            ChannelKind.BLOB,
            writable=False,
            label=None,
            translation_key="acquisition_file",
        ),
    ]


def watchable_channel(watchable: Watchable, *, writable: bool) -> ChannelDefined:
    """Return a watched watchable's channel: boolean, enum or number by its data type."""
    label = watchable.path.lstrip("/") or watchable.path
    key = watchable_key(watchable.path)
    if watchable.is_boolean:
        return ChannelDefined(TARGET, key, ChannelKind.BOOLEAN, writable, label)
    if watchable.enum:
        return ChannelDefined(
            TARGET,
            key,
            ChannelKind.ENUM,
            writable,
            label,
            options=tuple(watchable.enum),
        )
    bounds = watchable.integer_range()
    return ChannelDefined(
        TARGET,
        key,
        ChannelKind.NUMERIC,
        writable,
        label,
        minimum=float(bounds[0]) if bounds else None,
        maximum=float(bounds[1]) if bounds else None,
        step=1.0 if bounds else FLOAT_STEP,
        precision=0 if bounds else None,
    )


def watchable_value(watchable: Watchable, value: object) -> object:
    """Return a pushed value as its channel shows it (an enum's name; None stays unknown)."""
    if value is None:
        return None
    if watchable.is_boolean:
        return bool(value)
    if watchable.enum:
        return next(
            (name for name, number in watchable.enum.items() if number == value), None
        )
    return value
