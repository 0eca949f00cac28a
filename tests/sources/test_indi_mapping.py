"""Channels from indilib's vectors: standard units, stated units, names unique in a device, commands, categories."""

from __future__ import annotations

import pytest

from custom_components.instrument_hub.events import (
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    StateClass,
)
from custom_components.instrument_hub.sources.base import InvalidValue
from custom_components.instrument_hub.sources.indi.commands import merged_values
from custom_components.instrument_hub.sources.indi.mapping import (
    UnitOverride,
    channel_definitions,
    device_state,
)
from custom_components.instrument_hub.sources.indi.model import Vector
from custom_components.instrument_hub.sources.indi.naming import (
    NameCandidate,
    label_unit,
    member_name,
    tidy,
    unique_names,
)
from custom_components.instrument_hub.sources.indi.overrides import (
    OverrideSyntaxError,
    parse_unit_overrides,
)
from custom_components.instrument_hub.sources.indi.protocol import (
    DefMember,
    DefVector,
    VectorKind,
)
from custom_components.instrument_hub.sources.indi.standard import standard_quantity


def vector(
    name: str,
    *members: tuple[str, str],
    kind: VectorKind = VectorKind.NUMBER,
    label: str | None = None,
    group: str | None = "Main Control",
    perm: str = "rw",
    rule: str | None = None,
    fmt: str | None = "%g",
    state: str = "Idle",
) -> Vector:
    """Build a vector from (member name, member label) pairs."""
    value = "Off" if kind is VectorKind.SWITCH else "1"
    return Vector.from_def(
        DefVector(
            kind,
            "Dev",
            name,
            label or name,
            group,
            state,
            perm,
            rule,
            60,
            None,
            None,
            tuple(
                DefMember(m, ml, value, fmt if kind is VectorKind.NUMBER else None)
                for m, ml in members
            ),
        )
    )


def only(
    vec: Vector,
    overrides: dict[tuple[str, str, str | None], UnitOverride] | None = None,
) -> list[ChannelDefined]:
    """Return the definitions of a vector's channels."""
    return [
        channel.definition for channel in channel_definitions("Dev", vec, overrides)
    ]


# --------------------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize(
    ("vector_name", "member", "unit", "device_class"),
    [
        ("EQUATORIAL_EOD_COORD", "RA", "h", None),
        ("EQUATORIAL_EOD_COORD", "DEC", "°", None),
        ("CCD_TEMPERATURE", "CCD_TEMPERATURE_VALUE", "°C", "temperature"),
        ("CCD_EXPOSURE", "CCD_EXPOSURE_VALUE", "s", "duration"),
        ("ABS_FOCUS_POSITION", "FOCUS_ABSOLUTE_POSITION", "steps", None),
        ("FILTER_SLOT", "FILTER_SLOT_VALUE", None, None),
        ("WEATHER_PARAMETERS", "WEATHER_HUMIDITY", "%", "humidity"),
        ("WEATHER_PARAMETERS", "WEATHER_RAIN_HOUR", "mm/h", "precipitation_intensity"),
        ("WEATHER_TEMPERATURE", "MIN_OK", "°C", "temperature"),
        ("WEATHER_TEMPERATURE", "PERC_WARN", "%", None),
        ("ATMOSPHERE", "TEMPERATURE", "K", "temperature"),
        ("POLLING_PERIOD", "PERIOD_MS", "ms", "duration"),
    ],
)
def test_standard_properties_have_their_units(
    vector_name: str, member: str, unit: str | None, device_class: str | None
) -> None:
    """The standard names of indilib (whole names, never substrings) give the unit and device class."""
    quantity = standard_quantity(vector_name, member)
    assert quantity is not None
    assert (quantity.unit, quantity.device_class) == (unit, device_class)


def test_names_are_matched_whole_not_as_substrings() -> None:
    """A driver's own 'temperaturevector' is not CCD_TEMPERATURE: no unit is guessed."""
    assert standard_quantity("temperaturevector", "temperature") is None
    assert standard_quantity("MY_CCD_TEMPERATURE", "CCD_TEMPERATURE_VALUE") is None
    (definition,) = only(vector("temperaturevector", ("temperature", "temperature")))
    assert (definition.unit, definition.device_class_hint) == (None, None)
    assert definition.state_class is StateClass.MEASUREMENT


