"""The Thing Description (captured from hololinked 0.4.2) read leniently, and mapped onto channels."""

from __future__ import annotations

from datetime import UTC, datetime
import json
from pathlib import Path
from typing import Any

import pytest

from custom_components.instrument_hub.events import (
    ChannelCategory,
    ChannelKind,
    EventData,
    StateClass,
    join_key,
)
from custom_components.instrument_hub.sources.base import InvalidValue
from custom_components.instrument_hub.sources.hololinked.mapping import (
    MAX_EVENT_ATTRIBUTES_CHARS,
    channel_value,
    event_attributes,
    event_readings,
    humanize,
    map_thing,
    unit_and_class,
    write_value,
)
from custom_components.instrument_hub.sources.hololinked.td import (
    Form,
    NotAThingDescription,
    parse_schema,
    parse_td,
    parse_thing_url,
    rewrite_href,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hololinked"
URL = parse_thing_url("http://LabPC.local:18080/energy-meter")


def captured_td() -> dict[str, Any]:
    """Return the TD captured from a hololinked 0.4.2 Thing (hrefs on 127.0.0.1:18080)."""
    document: dict[str, Any] = json.loads((FIXTURES / "td.json").read_text())
    return document


# --------------------------------------------------------------------------------------------------
# URLs


@pytest.mark.parametrize(
    ("typed", "base", "authority"),
    [
        (
            "http://127.0.0.1:18080/energy-meter",
            "http://127.0.0.1:18080/energy-meter",
            "127.0.0.1:18080",
        ),
        (" http://Lab:80/energy-meter/ ", "http://lab:80/energy-meter", "lab:80"),
        (
            "http://lab/energy-meter/resources/wot-td?ignore_errors=true",
            "http://lab:80/energy-meter",
            "lab:80",
        ),
        ("https://lab/a/b", "https://lab:443/a/b", "lab:443"),
        ("http://[::1]:9000/t", "http://[::1]:9000/t", "[::1]:9000"),
    ],
)
def test_thing_urls_are_normalised(typed: str, base: str, authority: str) -> None:
    """Trailing slashes, a pasted TD URL and default ports give the same base URL."""
    url = parse_thing_url(typed)
    assert (url.base, url.authority) == (base, authority)


@pytest.mark.parametrize(
    "typed",
    [
        "ftp://lab/t",
        "lab:8080/t",
        "http://lab:8080",
        "http://lab:8080/",
        "http:///t",
        "http://u:p@lab/t",
        "http://lab:99999/t",
    ],
)
def test_urls_that_cannot_name_a_thing(typed: str) -> None:
    """No scheme, no host, no Thing in the path, credentials in the URL, a bad port."""
    with pytest.raises(ValueError):  # noqa: PT011
        parse_thing_url(typed)


def test_hrefs_move_onto_the_configured_authority() -> None:
    """The server's own host name (socket.gethostname()) is replaced; relative hrefs resolve."""
    assert rewrite_href("http://vm:18080/energy-meter/wavelength", URL) == (
        "http://labpc.local:18080/energy-meter/wavelength"
    )
    assert rewrite_href("wavelength?x=1", URL) == (
        "http://labpc.local:18080/energy-meter/wavelength?x=1"
    )
    assert rewrite_href("mqtt://broker/energy-meter/x", URL) is None


# --------------------------------------------------------------------------------------------------
# The captured TD


def test_captured_td_is_read_despite_its_quirks() -> None:
    """``context`` instead of ``@context``, blank descriptions, every affordance with its forms."""
    td = parse_td(captured_td(), URL)
    assert (td.id, td.title) == ("energy-meter", "FakeMaestro")
    assert set(td.properties) == {
        "acquiring",
        "measurement_gap",
        "state",
        "version",
        "wavelength",
    }
    assert set(td.events) == {"data_point_event", "statistics_event"}
    assert "exit" in td.actions
    assert td.security == ("nosec",)
    wavelength = td.properties["wavelength"]
    assert wavelength.write == Form(
        "http://labpc.local:18080/energy-meter/wavelength", "PUT"
    )
    assert wavelength.observe == Form(
        "http://labpc.local:18080/energy-meter/wavelength/change-event", "GET"
    )
    assert (
        wavelength.schema.unit,
        wavelength.schema.minimum,
        wavelength.schema.maximum,
    ) == (
        "nm",
        190.0,
        25000.0,
    )
    assert td.properties["acquiring"].write is None  # readOnly
    assert td.properties["state"].schema.type == "string"  # oneOf [string, null]
    assert td.properties["state"].schema.nullable
    stats = td.events["statistics_event"].data
    assert stats is not None and stats.type == "object"
    assert stats.properties["pulse_count"].type == "integer"
    assert td.actions["get_thing_model"].invoke.method == "GET"


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "<html>",
        {"id": "x"},
        {"id": "x", "title": "T"},
        {"id": "", "title": "T", "events": {}},
    ],
)
def test_what_is_not_a_td(document: object) -> None:
    """HTML, lists, documents without id/title/affordances are refused."""
    with pytest.raises(NotAThingDescription):
        parse_td(document, URL)


