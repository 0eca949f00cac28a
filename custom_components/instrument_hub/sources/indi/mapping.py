"""Turn vectors into normalized ChannelDefined events.

Channels: ``join_key(vector, member)`` for one channel per member, ``join_key(vector)`` for the
select made of a whole OneOfMany/AtMostOne switch vector (names escaped, so keys cannot collide).
"""

from __future__ import annotations

from typing import Any, Final

from ...events import ChannelCategory, ChannelDefined, ChannelKind, join_key
from .model import CONNECTION_VECTOR, DRIVER_INFO_VECTOR, LIGHT_OPTIONS, Member, Vector
from .protocol import VectorKind, display_precision

LIGHT_TRANSLATION_KEY: Final = "light_state"
TEMPERATURE_UNIT: Final = "°C"


def channel_definitions(device: str, vector: Vector) -> list[ChannelDefined]:
    """Return the channels a vector is exposed as."""
    if vector.is_select:
        return [
            ChannelDefined(
                device_key=device,
                channel_key=join_key(vector.name),
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


def _member_definition(device: str, vector: Vector, member: Member) -> ChannelDefined:
    """Return the channel of one member."""
    label = (
        vector.label if len(vector.members) == 1 else f"{vector.label} {member.label}"
    )
    common: dict[str, Any] = {
        "device_key": device,
        "channel_key": member.channel_key,
        "writable": vector.writable,
        "label": label,
        "group": vector.group,
        "value": vector.member_value(member),
        "keeps_available": vector.name == CONNECTION_VECTOR,
        "category": ChannelCategory.DIAGNOSTIC
        if vector.name == DRIVER_INFO_VECTOR
        else None,
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
    vector: Vector, member: Member, common: dict[str, Any]
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
