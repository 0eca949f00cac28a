"""A Thing Description as channels, and a Thing's values as readings (no I/O).

Generic for any Thing: every event with an object schema becomes one sensor per numeric, integer,
boolean or string field (a field named ``timestamp``/``time``, or of format date-time, is the
reading's time instead) plus one event entity that fires with the whole payload; an event with a
scalar schema is one sensor and the event entity. Properties become sensors (read-only) or
number/switch/select/text (writable) by their type. Actions without input become buttons. The
built-ins hololinked adds to every Thing are mapped on purpose: ``state`` is a diagnostic sensor;
``exit`` (stops the Thing), ``ping`` (liveness is watched already) and ``get_thing_model`` get no
button (``instrument_hub.invoke_action`` still reaches every action).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from decimal import Decimal
import json
import math
from typing import Final

from ...events import (
    NUMBER_TYPES,
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    EventData,
    Reading,
    StateClass,
    join_key,
    split_key,
)
from ..base import InvalidValue
from .protocol import payload_time
from .td import ActionAffordance, DataSchema, PropertyAffordance, ThingDescription

BUILTIN_STATE: Final = "state"
NO_BUTTON_ACTIONS: Final = frozenset({"exit", "ping", "get_thing_model"})
"""hololinked's built-in actions: no button (``exit`` would stop the Thing at one click)."""
TIME_FIELDS: Final = frozenset({"timestamp", "time"})
TIME_FORMATS: Final = frozenset({"date-time", "time"})
RESERVED_ATTRIBUTES: Final = frozenset({"event_type", "event_types"})
"""Keys a payload cannot carry into an event entity's attributes (Home Assistant's own)."""
MAX_EVENT_ATTRIBUTES_CHARS: Final = 4096
"""Payloads larger than this (as JSON) fire with their scalar fields only (the recorder's sake)."""
SCALAR_TYPES: Final = frozenset({"number", "integer", "boolean", "string"})

# Units the TD names -> (Home Assistant's spelling, device class). Only units Home Assistant accepts
# for that device class get one; any other unit is shown as it is, without a device class.
_UNITS: Final[Mapping[str, tuple[str, str]]] = {
    **{
        unit: (unit, "energy")
        for unit in ("J", "kJ", "MJ", "GJ", "Wh", "kWh", "mWh", "MWh")
    },
    **{unit: (unit, "power") for unit in ("W", "mW", "kW", "MW", "GW")},
    **dict.fromkeys(("°C", "degC", "celsius", "Celsius", "C"), ("°C", "temperature")),
    "K": ("K", "temperature"),
    "°F": ("°F", "temperature"),
    **{unit: (unit, "voltage") for unit in ("V", "mV", "kV", "μV")},
    "uV": ("μV", "voltage"),
    **{unit: (unit, "current") for unit in ("A", "mA", "μA")},
    "uA": ("μA", "current"),
    **{unit: (unit, "frequency") for unit in ("Hz", "kHz", "MHz", "GHz", "mHz")},
    **{unit: (unit, "duration") for unit in ("s", "ms", "min", "h", "d", "μs")},
    "us": ("μs", "duration"),
    **{unit: (unit, "pressure") for unit in ("Pa", "hPa", "kPa", "bar", "mbar", "psi")},
    **{unit: (unit, "distance") for unit in ("m", "cm", "mm", "km")},
}
_NO_MEASUREMENT: Final = frozenset({"energy"})
"""Device classes Home Assistant forbids the measurement state class for (energy: totals only)."""
FINE_PRECISION: Final = 6
_FINE_CLASSES: Final = frozenset({"energy", "power", "voltage", "current"})
"""Without a precision of its own, Home Assistant shows these in whole units (0 decimals: a 1 mJ
pulse would read "0 J"); lab values are often milli or micro, so they get 6 decimals instead."""


@dataclass(frozen=True, slots=True)
class PropertyBinding:
    """A property behind a channel: how its values are read and how a write is checked."""

    affordance: PropertyAffordance
    channel_key: str
    kind: ChannelKind

    @property
    def name(self) -> str:
        """Return the property's name in the TD."""
        return self.affordance.name


@dataclass(frozen=True, slots=True)
class FieldBinding:
    """A field of an event's payload shown as a sensor (``key`` None: the payload is the value)."""

    key: str | None
    channel_key: str
    kind: ChannelKind
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventBinding:
    """An event: its event entity, the sensors of its fields, and the field that carries time."""

    name: str
    channel_key: str
    fields: tuple[FieldBinding, ...]
    time_field: str | None


