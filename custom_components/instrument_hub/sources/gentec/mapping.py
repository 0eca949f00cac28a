"""What a Gentec-EO meter becomes: one device and its fixed channels (keys, kinds, units)."""

from __future__ import annotations

from typing import Final

from ...events import (
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    DeviceFound,
    StateClass,
)
from .protocol import (
    MODE_DBM,
    MODE_NAMES,
    MODE_POWER,
    MODE_UNITS,
    TRIGGER_MAX,
    TRIGGER_MIN,
    DetectorStatus,
    Version,
    range_label,
)

METER: Final = "meter"
"""The device key of the meter (one meter per port)."""

READING: Final = "reading"
MINIMUM: Final = "minimum"
MAXIMUM: Final = "maximum"
AVERAGE: Final = "average"
PULSE_COUNT: Final = "pulse_count"
PULSE: Final = "pulse"
STATISTICS: Final = "statistics"
RESET_STATISTICS: Final = "reset_statistics"
MEASUREMENT_GAP: Final = "measurement_gap"
WAVELENGTH: Final = "wavelength"
TRIGGER_LEVEL: Final = "trigger_level"
RANGE: Final = "range"
FIRMWARE: Final = "firmware"
DETECTOR: Final = "detector"
MODE: Final = "mode"

PULSE_EVENT: Final = "pulse"
RANGE_AUTO: Final = "auto"
MANUFACTURER: Final = "Gentec-EO"
GAP_MIN: Final = 0.01
GAP_MAX: Final = 1.0
DEFAULT_MIN_WAVELENGTH: Final = 190
DEFAULT_MAX_WAVELENGTH: Final = 25000

STATISTIC_CHANNELS: Final = (MINIMUM, MAXIMUM, AVERAGE)


def meter_device(version: Version, status: DetectorStatus) -> DeviceFound:
    """Return the meter's device: model and firmware from ``*VER``, the head's serial from ``*STS``."""
    model = version.model or "Gentec-EO meter"
    return DeviceFound(
        METER,
        name=f"{MANUFACTURER} {model}",
        manufacturer=MANUFACTURER,
        model=model if not status.name else f"{model} with {status.name}",
        sw_version=version.firmware or None,
        serial_number=status.serial,
        hardware_id=f"gentec-{status.serial}" if status.serial else None,
    )


def unit_for(mode: int) -> str | None:
    """Return the unit of the reading in a display mode (None: no detector / unknown mode)."""
    return MODE_UNITS.get(mode)


def reading_channel(mode: int, value: float | None = None) -> ChannelDefined:
    """Return the reading: power (W), energy (J) or dBm by the meter's mode."""
    device_class = {MODE_POWER: "power", MODE_DBM: "signal_strength"}.get(mode)
    return ChannelDefined(
        METER,
        READING,
        ChannelKind.NUMERIC,
        writable=False,
        label=None,
        translation_key=READING,
        unit=unit_for(mode),
        device_class_hint=device_class,
        value=value,
    )


def statistic_channels(mode: int) -> list[ChannelDefined]:
    """Return min, max, average (in the reading's unit) and the pulse count."""
    channels = [
        ChannelDefined(
            METER,
            key,
            ChannelKind.NUMERIC,
            writable=False,
            label=None,
            translation_key=key,
            unit=unit_for(mode),
            device_class_hint={MODE_POWER: "power"}.get(mode),
        )
        for key in STATISTIC_CHANNELS
    ]
    channels.append(
        ChannelDefined(
            METER,
            PULSE_COUNT,
            ChannelKind.NUMERIC,
            writable=False,
            label=None,
            translation_key=PULSE_COUNT,
            precision=0,
            state_class=StateClass.TOTAL_INCREASING,
            value=0,
        )
    )
    return channels


def pulse_channel() -> ChannelDefined:
    """Return the event fired per pulse (or per paced write at high rates)."""
    return ChannelDefined(
        METER,
        PULSE,
        ChannelKind.EVENT,
        writable=False,
        label=None,
        translation_key=PULSE,
        options=(PULSE_EVENT,),
    )