@pytest.mark.parametrize(
    ("label", "name", "unit"),
    [
        ("Temperature (C)", "Temperature", "°C"),
        ("Period (ms)", "Period", "ms"),
        ("Wind (kph)", "Wind", "km/h"),
        ("RA (hh:mm:ss)", "RA", "h"),
        ("Lat (dd:mm:ss)", "Lat", "°"),
        ("Value (uS)", "Value", "μs"),
        ("Pixel size (um)", "Pixel size", "µm"),
        ("Time Factor (x)", "Time Factor (x)", None),
        ("Record (Duration)", "Record (Duration)", None),
        ("(C)", "(C)", None),
        ("Plain", "Plain", None),
    ],
)
def test_a_label_states_its_unit(label: str, name: str, unit: str | None) -> None:
    """A trailing parenthesis that is a unit becomes the unit; anything else stays in the name."""
    stripped, quantity = label_unit(label)
    assert stripped == name
    assert (quantity.unit if quantity else None) == unit


def test_the_thermostat_states_celsius_in_its_labels() -> None:
    """The simulator's members are labelled "Temperature (C)" / "Target (C)": both °C, names unchanged."""
    (target,) = only(vector("targetvector", ("target", "Target (C)"), label="Target"))
    assert (target.label, target.unit, target.device_class_hint) == (
        "Target",
        "°C",
        "temperature",
    )


def test_the_users_override_wins_per_member_then_per_vector() -> None:
    """An override for a member beats one for its vector, which beats the standard and the label."""
    vec = vector(
        "EQUATORIAL_EOD_COORD", ("RA", "RA (hh:mm:ss)"), ("DEC", "DEC (dd:mm:ss)")
    )
    overrides = {
        ("Dev", "EQUATORIAL_EOD_COORD", None): UnitOverride("rad", None),
        ("Dev", "EQUATORIAL_EOD_COORD", "DEC"): UnitOverride(None, None),
    }
    ra, dec = only(vec, overrides)
    assert (ra.unit, dec.unit) == ("rad", None)
    assert (ra.label, dec.label) == (
        "EQUATORIAL_EOD_COORD RA",
        "EQUATORIAL_EOD_COORD DEC (dd:mm:ss)",
    )


def test_sexagesimal_numbers_get_the_precision_of_their_format() -> None:
    """%010.6m (d:mm:ss): 4 decimals, and a number entity steps by 0.0001 (finer than one second)."""
    (ra,) = only(vector("EQUATORIAL_EOD_COORD", ("RA", "RA"), fmt="%010.6m"))
    assert (ra.precision, ra.step) == (4, None)


def test_override_lines() -> None:
    """Lines of "device / property [/ member] = unit [, class]"; comments and blank lines ignored; bad ones refused."""
    parsed = parse_unit_overrides(
        "# comment\n\n Thermostat / targetvector / target = °C, Temperature \nCCD Simulator/CCD_GAIN=\n"
    )
    assert parsed == {
        ("Thermostat", "targetvector", "target"): UnitOverride("°C", "temperature"),
        ("CCD Simulator", "CCD_GAIN", None): UnitOverride(None, None),
    }
    for bad in (
        "no equals sign",
        "only/one/two/three = x",
        "dev = x",
        "a / b = x, y, z",
        " / b = x",
    ):
        with pytest.raises(OverrideSyntaxError):
            parse_unit_overrides(bad)


# --------------------------------------------------------------------------------------------------
# Names


def test_labels_are_tidied_and_multi_member_names_do_not_repeat() -> None:
    """Trailing and doubled spaces go; "UTC" + "UTC Time" is "UTC Time"."""
    assert tidy("  Left  ") == "Left"
    assert tidy("Frame\n  Left") == "Frame Left"
    assert member_name("UTC", "UTC Time") == "UTC Time"
    assert member_name("Frame", "Left") == "Frame Left"
    assert member_name("Filter", "Filter#1") == "Filter Filter#1"