@dataclass(frozen=True, slots=True)
class ThingMap:
    """Everything a TD maps to: the definitions to announce and what each channel stands for."""

    definitions: tuple[ChannelDefined, ...]
    properties: Mapping[str, PropertyBinding]
    """By channel key."""
    events: Mapping[str, EventBinding]
    """By event name."""
    actions: Mapping[str, ActionAffordance]
    """By channel key (the buttons)."""
    unmapped: tuple[str, ...] = ()

    def property_named(self, name: str) -> PropertyBinding | None:
        """Return the binding of a property by its TD name."""
        return next((b for b in self.properties.values() if b.name == name), None)


@dataclass(slots=True)
class _Builder:
    device_key: str
    definitions: list[ChannelDefined] = field(default_factory=list)
    properties: dict[str, PropertyBinding] = field(default_factory=dict)
    events: dict[str, EventBinding] = field(default_factory=dict)
    actions: dict[str, ActionAffordance] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)


def humanize(key: str) -> str:
    """Return a readable name for a key: ``pulse_count`` -> ``Pulse count``."""
    words = key.replace("_", " ").replace("-", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:] if text else key


def unit_and_class(unit: str | None) -> tuple[str | None, str | None]:
    """Return the unit as Home Assistant spells it and the device class it implies (if any)."""
    if unit is None:
        return None, None
    known = _UNITS.get(unit)
    return known if known is not None else (unit, None)


def channel_kind(schema: DataSchema) -> ChannelKind | None:
    """Return the channel kind of a value schema, None for what no entity shows (objects, arrays)."""
    match schema.type:
        case "number" | "integer":
            return ChannelKind.NUMERIC
        case "boolean":
            return ChannelKind.BOOLEAN
        case "string":
            return ChannelKind.ENUM if schema.enum else ChannelKind.TEXT
    return None


def map_thing(td: ThingDescription) -> ThingMap:
    """Return the channels of a Thing and what each one stands for."""
    builder = _Builder(td.id)
    for prop in td.properties.values():
        _map_property(builder, prop)
    field_labels: dict[str, list[int]] = {}
    for event in td.events.values():
        _map_event(builder, event.name, event.data, field_labels)
    _disambiguate(builder, field_labels)
    for action in td.actions.values():
        _map_action(builder, action)
    builder.unmapped.extend(td.skipped)
    return ThingMap(
        definitions=tuple(builder.definitions),
        properties=builder.properties,
        events=builder.events,
        actions=builder.actions,
        unmapped=tuple(builder.unmapped),
    )


def value_definition(
    device_key: str,
    channel_key: str,
    kind: ChannelKind,
    schema: DataSchema,
    *,
    writable: bool,
    label: str | None,
    translation_key: str | None = None,
    category: ChannelCategory | None = None,
) -> ChannelDefined:
    """Return the definition of a value channel; numbers get unit, device class, range and step."""
    if kind is not ChannelKind.NUMERIC:
        return ChannelDefined(
            device_key,
            channel_key,
            kind,
            writable=writable,
            label=label,
            options=schema.enum,
            translation_key=translation_key,
            category=category,
        )
    unit, device_class = unit_and_class(schema.unit)
    integer = schema.type == "integer"
    step = schema.multiple_of or (1.0 if integer else _float_step(schema))
    if schema.multiple_of:
        precision: int | None = max(0, -_exponent(schema.multiple_of))
    elif integer:
        precision = 0
    else:
        precision = FINE_PRECISION if device_class in _FINE_CLASSES else None
    return ChannelDefined(
        device_key,
        channel_key,
        kind,
        writable=writable,
        label=label,
        unit=unit,
        device_class_hint=device_class,
        minimum=schema.minimum,
        maximum=schema.maximum,
        step=step if writable else None,
        precision=precision,
        translation_key=translation_key,
        category=category,
        state_class=None if device_class in _NO_MEASUREMENT else StateClass.MEASUREMENT,
    )


UNBOUNDED_FLOAT_STEP: Final = 0.001
_STEPS_PER_RANGE: Final = 1000


