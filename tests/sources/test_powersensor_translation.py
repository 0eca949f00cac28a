"""Our translation of a plug's reports gives the vendor's results, message type by message type.

``mapping.sample_of`` applies powersensor-local 2.4.0's field rules itself (the vendor's
``translate_raw_message`` was 80 % of a report's parsing cost). The reference here is what
``sample_of`` was before: the vendor's function, then our channels read from its events. Both
must agree on every captured message, on the benchmark's generated household, and on generated
messages with fields missing, null, of the wrong type or out of range, including which ones are
refused.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
import math
from pathlib import Path
import random
from typing import Any

from hypothesis import given, settings, strategies as st
from powersensor_local.xlatemsg import translate_raw_message
import pytest

from benchmarks.powersensor_stream import (
    PLUG_MAC,
    flood_datagrams,
    parser_stream,
    plug_report,
    sensor_reports,
)
from custom_components.instrument_hub.sources.powersensor.mapping import (
    ACTIVE_CURRENT,
    APPARENT_CURRENT,
    AVERAGE_RSSI,
    BATTERY,
    BATTERY_VOLTAGE,
    ENERGY,
    JOULES_PER_KWH,
    LAST_RSSI,
    POWER,
    REACTIVE_CURRENT,
    ROLE,
    UNIT_INVALID,
    UNIT_UNCALIBRATED,
    VOLTAGE,
    WATER_FLOW,
    WATER_VOLUME,
    DeviceType,
    Sample,
    UntranslatableReport,
    battery_percent,
    number,
    role_option,
    sample_of,
    timestamp,
)
from custom_components.instrument_hub.sources.powersensor.protocol import (
    Report,
    parse_datagram,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "powersensor"
CAPTURED: dict[str, dict[str, Any]] = {
    record["name"]: json.loads(record["line"])
    for record in map(
        json.loads, (FIXTURES / "raw_messages.jsonl").read_text().splitlines()
    )
}
RELAY = "246f280487a4"


def vendor_sample(message: Mapping[str, Any], relay_mac: str) -> Sample:
    """Translate as before: the vendor's translation, then our channels from its events."""
    try:
        translated: dict[str, dict[str, Any]] = translate_raw_message(
            dict(message), relay_mac
        )
    except Exception as err:  # whatever the vendor raises refuses the report
        raise UntranslatableReport(str(err)) from err
    raw_mac = message.get("mac")
    role = message.get("role")
    unit = message.get("unit")
    sample = Sample(
        mac=raw_mac.lower() if isinstance(raw_mac, str) else "",
        device=str(message.get("device")),
        role=role if isinstance(role, str) else None,
        starttime=number(message.get("starttime")),
        duration=number(message.get("duration")),
        uncalibrated=unit == UNIT_UNCALIBRATED,
        invalid=unit == UNIT_INVALID,
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
    if sample.device != DeviceType.PLUG and role in ("house-net", "solar"):
        sample.household = {
            name: translated[name]
            for name in ("average_power", "summation_energy")
            if name in translated
        }
    return sample


def _same_values(ours: Mapping[str, object], theirs: Mapping[str, object]) -> bool:
    """Equal values, in the same order (the order channels are defined and emitted in)."""
    return list(ours) == list(theirs) and all(
        _same(ours[key], theirs[key]) for key in ours
    )


def _same(ours: object, theirs: object) -> bool:
    if isinstance(ours, float) and isinstance(theirs, float):
        return ours == theirs and math.copysign(1, ours) == math.copysign(1, theirs)
    return type(ours) is type(theirs) and ours == theirs


def assert_same_translation(message: Mapping[str, Any]) -> None:
    """Ours and the vendor's: both refuse the message, or both give the same sample."""
    try:
        expected = vendor_sample(message, RELAY)
    except UntranslatableReport:
        with pytest.raises(UntranslatableReport):
            sample_of(message, RELAY)
        return
    ours = sample_of(message, RELAY)
    assert (ours.mac, ours.device, ours.role) == (
        expected.mac,
        expected.device,
        expected.role,
    )
    assert _same(ours.starttime, expected.starttime)
    assert _same(ours.duration, expected.duration)
    assert (ours.uncalibrated, ours.invalid) == (
        expected.uncalibrated,
        expected.invalid,
    )
    assert _same_values(ours.values, expected.values), (ours.values, expected.values)
    assert ours.resets == expected.resets
    assert ours.household == expected.household


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_each_captured_message_type(name: str) -> None:
    """Every message of the vendor's own fixtures: house, solar, water (old and new), plug, U, I..."""
    assert_same_translation(CAPTURED[name])


def test_the_generated_household() -> None:
    """The benchmark's household stream (plug, house mains, solar, water), report by report."""
    stream = parser_stream(300)
    reports = [
        line.message
        for data in stream.datagrams
        for line in parse_datagram(data)
        if isinstance(line, Report)
    ]
    assert len(reports) == stream.reports
    for message in reports:
        assert_same_translation(message)
    for message in (
        plug_report(random.Random(3), 1),
        *sensor_reports(random.Random(3), 1),
    ):
        assert_same_translation(message)


def test_tiny_reports_of_the_flood_rows() -> None:
    """The loop-lag row's tiny reports translate as the vendor's do."""
    data = flood_datagrams("lines", 1)[0]
    for line in parse_datagram(data):
        if isinstance(line, Report):
            assert_same_translation(line.message)


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["12", "nan", "1e400", "-3.5"]),
    st.lists(st.integers(), max_size=2),
)
_FIELDS = (
    "type",
    "device",
    "mac",
    "role",
    "unit",
    "starttime",
    "duration",
    "power",
    "summation",
    "summation_start",
    "current",
    "active_current",
    "reactive_current",
    "voltage",
    "average_flow",
    "summation_volume",
    "batteryMicrovolt",
    "rssi",
    "raw_rssi",
)