def control_channels(
    *,
    statistics_on: bool,
    gap: float | None,
    status: DetectorStatus,
    wavelength: int | None,
    trigger_level: float | None,
) -> list[ChannelDefined]:
    """Return the switch, button and numbers; the gap only when polling (streams have none)."""
    channels = [
        ChannelDefined(
            METER,
            STATISTICS,
            ChannelKind.BOOLEAN,
            writable=True,
            label=None,
            translation_key=STATISTICS,
            category=ChannelCategory.CONFIG,
            value=statistics_on,
        ),
        ChannelDefined(
            METER,
            RESET_STATISTICS,
            ChannelKind.ACTION,
            writable=True,
            label=None,
            translation_key=RESET_STATISTICS,
            device_class_hint="restart",
            category=ChannelCategory.CONFIG,
        ),
        ChannelDefined(
            METER,
            WAVELENGTH,
            ChannelKind.NUMERIC,
            writable=True,
            label=None,
            translation_key=WAVELENGTH,
            unit="nm",
            minimum=float(status.min_wavelength or DEFAULT_MIN_WAVELENGTH),
            maximum=float(status.max_wavelength or DEFAULT_MAX_WAVELENGTH),
            step=1,
            precision=0,
            category=ChannelCategory.CONFIG,
            value=wavelength,
        ),
        ChannelDefined(
            METER,
            TRIGGER_LEVEL,
            ChannelKind.NUMERIC,
            writable=True,
            label=None,
            translation_key=TRIGGER_LEVEL,
            unit="%",
            minimum=TRIGGER_MIN,
            maximum=TRIGGER_MAX,
            step=0.1,
            precision=1,
            category=ChannelCategory.CONFIG,
            value=trigger_level,
        ),
    ]
    if gap is not None:
        channels.append(
            ChannelDefined(
                METER,
                MEASUREMENT_GAP,
                ChannelKind.NUMERIC,
                writable=True,
                label=None,
                translation_key=MEASUREMENT_GAP,
                unit="s",
                device_class_hint="duration",
                minimum=GAP_MIN,
                maximum=GAP_MAX,
                step=0.01,
                precision=2,
                category=ChannelCategory.CONFIG,
                value=gap,
            )
        )
    return channels


def range_options(valid: tuple[int, ...], mode: int) -> tuple[str, ...]:
    """Return the range select's options: ``auto`` and the head's ranges (``*DVS``)."""
    unit = unit_for(mode) or "W"
    return (RANGE_AUTO, *(range_label(index, unit) for index in valid))


def range_channel(
    valid: tuple[int, ...], mode: int, value: str | None
) -> ChannelDefined:
    """Return the range select."""
    return ChannelDefined(
        METER,
        RANGE,
        ChannelKind.ENUM,
        writable=True,
        label=None,
        translation_key=RANGE,
        options=range_options(valid, mode),
        category=ChannelCategory.CONFIG,
        value=value,
    )


def diagnostic_channels(
    version: Version, status: DetectorStatus, mode: int
) -> list[ChannelDefined]:
    """Return firmware, detector and mode."""
    return [
        ChannelDefined(
            METER,
            FIRMWARE,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key=FIRMWARE,
            category=ChannelCategory.DIAGNOSTIC,
            value=version.firmware or None,
        ),
        ChannelDefined(
            METER,
            DETECTOR,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key=DETECTOR,
            category=ChannelCategory.DIAGNOSTIC,
            value=status.name,
        ),
        mode_channel(mode),
    ]


def mode_channel(mode: int) -> ChannelDefined:
    """Return the meter's display mode (``*GMD``) as an enum."""
    return ChannelDefined(
        METER,
        MODE,
        ChannelKind.ENUM,
        writable=False,
        label=None,
        translation_key=MODE,
        options=tuple(MODE_NAMES.values()),
        category=ChannelCategory.DIAGNOSTIC,
        value=MODE_NAMES.get(mode),
    )