def _float_step(schema: DataSchema) -> float:
    """Return a step for a number the TD gives no ``multipleOf``: about a thousandth of its range.

    A power of ten, at most 1 (Home Assistant's default of 1 would make 0.3 s unreachable for a
    0.01..10 s setting); 0.001 without both bounds.
    """
    low, high = schema.minimum, schema.maximum
    if low is None or high is None or high <= low:
        return UNBOUNDED_FLOAT_STEP
    return min(1.0, 10.0 ** math.floor(math.log10((high - low) / _STEPS_PER_RANGE)))


def _exponent(number: float) -> int:
    """Return the decimal exponent of a number's last digit: 0.25 -> -2, 5 -> 0."""
    exponent = Decimal(repr(number)).normalize().as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def _map_property(builder: _Builder, prop: PropertyAffordance) -> None:
    schema = prop.schema
    kind = channel_kind(schema)
    if kind is None:
        builder.unmapped.append(f"property {prop.name} ({schema.type or 'mixed'})")
        return
    builtin = prop.name == BUILTIN_STATE
    writable = prop.write is not None and not builtin
    key = join_key("property", prop.name)
    builder.definitions.append(
        value_definition(
            builder.device_key,
            key,
            kind,
            schema,
            writable=writable,
            label=None if builtin else schema.title or humanize(prop.name),
            translation_key="thing_state" if builtin else None,
            category=ChannelCategory.DIAGNOSTIC if builtin else None,
        )
    )
    builder.properties[key] = PropertyBinding(prop, key, kind)


def is_time_field(key: str, schema: DataSchema) -> bool:
    """Tell whether a payload field carries the reading's time rather than a value."""
    if schema.type not in (None, "number", "integer", "string"):
        return False
    return key.lower() in TIME_FIELDS or schema.format in TIME_FORMATS


def _map_event(
    builder: _Builder,
    name: str,
    data: DataSchema | None,
    field_labels: dict[str, list[int]],
) -> None:
    event_label = humanize(name)
    fields: list[FieldBinding] = []
    time_field: str | None = None
    if data is not None and data.type == "object":
        for key, schema in data.properties.items():
            if time_field is None and is_time_field(key, schema):
                time_field = key
                continue
            kind = channel_kind(schema)
            if kind is None:
                builder.unmapped.append(
                    f"event {name} field {key} ({schema.type or 'mixed'})"
                )
                continue
            channel_key = join_key("event", name, key)
            label = schema.title or humanize(key)
            field_labels.setdefault(label.casefold(), []).append(
                len(builder.definitions)
            )
            fields.append(FieldBinding(key, channel_key, kind, schema.enum))
            builder.definitions.append(
                value_definition(
                    builder.device_key,
                    channel_key,
                    kind,
                    schema,
                    writable=False,
                    label=label,
                )
            )
    elif data is not None and (kind := channel_kind(data)) is not None:
        channel_key = join_key("event", name, "value")
        label = data.title or event_label.removesuffix(" event") or event_label
        field_labels.setdefault(label.casefold(), []).append(len(builder.definitions))
        fields.append(FieldBinding(None, channel_key, kind, data.enum))
        builder.definitions.append(
            value_definition(
                builder.device_key, channel_key, kind, data, writable=False, label=label
            )
        )
    event_key = join_key("event", name)
    builder.definitions.append(
        ChannelDefined(
            builder.device_key,
            event_key,
            ChannelKind.EVENT,
            writable=False,
            label=event_label,
            options=(name,),
        )
    )
    builder.events[name] = EventBinding(name, event_key, tuple(fields), time_field)


def _disambiguate(builder: _Builder, field_labels: dict[str, list[int]]) -> None:
    """Prefix the event's name to field labels that two events share (``value`` and ``value``)."""
    for indexes in field_labels.values():
        if len(indexes) < 2:
            continue
        for index in indexes:
            definition = builder.definitions[index]
            event_label = humanize(split_key(definition.channel_key)[1]).removesuffix(
                " event"
            )
            builder.definitions[index] = replace(
                definition, label=f"{event_label} {definition.label}"
            )


def _map_action(builder: _Builder, action: ActionAffordance) -> None:
    if action.name in NO_BUTTON_ACTIONS:
        return
    if action.input is not None and (
        action.input.type != "object" or action.input.properties
    ):
        return  # needs input: instrument_hub.invoke_action only
    key = join_key("action", action.name)
    builder.definitions.append(
        ChannelDefined(
            builder.device_key,
            key,
            ChannelKind.ACTION,
            writable=True,
            label=action.title or humanize(action.name),
        )
    )
    builder.actions[key] = action


