"""From a plug's raw reports to channels: what each plug, sensor and the household shows.

The field semantics of a raw report are the vendor's (powersensor-local 2.4.0,
``xlatemsg.translate_raw_message``): which fields a report needs, which events it gives, how each
value is rounded. :func:`sample_of` applies them directly, field by field, instead of calling the
vendor's function and reading its events back: that function builds a dictionary per event through
generic per-field helpers and cost 80 % of parsing a report. Its results are the same, which
tests/sources/test_powersensor_translation.py shows for every message type and for generated
messages against the vendor's function itself. This module then turns the values into Home
Assistant's units (kWh, L, %, dBm) and says, per kind of device, which channels exist and how they
add up for the Energy dashboard. A channel is defined the first time a value for it arrives, so an
uncalibrated sensor (unit ``U``) never shows a power it does not have, and a water sensor never
shows watts. No Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
import functools
import math
from typing import Any, Final, NoReturn

from ...events import (
    NUMBER_TYPES,
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    StateClass,
    join_key,
)

JOULES_PER_KWH: Final = 3_600_000.0
BATTERY_EMPTY_VOLTS: Final = 3.3
BATTERY_FULL_VOLTS: Final = 4.15
"""The vendor's suggestion for a percentage: linear across the middle of the curve, clamped."""


class DeviceType(StrEnum):
    """What a device of the household is."""

    PLUG = "plug"
    SENSOR = "sensor"
    HOUSEHOLD = "household"


ROLE_HOUSE_NET: Final = "house-net"
ROLE_SOLAR: Final = "solar"
ROLE_WATER: Final = "water"
ROLE_APPLIANCE: Final = "appliance"
ROLES: Final = {
    ROLE_HOUSE_NET: "house_net",
    ROLE_SOLAR: "solar",
    ROLE_WATER: "water",
    ROLE_APPLIANCE: "appliance",
}
"""The roles the plugs report, by their wire name, to the option names of the role sensor."""
UNKNOWN_ROLE: Final = "unknown"
ROLE_OPTIONS: Final = (*ROLES.values(), UNKNOWN_ROLE)
ROLE_MODELS: Final = {
    "house_net": "Sensor (house mains)",
    "solar": "Sensor (solar)",
    "water": "Sensor (water)",
    "appliance": "Sensor (appliance)",
    UNKNOWN_ROLE: "Sensor (role unknown)",
}
ROLE_NAMES: Final = {
    "house_net": "mains",
    "solar": "solar",
    "water": "water",
    "appliance": "appliance",
    UNKNOWN_ROLE: "",
}
PLUG_MODEL: Final = "Plug"
HOUSEHOLD_MODEL: Final = "Household view"
MANUFACTURER: Final = "Powersensor"

UNIT_UNCALIBRATED: Final = "U"
UNIT_INVALID: Final = "I"


def role_option(raw: object) -> str:
    """Return the role sensor's option for a wire role ("house-net" -> "house_net")."""
    return ROLES.get(raw, UNKNOWN_ROLE) if isinstance(raw, str) else UNKNOWN_ROLE


def plug_name(mac: str) -> str:
    """Return a plug's device name: the last six digits of its MAC tell plugs apart."""
    return f"Powersensor plug {mac[-6:]}"


def sensor_name(mac: str, role: str) -> str:
    """Return a sensor's device name, with its role ("Powersensor solar sensor d28900")."""
    label = ROLE_NAMES.get(role, "")
    return f"Powersensor {label + ' ' if label else ''}sensor {mac[-6:]}"