def test_affordances_without_http_forms_are_skipped() -> None:
    """A property only served over MQTT, an action without forms: listed as skipped."""
    document = {
        "id": "t",
        "title": "T",
        "properties": {
            "p": {
                "type": "number",
                "forms": [{"href": "mqtt://b/p", "op": "readproperty"}],
            }
        },
        "actions": {"a": {"forms": "nonsense"}},
        "events": {
            "e": {
                "forms": [
                    {"href": "e", "op": ["subscribeevent"], "subprotocol": "longpoll"}
                ]
            }
        },
    }
    td = parse_td(document, URL)
    assert (td.properties, td.actions, td.events) == ({}, {}, {})
    assert td.skipped == ("property p", "action a", "event e")


def test_security_schemes_are_named() -> None:
    """Basic, and hololinked's API key definition that never names its scheme."""
    document = {
        **captured_td(),
        "security": ["bcrypt-basic-1", "key"],
        "securityDefinitions": {
            "bcrypt-basic-1": {"scheme": "basic", "in": "header"},
            "key": {"in": "header"},
        },
    }
    assert parse_td(document, URL).security == ("basic", "apikey")


def test_pydantic_schemas_resolve_refs_optional_and_enums() -> None:
    """$ref into $defs, allOf with one member, anyOf [x, null], enums, type lists."""
    schema = parse_schema(
        {
            "type": "object",
            "$defs": {"Mode": {"enum": ["a", "b"], "title": "Mode"}},
            "properties": {
                "mode": {"$ref": "#/$defs/Mode", "description": "the mode"},
                "gain": {"allOf": [{"type": "number", "minimum": 1}], "unit": "dB"},
                "level": {
                    "anyOf": [{"type": "integer", "maximum": 9}, {"type": "null"}]
                },
                "either": {"type": ["number", "integer"]},
                "nothing": {"type": "null"},
                "mixed": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "broken": {"$ref": "#/$defs/Missing"},
            },
        }
    )
    fields = schema.properties
    assert (fields["mode"].type, fields["mode"].enum, fields["mode"].description) == (
        "string",
        ("a", "b"),
        "the mode",
    )
    assert (fields["gain"].type, fields["gain"].minimum, fields["gain"].unit) == (
        "number",
        1.0,
        "dB",
    )
    assert (
        fields["level"].type,
        fields["level"].nullable,
        fields["level"].maximum,
    ) == (
        "integer",
        True,
        9.0,
    )
    assert fields["either"].type == "number"
    assert fields["nothing"].type == "null"
    assert fields["mixed"].type is None
    assert fields["broken"].type is None


# --------------------------------------------------------------------------------------------------
# Mapping