@st.composite
def _messages(draw: st.DrawFn) -> dict[str, Any]:
    base = dict(draw(st.sampled_from(list(CAPTURED.values()))))
    base["type"] = draw(
        st.sampled_from(["instant_power", "instant_power", "auxiliary", "sensor"])
    )
    base["device"] = draw(st.sampled_from(["plug", "sensor", "ble_sensor", "hub"]))
    base["unit"] = draw(st.sampled_from(["W", "w", "L", "l", "U", "I", "kW", None]))
    base["role"] = draw(
        st.sampled_from(["house-net", "solar", "water", "appliance", "unknown", None])
    )
    for key in draw(st.sets(st.sampled_from(_FIELDS), max_size=4)):
        if draw(st.booleans()):
            base.pop(key, None)
        else:
            base[key] = draw(_ODD_VALUES)
    return base


@settings(max_examples=1500, deadline=None)
@given(_messages())
def test_generated_messages(message: dict[str, Any]) -> None:
    """Any mix of missing, null, mistyped, huge, NaN or infinite fields: the vendor's verdict."""
    assert_same_translation(message)


def test_skipped_channels_are_checked_but_not_computed() -> None:
    """A muted channel (its entity is disabled) is None, the rest as without skipping."""
    message = CAPTURED["plug"]
    full = sample_of(message, RELAY)
    muted = {VOLTAGE, APPARENT_CURRENT}
    skipped = sample_of(message, RELAY, muted)
    assert list(skipped.values) == list(full.values)
    for key, value in skipped.values.items():
        assert value == (None if key in muted else full.values[key])
    incomplete = {key: value for key, value in message.items() if key != "voltage"}
    with pytest.raises(UntranslatableReport, match="voltage"):
        sample_of(incomplete, RELAY, muted)  # still refused, as the vendor refuses it
    sensor = sample_of(CAPTURED["house_net"], RELAY, {AVERAGE_RSSI, LAST_RSSI})
    assert sensor.values[AVERAGE_RSSI] is None and sensor.values[LAST_RSSI] is None
    assert (
        sensor.values[BATTERY]
        == sample_of(CAPTURED["house_net"], RELAY).values[BATTERY]
    )


def test_a_reset_time_is_remembered_by_type() -> None:
    """The remembered reset times keep 1, 1.0 and True apart (True is no time at all)."""
    base = {**CAPTURED["house_net"], "device": "plug", "unit": "W"}
    base |= {"current": 1, "active_current": 1, "reactive_current": 1, "voltage": 1}
    as_int = sample_of({**base, "summation_start": 1}, PLUG_MAC)
    as_bool = sample_of({**base, "summation_start": True}, PLUG_MAC)
    as_list = sample_of({**base, "summation_start": [1]}, PLUG_MAC)
    assert as_int.resets[ENERGY] is not None
    assert as_bool.resets[ENERGY] is None
    assert as_list.resets[ENERGY] is None
