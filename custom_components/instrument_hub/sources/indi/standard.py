"""What indilib's standard property names make certain: units, device classes, categories, commands.

INDI carries no units. indilib documents standard properties ("Standard Properties" of its developer manual,
and the names its base classes define: INDI::Telescope, INDI::CCD, INDI::Focuser, INDI::Dome,
INDI::Weather, INDI::FilterWheel, INDI::GPS, INDI::Rotator), and a client may rely on their meaning. Everything
here is looked up by exact vector and member names, never by substrings: a driver's own property called
"temperature" may be in any unit and gets none from this table (its label may still say, see ``naming``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ...events import StateClass


@dataclass(frozen=True, slots=True)
class Quantity:
    """A member's unit, the Home Assistant device class it implies, and whether it is a measurement."""

    unit: str | None
    device_class: str | None = None
    state_class: StateClass | None = StateClass.MEASUREMENT


HOURS: Final = Quantity("h")
"""Right ascension and hour angles: decimal hours (the driver displays them as hh:mm:ss)."""
DEGREES: Final = Quantity("°")
CELSIUS: Final = Quantity("°C", "temperature")
KELVIN: Final = Quantity("K", "temperature")
SECONDS: Final = Quantity("s", "duration")
MILLISECONDS: Final = Quantity("ms", "duration")
METRES: Final = Quantity("m", "distance")
MILLIMETRES: Final = Quantity("mm", "distance")
MICROMETRES: Final = Quantity(
    "µm"
)  # not among the distance units Home Assistant converts
PIXELS: Final = Quantity("px")
PERCENT: Final = Quantity("%")
STEPS: Final = Quantity("steps")
ARCSEC_PER_SECOND: Final = Quantity("″/s")
KILOMETRES_PER_HOUR: Final = Quantity("km/h", "wind_speed")
HECTOPASCAL: Final = Quantity("hPa", "atmospheric_pressure")
MAGNITUDES_PER_ARCSEC2: Final = Quantity("mag/arcsec²")
CODE: Final = Quantity(None, state_class=None)
"""A number that is a code or an index (a filter slot, a weather verdict): no unit, no statistics."""

_EQUATORIAL: Final = {"RA": HOURS, "DEC": DEGREES}
_FRAME: Final = dict.fromkeys(("X", "Y", "WIDTH", "HEIGHT"), PIXELS)
_CCD_INFO: Final = {
    "CCD_MAX_X": PIXELS,
    "CCD_MAX_Y": PIXELS,
    "CCD_PIXEL_SIZE": MICROMETRES,
    "CCD_PIXEL_SIZE_X": MICROMETRES,
    "CCD_PIXEL_SIZE_Y": MICROMETRES,
    "CCD_BITSPERPIXEL": Quantity("bit"),
}