def test_the_captured_meter_maps_to_sensors_events_and_controls() -> None:
    """Events: a sensor per field (timestamp is time) and an event entity; properties by type."""
    thing = map_thing(parse_td(captured_td(), URL))
    by_key = {d.channel_key: d for d in thing.definitions}
    energy = by_key[join_key("event", "data_point_event", "energy")]
    assert (energy.kind, energy.writable, energy.label) == (
        ChannelKind.NUMERIC,
        False,
        "Energy",
    )
    assert join_key("event", "data_point_event", "timestamp") not in by_key
    assert by_key[join_key("event", "statistics_event", "pulse_count")].precision == 0
    event = by_key[join_key("event", "data_point_event")]
    assert (event.kind, event.options, event.label) == (
        ChannelKind.EVENT,
        ("data_point_event",),
        "Data point event",
    )
    wavelength = by_key[join_key("property", "wavelength")]
    assert (wavelength.kind, wavelength.writable, wavelength.unit) == (
        ChannelKind.NUMERIC,
        True,
        "nm",
    )
    assert (wavelength.minimum, wavelength.maximum) == (190.0, 25000.0)
    assert by_key[join_key("property", "acquiring")].writable is False
    state = by_key[join_key("property", "state")]
    assert (state.kind, state.translation_key, state.category, state.label) == (
        ChannelKind.TEXT,
        "thing_state",
        ChannelCategory.DIAGNOSTIC,
        None,
    )
    buttons = {d.label for d in thing.definitions if d.kind is ChannelKind.ACTION}
    assert buttons == {
        "Start acquisition",
        "Stop acquisition",
    }  # no exit, ping, get_thing_model
    assert "set_trigger_level" not in {
        a.name for a in thing.actions.values()
    }  # has input


def test_labels_two_events_share_get_their_event_name() -> None:
    """Two events with a field ``value`` (or scalar events titled the same) are told apart."""
    document = {
        "id": "t",
        "title": "T",
        "events": {
            name: {
                "data": {"type": "object", "properties": {"value": {"type": "number"}}},
                "forms": [{"href": name, "op": "subscribeevent"}],
            }
            for name in ("left_event", "right_event")
        },
    }
    labels = {d.label for d in map_thing(parse_td(document, URL)).definitions}
    assert {"Left Value", "Right Value"} <= labels


def test_scalar_and_schemaless_events() -> None:
    """A scalar schema is one sensor; no schema is the event entity alone; objects are unmapped."""
    document = {
        "id": "t",
        "title": "T",
        "events": {
            "alarm_event": {
                "data": {"type": "string"},
                "forms": [{"href": "a", "op": "subscribeevent"}],
            },
            "tick": {"forms": [{"href": "t", "op": "subscribeevent"}]},
            "blob_event": {
                "data": {"type": "object", "properties": {"frame": {"type": "array"}}},
                "forms": [{"href": "b", "op": "subscribeevent"}],
            },
        },
        "properties": {
            "matrix": {"type": "array", "forms": [{"href": "m", "op": "readproperty"}]},
        },
    }
    thing = map_thing(parse_td(document, URL))
    by_key = {d.channel_key: d for d in thing.definitions}
    assert by_key[join_key("event", "alarm_event", "value")].label == "Alarm"
    assert by_key[join_key("event", "alarm_event", "value")].kind is ChannelKind.TEXT
    assert join_key("event", "tick") in by_key
    assert set(thing.unmapped) == {
        "event blob_event field frame (array)",
        "property matrix (array)",
    }


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("J", ("J", "energy")),
        ("W", ("W", "power")),
        ("degC", ("°C", "temperature")),
        ("nm", ("nm", None)),
        ("mJ", ("mJ", None)),
        (None, (None, None)),
    ],
)
def test_units_and_device_classes(
    unit: str | None, expected: tuple[str | None, str | None]
) -> None:
    """Only units Home Assistant accepts for a device class get one."""
    assert unit_and_class(unit) == expected