def test_colliding_names_take_the_group_then_the_member_then_the_property() -> None:
    """Whichever came first: every name in a collision moves on together, until all differ."""
    names = unique_names(
        [
            NameCandidate(
                "CCD_FRAME.X", "Frame Left", "Image Settings", "CCD_FRAME", "X"
            ),
            NameCandidate(
                "GUIDER_FRAME.X", "Frame Left", "Guider Head", "GUIDER_FRAME", "X"
            ),
            NameCandidate(
                "FOCUS_BACKLASH_TOGGLE",
                "Backlash",
                "Main Control",
                "FOCUS_BACKLASH_TOGGLE",
                None,
            ),
            NameCandidate(
                "FOCUS_BACKLASH_STEPS.FOCUS_BACKLASH_VALUE",
                "Backlash",
                "Main Control",
                "FOCUS_BACKLASH_STEPS",
                None,
                "Steps",
            ),
            NameCandidate(
                "CCD_ABORT_EXPOSURE.ABORT",
                "Abort",
                "Main Control",
                "CCD_ABORT_EXPOSURE",
                None,
            ),
            NameCandidate(
                "GUIDER_ABORT_EXPOSURE.ABORT",
                "Abort",
                "Main Control",
                "GUIDER_ABORT_EXPOSURE",
                None,
            ),
            NameCandidate("GAIN.A", "Gain value", "G", "GAIN", "A"),
            NameCandidate("GAIN.B", "Gain value", "G", "GAIN", "B"),
            NameCandidate("ALONE", "Alone", "G", "ALONE", None),
        ]
    )
    assert names == {
        "CCD_FRAME.X": "Image Settings Frame Left",
        "GUIDER_FRAME.X": "Guider Head Frame Left",
        "FOCUS_BACKLASH_TOGGLE": "Backlash",
        "FOCUS_BACKLASH_STEPS.FOCUS_BACKLASH_VALUE": "Backlash Steps",
        "CCD_ABORT_EXPOSURE.ABORT": "Abort (CCD_ABORT_EXPOSURE)",
        "GUIDER_ABORT_EXPOSURE.ABORT": "Abort (GUIDER_ABORT_EXPOSURE)",
        "GAIN.A": "Gain value (GAIN A)",
        "GAIN.B": "Gain value (GAIN B)",
        "ALONE": "Alone",
    }


def test_names_that_differ_only_in_case_or_punctuation_collide() -> None:
    """Entity ids compare names as slugs: "Frame-Left" and "frame left" are the same id."""
    names = unique_names(
        [
            NameCandidate("A.X", "Frame-Left", "One", "A", "X"),
            NameCandidate("B.X", "frame left", "Two", "B", "X"),
        ]
    )
    assert names == {"A.X": "One Frame-Left", "B.X": "Two frame left"}


# --------------------------------------------------------------------------------------------------
# Commands, categories, states


@pytest.mark.parametrize(
    ("vec", "commands"),
    [
        (
            vector(
                "TELESCOPE_ABORT_MOTION",
                ("ABORT", "Abort"),
                kind=VectorKind.SWITCH,
                rule="AtMostOne",
            ),
            True,
        ),
        (
            vector(
                "DEVICE_PORT_SCAN",
                ("Scan Ports", "Scan Ports"),
                kind=VectorKind.SWITCH,
                rule="OneOfMany",
            ),
            True,
        ),
        (
            vector(
                "WEATHER_REFRESH",
                ("REFRESH", "Refresh"),
                kind=VectorKind.SWITCH,
                rule="AtMostOne",
            ),
            True,
        ),
        (
            vector(
                "CONFIG_PROCESS",
                ("CONFIG_LOAD", "Load"),
                ("CONFIG_SAVE", "Save"),
                kind=VectorKind.SWITCH,
                rule="AtMostOne",
            ),
            True,
        ),
        (
            vector(
                "MOUNT_TYPE",
                ("ALTAZ", "AltAz"),
                ("EQ_GEM", "GEM"),
                kind=VectorKind.SWITCH,
                rule="OneOfMany",
                perm="wo",
            ),
            True,
        ),
        # A one-member switch that is a state (the thermostat's logs, a safety override) stays a switch.
        (
            vector(
                "switchvector",
                ("switchmember", "Logs"),
                kind=VectorKind.SWITCH,
                rule="AtMostOne",
            ),
            False,
        ),
        (
            vector(
                "WEATHER_OVERRIDE",
                ("OVERRIDE", "Override Status"),
                kind=VectorKind.SWITCH,
                rule="AnyOfMany",
            ),
            False,
        ),
        (
            vector(
                "TELESCOPE_ABORT_MOTION",
                ("ABORT", "Abort"),
                kind=VectorKind.SWITCH,
                rule="AtMostOne",
                perm="ro",
            ),
            False,
        ),
        (
            vector(
                "CCD_FRAME_TYPE",
                ("FRAME_LIGHT", "Light"),
                ("FRAME_DARK", "Dark"),
                kind=VectorKind.SWITCH,
                rule="OneOfMany",
            ),
            False,
        ),
    ],
)
def test_command_switches_are_actions(vec: Vector, commands: bool) -> None:
    """Switches that act and flip back are buttons (ACTION channels); states stay switches or selects."""
    kinds = {definition.kind for definition in only(vec)}
    assert (kinds == {ChannelKind.ACTION}) is commands