MEMBER_QUANTITIES: Final[dict[str, dict[str, Quantity]]] = {
    # common to all devices
    "GEOGRAPHIC_COORD": {"LAT": DEGREES, "LONG": DEGREES, "ELEV": METRES},
    "TIME_LST": {"LST": HOURS},
    "ATMOSPHERE": {
        "TEMPERATURE": KELVIN,
        "PRESSURE": HECTOPASCAL,
        "HUMIDITY": Quantity("%", "humidity"),
    },
    "POLLING_PERIOD": {"PERIOD_MS": MILLISECONDS},
    # telescopes
    "EQUATORIAL_COORD": _EQUATORIAL,
    "EQUATORIAL_EOD_COORD": _EQUATORIAL,
    "TARGET_EOD_COORD": _EQUATORIAL,
    "HORIZONTAL_COORD": {"ALT": DEGREES, "AZ": DEGREES},
    "TELESCOPE_TIMED_GUIDE_NS": {
        "TIMED_GUIDE_N": MILLISECONDS,
        "TIMED_GUIDE_S": MILLISECONDS,
    },
    "TELESCOPE_TIMED_GUIDE_WE": {
        "TIMED_GUIDE_W": MILLISECONDS,
        "TIMED_GUIDE_E": MILLISECONDS,
    },
    "TELESCOPE_TRACK_RATE": {
        "TRACK_RATE_RA": ARCSEC_PER_SECOND,
        "TRACK_RATE_DE": ARCSEC_PER_SECOND,
    },
    "TELESCOPE_INFO": {
        "TELESCOPE_APERTURE": MILLIMETRES,
        "TELESCOPE_FOCAL_LENGTH": MILLIMETRES,
        "GUIDER_APERTURE": MILLIMETRES,
        "GUIDER_FOCAL_LENGTH": MILLIMETRES,
    },
    "TELESCOPE_PARK_POSITION": {
        "PARK_RA": HOURS,
        "PARK_HA": HOURS,
        "PARK_DEC": DEGREES,
        "PARK_AZ": DEGREES,
        "PARK_ALT": DEGREES,
    },
    # cameras (and their guide heads and video streams)
    "CCD_EXPOSURE": {"CCD_EXPOSURE_VALUE": SECONDS},
    "GUIDER_EXPOSURE": {"GUIDER_EXPOSURE_VALUE": SECONDS},
    "STREAMING_EXPOSURE": {"STREAMING_EXPOSURE_VALUE": SECONDS},
    "STREAM_DELAY": {"STREAM_DELAY_TIME": SECONDS},
    "RECORD_OPTIONS": {"RECORD_DURATION": SECONDS},
    "CCD_TEMPERATURE": {"CCD_TEMPERATURE_VALUE": CELSIUS},
    "CCD_TEMP_RAMP": {
        "RAMP_SLOPE": Quantity("°C/min"),
        "RAMP_THRESHOLD": Quantity("°C"),
    },
    "CCD_COOLER_POWER": {"CCD_COOLER_VALUE": PERCENT},
    "CCD_FRAME": _FRAME,
    "GUIDER_FRAME": _FRAME,
    "CCD_STREAM_FRAME": _FRAME,
    "CCD_BINNING": {"HOR_BIN": CODE, "VER_BIN": CODE},
    "GUIDER_BINNING": {"HOR_BIN": CODE, "VER_BIN": CODE},
    "CCD_INFO": _CCD_INFO,
    "GUIDER_INFO": _CCD_INFO,
    "SCOPE_INFO": {"FOCAL_LENGTH": MILLIMETRES, "APERTURE": MILLIMETRES},
    "LIMITS": {"LIMITS_BUFFER_MAX": Quantity("MB", "data_size")},
    # focusers
    "FOCUS_TIMER": {"FOCUS_TIMER_VALUE": MILLISECONDS},
    "REL_FOCUS_POSITION": {"FOCUS_RELATIVE_POSITION": STEPS},
    "ABS_FOCUS_POSITION": {"FOCUS_ABSOLUTE_POSITION": STEPS},
    "FOCUS_MAX": {"FOCUS_MAX_VALUE": STEPS},
    "FOCUS_SYNC": {"FOCUS_SYNC_VALUE": STEPS},
    "FOCUS_BACKLASH_STEPS": {"FOCUS_BACKLASH_VALUE": STEPS},
    "FOCUS_TEMPERATURE": {"TEMPERATURE": CELSIUS},
    # filter wheels
    "FILTER_SLOT": {"FILTER_SLOT_VALUE": CODE},
    # domes
    "DOME_SPEED": {"DOME_SPEED_VALUE": Quantity("rpm")},
    "DOME_TIMER": {"DOME_TIMER_VALUE": MILLISECONDS},
    "REL_DOME_POSITION": {"DOME_RELATIVE_POSITION": DEGREES},
    "ABS_DOME_POSITION": {"DOME_ABSOLUTE_POSITION": DEGREES},
    "DOME_PARAMS": {
        "HOME_POSITION": DEGREES,
        "PARK_POSITION": DEGREES,
        "AUTOSYNC_THRESHOLD": DEGREES,
    },
    "DOME_PARK_POSITION": {"PARK_AZ": DEGREES},
    "DOME_MEASUREMENTS": dict.fromkeys(
        (
            "DM_DOME_RADIUS",
            "DM_SHUTTER_WIDTH",
            "DM_NORTH_DISPLACEMENT",
            "DM_EAST_DISPLACEMENT",
            "DM_UP_DISPLACEMENT",
            "DM_OTA_OFFSET",
        ),
        METRES,
    ),
    # rotators, sky quality meters
    "ABS_ROTATOR_ANGLE": {"ANGLE": DEGREES},
    "SKY_QUALITY": {
        "SKY_BRIGHTNESS": MAGNITUDES_PER_ARCSEC2,
        "SKY_TEMPERATURE": CELSIUS,
    },
    # weather stations, GPS
    "WEATHER_UPDATE": {"PERIOD": SECONDS},
    "GPS_REFRESH_PERIOD": {"PERIOD": SECONDS},
}
"""vector -> member -> quantity, for indilib's standard properties."""