def test_energy_sensors_have_no_measurement_state_class() -> None:
    """Home Assistant refuses measurement for energy: pulse energies get no state class."""
    document = {
        "id": "t",
        "title": "T",
        "events": {
            "e": {
                "data": {
                    "type": "object",
                    "properties": {
                        "energy": {"type": "number", "unit": "J"},
                        "p": {"type": "number", "unit": "W"},
                    },
                },
                "forms": [{"href": "e", "op": "subscribeevent"}],
            }
        },
    }
    by_key = {d.channel_key: d for d in map_thing(parse_td(document, URL)).definitions}
    energy = by_key[join_key("event", "e", "energy")]
    assert (energy.device_class_hint, energy.state_class) == ("energy", None)
    assert by_key[join_key("event", "e", "p")].state_class is StateClass.MEASUREMENT


def test_humanize() -> None:
    """Keys become names."""
    assert humanize("pulse_count") == "Pulse count"
    assert humanize("set-trigger-level") == "Set trigger level"
    assert humanize("_") == "_"


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (ChannelKind.NUMERIC, None, None),
        (ChannelKind.NUMERIC, float("nan"), None),
        (ChannelKind.NUMERIC, True, None),
        (ChannelKind.NUMERIC, "1", None),
        (ChannelKind.NUMERIC, 3, 3),
        (ChannelKind.BOOLEAN, 0, None),
        (ChannelKind.BOOLEAN, False, False),
        (ChannelKind.ENUM, "hold", "hold"),
        (ChannelKind.ENUM, "other", None),
        (ChannelKind.TEXT, {"a": 1}, '{"a":1}'),
        (ChannelKind.TEXT, None, None),
        (ChannelKind.EVENT, 1, None),
    ],
)
def test_channel_values_never_invent_a_value(
    kind: ChannelKind, value: object, expected: object
) -> None:
    """Null (NaN) and values of the wrong type are unknown, never 0 or False."""
    assert channel_value(kind, value, ("ramp", "hold")) == expected


def test_event_readings_take_the_payload_time_and_fire_with_the_payload() -> None:
    """Every field, then the event with the whole payload; the payload's time is the readings'."""
    thing = map_thing(parse_td(captured_td(), URL))
    arrival = datetime(2026, 11, 21, 4, 40, 55, tzinfo=UTC)
    readings = event_readings(
        "energy-meter",
        thing.events["data_point_event"],
        {"timestamp": 1795236054.0518181, "energy": None},
        arrival=arrival,
        local=UTC,
        size=50,
    )
    assert [r.channel_key for r in readings] == [
        join_key("event", "data_point_event", "energy"),
        join_key("event", "data_point_event"),
    ]
    assert readings[0].value is None
    assert readings[0].timestamp == datetime.fromtimestamp(1795236054.0518181, UTC)
    assert readings[1].value == EventData(
        "data_point_event", {"timestamp": 1795236054.0518181, "energy": None}
    )
    # A field left out keeps its last value; a payload of the wrong shape only fires the event.
    partial = event_readings(
        "energy-meter",
        thing.events["statistics_event"],
        {"min": 1.0},
        arrival=arrival,
        local=UTC,
        size=9,
    )
    assert len(partial) == 2
    wrong = event_readings(
        "energy-meter",
        thing.events["statistics_event"],
        5,
        arrival=arrival,
        local=UTC,
        size=1,
    )
    assert [r.value for r in wrong] == [EventData("statistics_event", {"value": 5})]
    assert wrong[0].timestamp == arrival