# --------------------------------------------------------------------------------------------------
# Values


def channel_value(
    kind: ChannelKind, value: object, options: tuple[str, ...] = ()
) -> object:
    """Return a Thing's value as the channel shows it; None (unknown) for what does not fit.

    ``null`` (the Thing's NaN) and values of the wrong type are unknown, never 0 or "False".
    """
    match kind:
        case ChannelKind.NUMERIC:
            if isinstance(value, bool) or not isinstance(value, NUMBER_TYPES):
                return None
            return value if math.isfinite(value) else None
        case ChannelKind.BOOLEAN:
            return value if isinstance(value, bool) else None
        case ChannelKind.ENUM:
            return value if isinstance(value, str) and value in options else None
        case ChannelKind.TEXT:
            if value is None:
                return None
            return value if isinstance(value, str) else _compact(value)
    return None


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def property_reading(
    device_key: str, binding: PropertyBinding, value: object, at: datetime | None = None
) -> Reading:
    """Return the reading of a property's new value."""
    return Reading(
        device_key,
        binding.channel_key,
        channel_value(binding.kind, value, binding.affordance.schema.enum),
        at,
    )


def event_readings(
    device_key: str,
    binding: EventBinding,
    payload: object,
    *,
    arrival: datetime,
    local: tzinfo,
    size: int,
) -> list[Reading]:
    """Return the readings one pushed event makes: its fields' sensors, then its event entity."""
    timestamp = arrival
    if binding.time_field is not None and isinstance(payload, dict):
        timestamp = (
            payload_time(payload.get(binding.time_field), arrival, local) or arrival
        )
    readings: list[Reading] = []
    for field_binding in binding.fields:
        if field_binding.key is None:
            value = payload
        elif isinstance(payload, dict):
            if field_binding.key not in payload:
                continue  # a field the Thing left out keeps its last value
            value = payload[field_binding.key]
        else:
            continue
        readings.append(
            Reading(
                device_key,
                field_binding.channel_key,
                channel_value(field_binding.kind, value, field_binding.options),
                timestamp,
            )
        )
    readings.append(
        Reading(
            device_key,
            binding.channel_key,
            EventData(binding.name, event_attributes(payload, size)),
            timestamp,
        )
    )
    return readings


def event_attributes(payload: object, size: int) -> dict[str, object]:
    """Return what an event entity fires with: the payload's fields (or ``value``)."""
    if not isinstance(payload, dict):
        if size > MAX_EVENT_ATTRIBUTES_CHARS and not isinstance(
            payload, bool | int | float
        ):
            return {"value": None, "truncated": True}
        return {"value": payload}
    attributes = {
        key: value for key, value in payload.items() if key not in RESERVED_ATTRIBUTES
    }
    if size > MAX_EVENT_ATTRIBUTES_CHARS:
        attributes = {
            key: value
            for key, value in attributes.items()
            if value is None
            or isinstance(value, bool | int | float)
            or (isinstance(value, str) and len(value) <= 255)
        }
        attributes["truncated"] = True
    return attributes


def write_value(binding: PropertyBinding, value: object) -> object:
    """Return the JSON value a write sends; InvalidValue for a value the property cannot take."""
    schema = binding.affordance.schema
    match binding.kind:
        case ChannelKind.NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidValue(f"{binding.name} takes a number", value=str(value))
            if not math.isfinite(value):
                raise InvalidValue(
                    f"{binding.name} takes a finite number", value=str(value)
                )
            if schema.type == "integer":
                if value != int(value):
                    raise InvalidValue(
                        f"{binding.name} takes a whole number", value=str(value)
                    )
                return int(value)
            return value
        case ChannelKind.BOOLEAN:
            if not isinstance(value, bool):
                raise InvalidValue(f"{binding.name} takes on or off", value=str(value))
            return value
        case ChannelKind.ENUM:
            if value not in schema.enum:
                raise InvalidValue(
                    f"{binding.name} takes one of {', '.join(schema.enum)}",
                    value=str(value),
                )
            return value
        case _:
            if not isinstance(value, str):
                raise InvalidValue(f"{binding.name} takes a text", value=str(value))
            return value