WEATHER_PARAMETERS: Final = "WEATHER_PARAMETERS"
WEATHER_QUANTITIES: Final[dict[str, Quantity]] = {
    "WEATHER_FORECAST": CODE,  # 0 ok, 1 warning, 2 alert
    "WEATHER_TEMPERATURE": CELSIUS,
    "WEATHER_DEWPOINT": CELSIUS,
    "WEATHER_SKY_TEMPERATURE": CELSIUS,
    "WEATHER_HUMIDITY": Quantity("%", "humidity"),
    "WEATHER_PRESSURE": HECTOPASCAL,
    "WEATHER_WIND_SPEED": KILOMETRES_PER_HOUR,
    "WEATHER_WIND_GUST": KILOMETRES_PER_HOUR,
    "WEATHER_WIND_DIRECTION": DEGREES,
    "WEATHER_RAIN_HOUR": Quantity("mm/h", "precipitation_intensity"),
    "WEATHER_CLOUD_COVER": PERCENT,
    "WEATHER_SQM": MAGNITUDES_PER_ARCSEC2,
}
"""INDI::Weather's parameters (members of WEATHER_PARAMETERS), in the units indilib defines for them."""

WEATHER_LIMIT_MEMBERS: Final = frozenset({"MIN_OK", "MAX_OK"})
"""Each parameter also has a writable vector of its own name: MIN_OK/MAX_OK in the parameter's unit, and
PERC_WARN, the share of the range (in %) that counts as a warning."""
WEATHER_WARNING_MEMBER: Final = "PERC_WARN"


def standard_quantity(vector: str, member: str) -> Quantity | None:
    """Return what indilib defines for a member of a standard vector, or None."""
    members = MEMBER_QUANTITIES.get(vector)
    if members is not None and member in members:
        return members[member]
    if vector == WEATHER_PARAMETERS:
        return WEATHER_QUANTITIES.get(member)
    parameter = WEATHER_QUANTITIES.get(vector)
    if parameter is not None:
        if member in WEATHER_LIMIT_MEMBERS:
            return parameter
        if member == WEATHER_WARNING_MEMBER:
            return PERCENT
    return None


# --------------------------------------------------------------------------------------------------
# Categories: what is configuration, what is diagnostic, what is too noisy to start enabled

CONFIG_GROUPS: Final = frozenset(
    {
        "Options",
        "Connection",
        "Simulation",
        "Simulator Config",
        "Site Management",
        "Streaming",
        "Signal Processing",
        "WCS",
        "Presets",
        "Slaving",
        "Image Settings",
        "Guider Head",
        "Firmware",
    }
)
"""The groups indilib's base classes put driver options in (as opposed to "Main Control", "Motion Control")."""

CONFIG_VECTORS: Final = frozenset(
    {
        "CONFIG_PROCESS",
        "DEBUG",
        "SIMULATION",
        "POLLING_PERIOD",
        "CONNECTION_MODE",
        "DEVICE_PORT",
        "DEVICE_BAUD_RATE",
        "DEVICE_AUTO_SEARCH",
        "DEVICE_PORT_SCAN",
        "DEVICE_ADDRESS",
        "CONNECTION_TYPE",
        "DEVICE_LAN_SEARCH",
        "ACTIVE_DEVICES",
        "UPLOAD_MODE",
        "UPLOAD_SETTINGS",
        "USEJOYSTICK",
        "SNOOP_JOYSTICK",
    }
)
"""Standard settings, whatever group a driver puts them in."""

DIAGNOSTIC_VECTORS: Final = frozenset({"DRIVER_INFO"})

DISABLED_GROUPS: Final = frozenset(
    {"Simulation", "Simulator Config", "Streaming", "Signal Processing", "WCS"}
)
"""Groups whose entities start disabled: a simulator's knobs, video streaming and its signal processing."""

DISABLED_VECTORS: Final = frozenset(
    {
        "DEBUG",
        "ACTIVE_DEVICES",
        "USEJOYSTICK",
        "SNOOP_JOYSTICK",
        "CCD_FAST_TOGGLE",
        "CCD_FAST_COUNT",
        "FPS",
        "STREAM_DELAY",
        "TELESCOPE_TIMED_GUIDE_NS",
        "TELESCOPE_TIMED_GUIDE_WE",
    }
)
"""Vectors whose entities start disabled: debugging, snooping, guiding pulses and frame-rate figures."""

DISABLED_MEMBERS: Final = frozenset(
    {("DRIVER_INFO", "DRIVER_EXEC"), ("DRIVER_INFO", "DRIVER_INTERFACE")}
)


# --------------------------------------------------------------------------------------------------
# Commands: switches that act and flip back, shown as buttons

COMMAND_VECTORS: Final = frozenset(
    {"CONFIG_PROCESS", "TELESCOPE_PARK_OPTION", "DOME_PARK_OPTION"}
)
"""Switch vectors whose every member is a command (Load/Save/Default/Purge, park-position actions)."""

COMMAND_WORDS: Final = frozenset(
    {"ABORT", "REFRESH", "RESET", "SCAN", "SYNC", "PURGE", "CLEAR"}
)
"""A one-member switch named with one of these words (as a whole word) is a command."""

CONNECTION_VECTOR: Final = "CONNECTION"
DRIVER_INFO_VECTOR: Final = "DRIVER_INFO"
