"""Turn vectors into normalized ChannelDefined events.

Channels: ``join_key(vector, member)`` for one channel per member (numbers, texts, lights, BLOBs, switches that
are states, and the buttons of command switches), ``join_key(vector)`` for the select made of a whole
OneOfMany/AtMostOne switch vector, and ``DEVICE_STATE_CHANNEL`` for a device's summary of its properties'
states. Names are escaped (see ``events.join_key``), so keys cannot collide.

What a channel says beyond its value:
  * unit, device class, state class: the options' per-property override, else indilib's standard property
    names (``standard``), else a unit the device's own label states ("Period (ms)", ``naming``);
  * display precision from the number format, including the sexagesimal ``%<w>.<f>m``;
  * category: driver options (the Options, Connection, Simulation, ... groups and the standard settings)
    are configuration, read-only ones there and DRIVER_INFO diagnostic; noisy groups start disabled;
  * the property's state (idle/ok/busy/alert) as the attribute ``property_state`` of each of its entities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ...events import ChannelCategory, ChannelDefined, ChannelKind, StateClass, join_key
from .model import LIGHT_OPTIONS, STATE_ATTRIBUTE, Member, Vector
from .naming import NameCandidate, label_unit, member_name, tidy, without_unit
from .protocol import VectorKind, display_precision
from .standard import (
    CONFIG_GROUPS,
    CONFIG_VECTORS,
    CONNECTION_VECTOR,
    DIAGNOSTIC_VECTORS,
    DISABLED_GROUPS,
    DISABLED_MEMBERS,
    DISABLED_VECTORS,
    Quantity,
    standard_quantity,
)

LIGHT_TRANSLATION_KEY: Final = "light_state"
DEVICE_STATE_TRANSLATION_KEY: Final = "property_state"
DEVICE_STATE_CHANNEL: Final = join_key("", "state")
"""The device's property-state summary: a key no vector can have (INDI names are never empty)."""
PROPERTY_STATE_ATTRIBUTE: Final = STATE_ATTRIBUTE
BUSY_ATTRIBUTE: Final = "busy"
ALERT_ATTRIBUTE: Final = "alert"


@dataclass(frozen=True, slots=True)
class UnitOverride:
    """A unit and device class the user gave a property (or one member) in the options."""

    unit: str | None
    device_class: str | None


type UnitOverrides = Mapping[tuple[str, str, str | None], UnitOverride]
"""(device, vector, member or None for all members) -> override."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel of a vector: its definition (with the plain name) and the names it may need instead."""

    definition: ChannelDefined
    name: NameCandidate


def channel_definitions(
    device: str,
    vector: Vector,
    overrides: UnitOverrides | None = None,
) -> list[Channel]:
    """Return the channels a vector is exposed as."""
    if vector.is_select:
        label = tidy(vector.label)
        return [
            Channel(
                ChannelDefined(
                    kind=ChannelKind.ENUM,
                    options=tuple(vector.options().values()),
                    value=vector.select_value(),
                    **_common(device, vector, None, join_key(vector.name), label),
                ),
                NameCandidate(
                    join_key(vector.name), label, _group(vector), vector.name, None
                ),
            )
        ]
    return [
        _member_channel(device, vector, member, overrides or {})
        for member in vector.members.values()
    ]


def property_attributes(vector: Vector) -> Mapping[str, object]:
    """Return the attributes every entity of a vector carries: its state (BLOB events carry none)."""
    if vector.kind is VectorKind.BLOB:
        return {}
    return vector.state_attributes()


def device_state_definition(device: str) -> ChannelDefined:
    """Return the channel summarising a device's property states (its value comes as readings)."""
    return ChannelDefined(
        device_key=device,
        channel_key=DEVICE_STATE_CHANNEL,
        kind=ChannelKind.ENUM,
        writable=False,
        label=None,
        translation_key=DEVICE_STATE_TRANSLATION_KEY,
        options=LIGHT_OPTIONS,
        keeps_available=True,
        state_class=None,
    )


def device_state(vectors: Iterable[Vector]) -> tuple[str, dict[str, object]]:
    """Return a device's state (the most serious of its properties') and which properties are busy or alert."""
    # One pass: this runs whenever a property's state changes.
    busy: list[str] = []
    alert: list[str] = []
    ok = False
    for vector in vectors:
        if not vector.enabled:
            continue
        state = vector.state_option
        if state == "alert":
            alert.append(vector.name)
        elif state == "busy":
            busy.append(vector.name)
        elif state == "ok":
            ok = True
    summary = "alert" if alert else "busy" if busy else "ok" if ok else "idle"
    busy.sort()
    alert.sort()
    return summary, {BUSY_ATTRIBUTE: busy, ALERT_ATTRIBUTE: alert}


def _group(vector: Vector) -> str | None:
    return tidy(vector.group) if vector.group else None