def test_big_payloads_fire_with_their_scalar_fields() -> None:
    """The recorder keeps no huge attributes: arrays and long texts stay out of big payloads."""
    big = {
        "frame": list(range(2000)),
        "n": 1,
        "label": "x" * 300,
        "event_type": "spoof",
    }
    size = len(json.dumps(big))
    assert size > MAX_EVENT_ATTRIBUTES_CHARS
    assert event_attributes(big, size) == {"n": 1, "truncated": True}
    assert event_attributes({"event_type": "spoof", "a": 1}, 10) == {"a": 1}
    assert event_attributes("x" * 5000, 5002) == {"value": None, "truncated": True}


def test_writes_are_checked_against_the_property() -> None:
    """Numbers, whole numbers, booleans, enums and texts; anything else is refused before sending."""
    schemas: dict[str, dict[str, Any]] = {
        "n": {"type": "number"},
        "i": {"type": "integer"},
        "b": {"type": "boolean"},
        "e": {"type": "string", "enum": ["x", "y"]},
        "s": {"type": "string"},
    }
    document: dict[str, Any] = {
        "id": "t",
        "title": "T",
        "properties": {
            name: {
                **schema,
                "forms": [{"href": name, "op": ["readproperty", "writeproperty"]}],
            }
            for name, schema in schemas.items()
        },
    }
    thing = map_thing(parse_td(document, URL))
    n, i, b, e, s = (thing.properties[join_key("property", k)] for k in "nibes")
    assert write_value(n, 1.5) == 1.5
    assert write_value(i, 3.0) == 3 and isinstance(write_value(i, 3.0), int)
    assert write_value(b, True) is True
    assert write_value(e, "y") == "y"
    assert write_value(s, "note") == "note"
    for binding, bad in (
        (n, "1"),
        (n, True),
        (n, float("inf")),
        (i, 2.5),
        (b, 1),
        (e, "z"),
        (s, 5),
    ):
        with pytest.raises(InvalidValue):
            write_value(binding, bad)


def test_display_precision_from_the_td_or_the_unit() -> None:
    """MultipleOf gives the decimals; integers none; J/W/V/A six (Home Assistant would show 0)."""
    fields = {
        "step": {"type": "number", "multipleOf": 0.25},
        "count": {"type": "integer"},
        "energy": {"type": "number", "unit": "J"},
        "power": {"type": "number", "unit": "mW"},
        "wavelength": {"type": "number", "unit": "nm"},
        "temperature": {"type": "number", "unit": "°C"},
    }
    document = {
        "id": "t",
        "title": "T",
        "events": {
            "e": {
                "data": {"type": "object", "properties": fields},
                "forms": [{"href": "e", "op": "subscribeevent"}],
            }
        },
    }
    by_key = {d.channel_key: d for d in map_thing(parse_td(document, URL)).definitions}
    precision = {key: by_key[join_key("event", "e", key)].precision for key in fields}
    assert precision == {
        "step": 2,
        "count": 0,
        "energy": 6,
        "power": 6,
        "wavelength": None,
        "temperature": None,
    }


def test_steps_of_writable_numbers() -> None:
    """multipleOf, 1 for integers, else a power of ten near a thousandth of the range (at most 1)."""
    props: dict[str, dict[str, Any]] = {
        "gap": {"type": "number", "minimum": 0.01, "maximum": 10},
        "wavelength": {"type": "number", "minimum": 190, "maximum": 25000},
        "free": {"type": "number"},
        "count": {"type": "integer"},
        "quarter": {"type": "number", "multipleOf": 0.25},
    }
    document: dict[str, Any] = {
        "id": "t",
        "title": "T",
        "properties": {
            name: {
                **schema,
                "forms": [{"href": name, "op": ["readproperty", "writeproperty"]}],
            }
            for name, schema in props.items()
        },
    }
    by_key = {d.channel_key: d for d in map_thing(parse_td(document, URL)).definitions}
    steps = {name: by_key[join_key("property", name)].step for name in props}
    assert steps == {
        "gap": 0.001,
        "wavelength": 1.0,
        "free": 0.001,
        "count": 1.0,
        "quarter": 0.25,
    }
