"""From the vendor's translated events to channels: what each plug, sensor and the household shows.

``translate_raw_message`` (powersensor-local) owns the field semantics of a raw report; this module
turns its events into channel values in Home Assistant's units (kWh, L, %, dBm) and says, per kind
of device, which channels exist and how they add up for the Energy dashboard. A channel is defined
the first time a value for it arrives, so an uncalibrated sensor (unit ``U``) never shows a power
it does not have, and a water sensor never shows watts. No Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
import math
from typing import Any, Final

from powersensor_local.xlatemsg import translate_raw_message

from ...events import ChannelCategory, ChannelDefined, ChannelKind, StateClass, join_key

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
    """Return a finite number, None for anything else (a string, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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
    translated: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The vendor's events, kept for the household view."""


class UntranslatableReport(ValueError):
    """A report the vendor's translation refuses (a required field missing or of the wrong type)."""


def sample_of(message: Mapping[str, Any], relay_mac: str) -> Sample:
    """Translate one report (raises UntranslatableReport when it cannot be)."""
    try:
        translated: dict[str, dict[str, Any]] = translate_raw_message(
            dict(message), relay_mac
        )
    except (KeyError, TypeError, ValueError) as err:
        raise UntranslatableReport(f"{type(err).__name__}: {err}") from err
    raw_mac = message.get("mac")
    mac = raw_mac.lower() if isinstance(raw_mac, str) else ""
    role = message.get("role")
    unit = message.get("unit")
    sample = Sample(
        mac=mac,
        device=str(message.get("device")),
        role=role if isinstance(role, str) else None,
        starttime=number(message.get("starttime")),
        duration=number(message.get("duration")),
        uncalibrated=unit == UNIT_UNCALIBRATED,
        invalid=unit == UNIT_INVALID,
        translated=translated,
    )
    values = sample.values
    if (event := translated.get("average_power")) is not None:
        values[POWER] = number(event.get("watts"))
    if (event := translated.get("average_power_components")) is not None:
        values[APPARENT_CURRENT] = number(event.get("apparent_current"))
        values[ACTIVE_CURRENT] = number(event.get("active_current"))
        values[REACTIVE_CURRENT] = number(event.get("reactive_current"))
        values[VOLTAGE] = number(event.get("volts"))
    if (event := translated.get("summation_energy")) is not None:
        joules = number(event.get("summation_joules"))
        values[ENERGY] = None if joules is None else joules / JOULES_PER_KWH
        sample.resets[ENERGY] = timestamp(event.get("summation_resettime_utc"))
    if (event := translated.get("average_flow")) is not None:
        values[WATER_FLOW] = number(event.get("litres_per_minute"))
    if (event := translated.get("summation_volume")) is not None:
        values[WATER_VOLUME] = number(event.get("summation_litres"))
        sample.resets[WATER_VOLUME] = timestamp(event.get("summation_resettime_utc"))
    if (event := translated.get("battery_level")) is not None:
        volts = number(event.get("volts"))
        values[BATTERY_VOLTAGE] = volts
        values[BATTERY] = None if volts is None else battery_percent(volts)
    if (event := translated.get("radio_signal_quality")) is not None:
        values[AVERAGE_RSSI] = number(event.get("average_rssi"))
        values[LAST_RSSI] = number(event.get("last_rssi"))
    if sample.device == DeviceType.SENSOR:
        values[ROLE] = role_option(role)
    return sample


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