# --------------------------------------------------------------------------------------------------
# Channels


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel a kind of device can have."""

    key: str
    unit: str | None = None
    device_class: str | None = None
    state_class: StateClass | None = StateClass.MEASUREMENT
    precision: int | None = None
    category: ChannelCategory | None = None
    enabled_by_default: bool = True
    kind: ChannelKind = ChannelKind.NUMERIC
    options: tuple[str, ...] = ()
    resets: bool = False
    """A meter that resets (TOTAL with ``last_reset`` from the device's reset time)."""

    @property
    def channel_key(self) -> str:
        """Return the channel key (the key is a plain name: it is its own key part)."""
        return self.key

    def definition(
        self, device_key: str, last_reset: datetime | None = None
    ) -> ChannelDefined:
        """Return the channel's definition for one device."""
        return ChannelDefined(
            device_key,
            self.channel_key,
            self.kind,
            writable=False,
            label=None,
            unit=self.unit,
            device_class_hint=self.device_class,
            precision=self.precision,
            options=self.options,
            translation_key=self.key,
            category=self.category,
            enabled_by_default=self.enabled_by_default,
            state_class=self.state_class if self.kind is ChannelKind.NUMERIC else None,
            last_reset=last_reset if self.resets else None,
        )


POWER: Final = "power"
VOLTAGE: Final = "voltage"
APPARENT_CURRENT: Final = "apparent_current"
ACTIVE_CURRENT: Final = "active_current"
REACTIVE_CURRENT: Final = "reactive_current"
ENERGY: Final = "energy"
WATER_FLOW: Final = "water_flow"
WATER_VOLUME: Final = "water_volume"
BATTERY: Final = "battery_level"
BATTERY_VOLTAGE: Final = "battery_voltage"
AVERAGE_RSSI: Final = "average_rssi"
LAST_RSSI: Final = "last_rssi"
ROLE: Final = "sensor_role"

_POWER = ChannelSpec(POWER, "W", "power", precision=0)


def _current(key: str) -> ChannelSpec:
    """Return a plug's current channel (noisy: disabled by default)."""
    return ChannelSpec(key, "A", "current", precision=3, enabled_by_default=False)


PLUG_CHANNELS: Final[Mapping[str, ChannelSpec]] = {
    spec.key: spec
    for spec in (
        _POWER,
        ChannelSpec(VOLTAGE, "V", "voltage", precision=1, enabled_by_default=False),
        _current(APPARENT_CURRENT),
        _current(ACTIVE_CURRENT),
        _current(REACTIVE_CURRENT),
        # A plug meters one direction only and counts up from its last restart.
        ChannelSpec(ENERGY, "kWh", "energy", StateClass.TOTAL_INCREASING, precision=3),
    )
}
SENSOR_CHANNELS: Final[Mapping[str, ChannelSpec]] = {
    spec.key: spec
    for spec in (
        _POWER,
        # A net meter (house mains, solar) goes down while exporting: TOTAL, reset at its reset time.
        ChannelSpec(
            ENERGY, "kWh", "energy", StateClass.TOTAL, precision=3, resets=True
        ),
        ChannelSpec(WATER_FLOW, "L/min", "volume_flow_rate", precision=1),
        ChannelSpec(
            WATER_VOLUME, "L", "water", StateClass.TOTAL, precision=1, resets=True
        ),
        ChannelSpec(BATTERY, "%", "battery", precision=0),
        ChannelSpec(
            BATTERY_VOLTAGE,
            "V",
            "voltage",
            precision=2,
            category=ChannelCategory.DIAGNOSTIC,
        ),
        ChannelSpec(
            AVERAGE_RSSI,
            "dBm",
            "signal_strength",
            precision=0,
            category=ChannelCategory.DIAGNOSTIC,
            enabled_by_default=False,
        ),
        ChannelSpec(
            LAST_RSSI,
            "dBm",
            "signal_strength",
            precision=0,
            category=ChannelCategory.DIAGNOSTIC,
            enabled_by_default=False,
        ),
        ChannelSpec(
            ROLE,
            device_class="enum",
            state_class=None,
            category=ChannelCategory.DIAGNOSTIC,
            kind=ChannelKind.ENUM,
            options=ROLE_OPTIONS,
        ),
    )
}

GRID_IMPORT_POWER: Final = "grid_import_power"
GRID_EXPORT_POWER: Final = "grid_export_power"
SOLAR_POWER: Final = "solar_generation_power"
HOME_POWER: Final = "home_consumption_power"
GRID_IMPORT_ENERGY: Final = "grid_import_energy"
GRID_EXPORT_ENERGY: Final = "grid_export_energy"
SOLAR_ENERGY: Final = "solar_generation_energy"
HOME_ENERGY: Final = "home_consumption_energy"

HOUSEHOLD_EVENTS: Final[Mapping[str, str]] = {
    "from_grid": GRID_IMPORT_POWER,
    "to_grid": GRID_EXPORT_POWER,
    "solar_generation": SOLAR_POWER,
    "home_usage": HOME_POWER,
    "from_grid_summation": GRID_IMPORT_ENERGY,
    "to_grid_summation": GRID_EXPORT_ENERGY,
    "solar_generation_summation": SOLAR_ENERGY,
    "home_usage_summation": HOME_ENERGY,
}
"""The library's VirtualHousehold events, by the household channel each one feeds."""
HOUSEHOLD_CHANNELS: Final[Mapping[str, ChannelSpec]] = {
    spec.key: spec
    for spec in (
        *(
            ChannelSpec(key, "W", "power", precision=0)
            for key in (GRID_IMPORT_POWER, GRID_EXPORT_POWER, SOLAR_POWER, HOME_POWER)
        ),
        # Gross, never negative, counted from 0 by the household view (which restarts at 0 after a
        # meter reset or a restart: a new cycle for total_increasing, so statistics stay right).
        *(
            ChannelSpec(key, "kWh", "energy", StateClass.TOTAL_INCREASING, precision=3)
            for key in (
                GRID_IMPORT_ENERGY,
                GRID_EXPORT_ENERGY,
                SOLAR_ENERGY,
                HOME_ENERGY,
            )
        ),
    )
}

assert all(
    join_key(spec.key) == spec.key
    for specs in (PLUG_CHANNELS, SENSOR_CHANNELS, HOUSEHOLD_CHANNELS)
    for spec in specs.values()
), "channel names are their own keys (no escaping needed)"

CHANNELS: Final[Mapping[DeviceType, Mapping[str, ChannelSpec]]] = {
    DeviceType.PLUG: PLUG_CHANNELS,
    DeviceType.SENSOR: SENSOR_CHANNELS,
    DeviceType.HOUSEHOLD: HOUSEHOLD_CHANNELS,
}
RESETTING: Final[Mapping[DeviceType, frozenset[str]]] = {
    device_type: frozenset(key for key, spec in specs.items() if spec.resets)
    for device_type, specs in CHANNELS.items()
}
"""Per kind of device, the channels whose definition follows their meter's reset time."""

# The hub device's discrete happenings (event entities on the entry's own device)
DEVICE_FOUND: Final = "device_found"
DEVICE_LOST: Final = "device_lost"


def event_definition(device_key: str, key: str) -> ChannelDefined:
    """Return the definition of the entry device's found/lost event channel."""
    return ChannelDefined(
        device_key,
        join_key(key),
        ChannelKind.EVENT,
        writable=False,
        label=None,
        options=(key,),
        translation_key=key,
    )


# --------------------------------------------------------------------------------------------------
# Values


def number(value: object) -> float | None:
    """Return a finite number, None for anything else (a string, a bool, NaN, an int beyond float)."""
    if isinstance(value, float):  # the common case first
        return value if math.isfinite(value) else None
    kind = type(value)
    if kind is not int and (
        isinstance(value, bool) or not isinstance(value, NUMBER_TYPES)
    ):
        return None
    try:
        result = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def battery_percent(volts: float) -> float:
    """Return the battery level the vendor suggests: 3.3 V -> 0 %, 4.15 V -> 100 %, clamped."""
    span = BATTERY_FULL_VOLTS - BATTERY_EMPTY_VOLTS
    percent = (volts - BATTERY_EMPTY_VOLTS) / span * 100.0
    return round(min(100.0, max(0.0, percent)), 1)


def timestamp(value: object) -> datetime | None:
    """Return an epoch time (s, UTC) as a datetime, None if it is not one."""
    seconds = number(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(slots=True)
class Sample:
    """What one report says about its device, in channel terms."""

    mac: str
    device: str
    role: str | None
    starttime: float | None
    duration: float | None
    values: dict[str, float | str | None] = field(default_factory=dict)
    resets: dict[str, datetime | None] = field(default_factory=dict)
    """The reset time of each resetting meter in ``values``."""
    uncalibrated: bool = False
    invalid: bool = False
    household: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The vendor's ``average_power`` and ``summation_energy`` events of a house mains or solar
    report, as its ``translate_raw_message`` words them: the household view's input."""


class UntranslatableReport(ValueError):
    """A report the vendor's translation refuses (a required field missing or of the wrong type)."""


HOUSEHOLD_ROLES: Final = frozenset({ROLE_HOUSE_NET, ROLE_SOLAR})
"""The roles whose power and energy feed the household view."""


def _refuse(message: Mapping[str, Any], keys: tuple[str, ...]) -> NoReturn:
    """Refuse a report lacking one of ``keys`` (absent and null alike, as the vendor's ``get``)."""
    missing = next(key for key in keys if message.get(key) is None)
    raise UntranslatableReport(f"KeyError: \"Expected key '{missing}' not found\"")


def _reset_time(summation_start: Any) -> datetime | None:
    """Return a meter's reset time (epoch s, rounded as the vendor does) as a datetime."""
    if type(summation_start) is float or type(summation_start) is int:
        return _cached_reset_time(summation_start)
    return timestamp(summation_start)  # not a number: None


@functools.lru_cache(maxsize=64, typed=True)
def _cached_reset_time(summation_start: float) -> datetime | None:
    """Return a numeric reset time, remembered (it stays the same for months)."""
    return timestamp(_rounded(summation_start, 0))


def _rounded(value: Any, digits: int) -> Any:
    """Round as the vendor does: floats only, any other value passes unchanged."""
    return round(value, digits) if type(value) is float else value


def _value(value: Any, digits: int) -> float | None:
    """Return a field's channel value: the vendor's rounding, then a finite number or None."""
    if type(value) is float:
        rounded: float = round(value, digits)
        return rounded if math.isfinite(rounded) else None
    return number(value)


_IDENTITY: Final = ("mac", "starttime")
_POWER_FIELDS: Final = ("mac", "starttime", "power", "duration")
_COMPONENTS: Final = (
    ("current", APPARENT_CURRENT),
    ("active_current", ACTIVE_CURRENT),
    ("reactive_current", REACTIVE_CURRENT),
    ("voltage", VOLTAGE),
)
_COMPONENT_FIELDS: Final = tuple(field for field, _key in _COMPONENTS)
_RADIO_FIELDS: Final = ("mac", "starttime", "duration", "rssi", "raw_rssi")


def sample_of(
    message: Mapping[str, Any], relay_mac: str, skip: Container[str] = ()
) -> Sample:
    """Translate one report (raises UntranslatableReport when the vendor's translation would raise).

    The vendor's rules, in its order: ``type`` and ``device`` must be there; an ``instant_power``
    report in W needs mac, starttime, power and duration (its summation is skipped without
    ``summation_start``; a plug's also needs current, active_current, reactive_current, voltage); in
    L its flow needs average_flow and duration and its volume summation_volume and summation_start,
    either skipped (the volume after the flow) when a field is missing; in U it needs power and
    duration. Every sensor report also needs batteryMicrovolt (as a number), rssi, raw_rssi and
    duration. Rounding: W and J to 0 digits, A, V, L and L/min to 3, the average RSSI to 1, the last
    to 0, the battery to 6 (V), floats only.

    ``skip`` names channels nobody shows (their entities are disabled): their fields are checked as
    the vendor checks them, but their values are left None instead of being computed.
    """
    if "type" not in message or "device" not in message:
        missing = "type" if "type" not in message else "device"
        raise UntranslatableReport(f"KeyError: '{missing}'")
    get = message.get
    device = message["device"]
    raw_mac = get("mac")
    role = get("role")
    unit = get("unit")
    sample = Sample(
        raw_mac.lower() if isinstance(raw_mac, str) else "",
        str(device),
        role if isinstance(role, str) else None,
        number(get("starttime")),
        number(get("duration")),
        {},
        {},
        unit == UNIT_UNCALIBRATED,
        unit == UNIT_INVALID,
        {},
    )
    sensor = device == DeviceType.SENSOR
    if message["type"] == "instant_power":
        if unit in ("W", "w"):
            _power_values(message, sample, device == DeviceType.PLUG, relay_mac, skip)
        elif unit in ("L", "l"):
            _water_values(message, sample)
        elif unit == UNIT_UNCALIBRATED:
            if None in (get("mac"), get("starttime"), get("power"), get("duration")):
                _refuse(message, _POWER_FIELDS)
        if sensor:
            _sensor_values(message, sample, skip)
    if sensor:
        sample.values[ROLE] = role_option(role)
    return sample


def _sensor_values(
    message: Mapping[str, Any], sample: Sample, skip: Container[str]
) -> None:
    """Add a sensor's battery and radio link (in every instant_power report of a sensor)."""
    get = message.get
    if get("mac") is None or get("starttime") is None:
        _refuse(message, _IDENTITY)
    microvolts = get("batteryMicrovolt")
    if microvolts is None:
        _refuse(message, ("batteryMicrovolt",))
    try:
        volts = round(float(microvolts) / 1000000.0, 6)
    except (TypeError, ValueError, OverflowError) as err:
        raise UntranslatableReport(f"{type(err).__name__}: {err}") from err
    rssi = get("rssi")
    raw_rssi = get("raw_rssi")
    if get("duration") is None or rssi is None or raw_rssi is None:
        _refuse(message, _RADIO_FIELDS)
    battery = number(volts)
    values = sample.values
    values[BATTERY_VOLTAGE] = battery
    values[BATTERY] = None if battery is None else battery_percent(battery)
    values[AVERAGE_RSSI] = None if AVERAGE_RSSI in skip else _value(rssi, 1)
    values[LAST_RSSI] = None if LAST_RSSI in skip else _value(raw_rssi, 0)


def _power_values(
    message: Mapping[str, Any],
    sample: Sample,
    plug: bool,
    relay_mac: str,
    skip: Container[str],
) -> None:
    """Power, energy and (for a plug) the components of a report in W."""
    get = message.get
    mac = get("mac")
    starttime = get("starttime")
    power = get("power")
    duration = get("duration")
    if mac is None or starttime is None or power is None or duration is None:
        _refuse(message, _POWER_FIELDS)
    values = sample.values
    values[POWER] = _value(power, 0)
    summation = get("summation")
    summation_start = get("summation_start")
    if plug:
        components = [get(field) for field in _COMPONENT_FIELDS]
        if None in components:
            _refuse(message, _COMPONENT_FIELDS)
        for (_field, key), raw in zip(_COMPONENTS, components, strict=True):
            values[key] = None if key in skip else _value(raw, 3)
    has_summation = summation is not None and summation_start is not None
    if has_summation:
        joules = _value(summation, 0)
        values[ENERGY] = None if joules is None else joules / JOULES_PER_KWH
        sample.resets[ENERGY] = _reset_time(summation_start)
    if not plug and sample.role in HOUSEHOLD_ROLES:
        # The vendor's events as its household view takes them (a sensor's carry its relay).
        starttime_utc = _rounded(starttime, 3)
        household = sample.household
        household["average_power"] = {
            "mac": mac,
            "role": sample.role,
            "starttime_utc": starttime_utc,
            "watts": _rounded(power, 0),
            "duration_s": _rounded(duration, 3),
            "via": relay_mac,
        }
        if has_summation:
            household["summation_energy"] = {
                "mac": mac,
                "role": sample.role,
                "starttime_utc": starttime_utc,
                "summation_joules": _rounded(summation, 0),
                "summation_resettime_utc": _rounded(summation_start, 0),
                "via": relay_mac,
            }


def _water_values(message: Mapping[str, Any], sample: Sample) -> None:
    """Flow and volume of a report in L (new firmware only: the vendor skips the old fields)."""
    get = message.get
    if get("mac") is None or get("starttime") is None:
        return
    flow = get("average_flow")
    if flow is None or get("duration") is None:
        return
    sample.values[WATER_FLOW] = _value(flow, 3)
    volume = get("summation_volume")
    summation_start = get("summation_start")
    if volume is None or summation_start is None:
        return
    sample.values[WATER_VOLUME] = _value(volume, 3)
    sample.resets[WATER_VOLUME] = _reset_time(summation_start)


MEASURED: Final = (POWER, WATER_FLOW)
"""What an uncalibrated or invalid sample leaves unknown (the meters keep their last value)."""


def household_reading(
    event_name: str, payload: Mapping[str, Any]
) -> tuple[str, float | None] | None:
    """Return the household channel and value of a VirtualHousehold event (None if not one)."""
    key = HOUSEHOLD_EVENTS.get(event_name)
    if key is None:
        return None
    if "summation_joules" in payload:
        joules = number(payload.get("summation_joules"))
        return key, None if joules is None else max(0.0, joules) / JOULES_PER_KWH
    watts = number(payload.get("watts"))
    return key, None if watts is None else max(0.0, watts)