def test_command_vectors_replace_the_select_earlier_versions_made() -> None:
    """CONFIG_PROCESS was one select (key CONFIG_PROCESS): each button names it as what it replaces."""
    config = vector(
        "CONFIG_PROCESS",
        ("CONFIG_LOAD", "Load"),
        ("CONFIG_SAVE", "Save"),
        kind=VectorKind.SWITCH,
        rule="AtMostOne",
    )
    assert [(d.channel_key, d.label, d.replaces) for d in only(config)] == [
        ("CONFIG_PROCESS.CONFIG_LOAD", "CONFIG_PROCESS Load", ("CONFIG_PROCESS",)),
        ("CONFIG_PROCESS.CONFIG_SAVE", "CONFIG_PROCESS Save", ("CONFIG_PROCESS",)),
    ]


def test_write_only_values_are_never_shown() -> None:
    """A wo number's channel carries no value: the driver never reports one."""
    (model,) = only(vector("MOUNT_MODEL", ("MM_IH", "Ha Zero (IH)"), perm="wo"))
    assert (model.kind, model.writable, model.value) == (
        ChannelKind.NUMERIC,
        True,
        None,
    )


@pytest.mark.parametrize(
    ("name", "group", "perm", "category", "enabled"),
    [
        ("CONNECTION", "Main Control", "rw", None, True),
        ("DRIVER_INFO", "General Info", "ro", ChannelCategory.DIAGNOSTIC, True),
        ("POLLING_PERIOD", "Options", "rw", ChannelCategory.CONFIG, True),
        ("DEVICE_PORT", "Connection", "rw", ChannelCategory.CONFIG, True),
        ("CCD_INFO", "Image Info", "ro", None, True),
        ("MOUNT_AXES", "Simulation", "ro", ChannelCategory.DIAGNOSTIC, False),
        ("DEBUG", "Options", "rw", ChannelCategory.CONFIG, False),
        ("EQUATORIAL_EOD_COORD", "Main Control", "rw", None, True),
        ("STREAMING_EXPOSURE", "Streaming", "rw", ChannelCategory.CONFIG, False),
    ],
)
def test_option_groups_are_configuration_and_noisy_ones_start_disabled(
    name: str, group: str, perm: str, category: ChannelCategory | None, enabled: bool
) -> None:
    """Configuration where writable, diagnostic where read-only (a sensor cannot be configuration)."""
    (definition, *_rest) = only(vector(name, ("X", "X"), group=group, perm=perm))
    assert (definition.category, definition.enabled_by_default) == (category, enabled)


def test_the_property_state_is_an_attribute_and_sums_up_a_device() -> None:
    """Each channel carries its vector's state; the device shows the most serious, naming the vectors."""
    slew = vector("EQUATORIAL_EOD_COORD", ("RA", "RA"), state="Busy")
    failed = vector(
        "CCD_EXPOSURE", ("CCD_EXPOSURE_VALUE", "Duration (s)"), state="Alert"
    )
    quiet = vector("POLLING_PERIOD", ("PERIOD_MS", "Period (ms)"), state="Ok")
    (ra,) = only(slew)
    assert ra.attributes == {"property_state": "busy"}
    assert device_state([slew, quiet]) == (
        "busy",
        {"busy": ["EQUATORIAL_EOD_COORD"], "alert": []},
    )
    assert device_state([slew, failed, quiet])[0] == "alert"
    assert device_state([]) == ("idle", {"busy": [], "alert": []})
    blob = vector("CCD1", ("CCD1", "Image"), kind=VectorKind.BLOB)
    assert only(blob)[0].attributes == {}


# --------------------------------------------------------------------------------------------------
# What a client sends, what a BLOB holds


@pytest.mark.parametrize(
    "text", ["nul\x00", "esc\x1b", "\ud800 lone surrogate", "\ufffe"]
)
def test_text_xml_cannot_carry_is_refused(text: str) -> None:
    """Refused before anything is sent (a server drops a connection that sends it)."""
    note = vector("NOTE", ("TEXT", "Text"), kind=VectorKind.TEXT)
    with pytest.raises(InvalidValue) as err:
        merged_values(note, {"TEXT": text})
    assert "U+" in err.value.message
    assert merged_values(note, {"TEXT": "tab\tand é 😀"}) == {"TEXT": "tab\tand é 😀"}