def _common(
    device: str, vector: Vector, member: Member | None, key: str, label: str
) -> dict[str, Any]:
    """Return the fields every channel of a vector shares."""
    group = _group(vector)
    writable = vector.writable
    return {
        "device_key": device,
        "channel_key": key,
        "writable": writable,
        "label": label,
        "group": group,
        "keeps_available": vector.name == CONNECTION_VECTOR or vector.setting,
        "category": _category(vector, group, writable),
        "enabled_by_default": _enabled_by_default(vector, member, group),
        "attributes": property_attributes(vector),
    }


def _category(
    vector: Vector, group: str | None, writable: bool
) -> ChannelCategory | None:
    """Driver options are configuration (diagnostic when read-only); a BLOB is always primary data."""
    if vector.name in DIAGNOSTIC_VECTORS:
        return ChannelCategory.DIAGNOSTIC
    if vector.kind is VectorKind.BLOB or vector.name == CONNECTION_VECTOR:
        return None
    if vector.name in CONFIG_VECTORS or group in CONFIG_GROUPS:
        return ChannelCategory.CONFIG if writable else ChannelCategory.DIAGNOSTIC
    return None


def _enabled_by_default(
    vector: Vector, member: Member | None, group: str | None
) -> bool:
    if group in DISABLED_GROUPS or vector.name in DISABLED_VECTORS:
        return False
    return member is None or (vector.name, member.name) not in DISABLED_MEMBERS


def _member_channel(
    device: str, vector: Vector, member: Member, overrides: UnitOverrides
) -> Channel:
    """Return the channel of one member."""
    vector_label, member_label = tidy(vector.label), tidy(member.label)
    quantity: Quantity | None = None
    if vector.kind is VectorKind.NUMBER:
        quantity = _quantity(device, vector, member, overrides)
        if quantity is not None and quantity.unit:
            # The unit shows next to the value: a label stating it would say it twice.
            vector_label, member_label = (
                without_unit(vector_label),
                without_unit(member_label),
            )
    single = len(vector.members) == 1
    label = vector_label if single else member_name(vector_label, member_label)
    common = _common(device, vector, member, member.channel_key, label)
    detail = (
        member_label
        if single and member_label and member_label.lower() not in label.lower()
        else None
    )
    name = NameCandidate(
        member.channel_key,
        label,
        common["group"],
        vector.name,
        None if single else member.name,
        detail,
    )
    value = vector.member_value(member)
    if vector.commands:
        # Earlier versions showed an exclusive vector of several commands as one select.
        replaces = (
            (join_key(vector.name),)
            if vector.exclusive and len(vector.members) > 1
            else ()
        )
        definition = ChannelDefined(
            kind=ChannelKind.ACTION, replaces=replaces, **common
        )
    else:
        match vector.kind:
            case VectorKind.NUMBER:
                definition = _number_definition(member, quantity, value, common)
            case VectorKind.SWITCH:
                definition = ChannelDefined(
                    kind=ChannelKind.BOOLEAN, value=value, **common
                )
            case VectorKind.LIGHT:
                definition = ChannelDefined(
                    kind=ChannelKind.ENUM,
                    options=LIGHT_OPTIONS,
                    translation_key=LIGHT_TRANSLATION_KEY,
                    value=value,
                    **common,
                )
            case VectorKind.BLOB:
                definition = ChannelDefined(kind=ChannelKind.BLOB, **common)
            case _:
                definition = ChannelDefined(
                    kind=ChannelKind.TEXT, value=value, **common
                )
    return Channel(definition, name)


def _quantity(
    device: str, vector: Vector, member: Member, overrides: UnitOverrides
) -> Quantity | None:
    """Return a number's unit: the user's override, else indilib's standard name, else what its label states."""
    override = overrides.get((device, vector.name, member.name)) or overrides.get(
        (device, vector.name, None)
    )
    if override is not None:
        return Quantity(override.unit or None, override.device_class or None)
    standard = standard_quantity(vector.name, member.name)
    if standard is not None:
        return standard
    _, stated = label_unit(tidy(member.label))
    if stated is None and len(vector.members) == 1:
        _, stated = label_unit(tidy(vector.label))
    return stated


def _number_definition(
    member: Member,
    quantity: Quantity | None,
    value: object,
    common: dict[str, Any],
) -> ChannelDefined:
    """Return a numeric channel: range only when min != max, step only when not 0."""
    value_range = member.value_range
    return ChannelDefined(
        kind=ChannelKind.NUMERIC,
        minimum=value_range[0] if value_range else None,
        maximum=value_range[1] if value_range else None,
        step=member.step or None,
        precision=display_precision(member.format),
        unit=quantity.unit if quantity else None,
        device_class_hint=quantity.device_class if quantity else None,
        state_class=quantity.state_class if quantity else StateClass.MEASUREMENT,
        value=value,
        **common,
    )
