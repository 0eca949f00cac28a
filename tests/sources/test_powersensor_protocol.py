"""The Powersensor wire format and the mapping to channels, from the vendor's own raw messages."""

from __future__ import annotations

from datetime import UTC, datetime
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.events import ChannelKind, StateClass
from custom_components.instrument_hub.sources.powersensor.mapping import (
    CHANNELS,
    DeviceType,
    UntranslatableReport,
    battery_percent,
    household_reading,
    sample_of,
    sensor_name,
    timestamp,
)
from custom_components.instrument_hub.sources.powersensor.protocol import (
    DISCOVER,
    MAX_DATAGRAM,
    MAX_LINE,
    BadLine,
    DiscoveryAnswer,
    Report,
    SubscriptionNotice,
    ipv4_address,
    normalize_mac,
    parse_datagram,
    parse_discovery_datagram,
    subscribe,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "powersensor"
RAW: dict[str, bytes] = {
    record["name"]: record["line"].encode()
    for record in map(
        json.loads, (FIXTURES / "raw_messages.jsonl").read_text().splitlines()
    )
}
RELAY = "246f280487a4"


def _message(name: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(RAW[name])
    return message


# --------------------------------------------------------------------------------------------------
# Commands and addresses


def test_commands_are_the_vendor_bytes() -> None:
    """The client sends exactly what the vendor's client sends."""
    assert DISCOVER == b"discover()\n"
    assert subscribe(60) == b"subscribe(60)\n"
    assert subscribe(0) == b"subscribe(0)\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("246f280487a4", "246f280487a4"),
        ("24:6F:28:04:87:A4", "246f280487a4"),
        ("24-6f-28-04-87-a4", "246f280487a4"),
        ("246f280487a", None),
        ("zz6f280487a4", None),
        (None, None),
        (1234, None),
    ],
)
def test_normalize_mac(value: object, expected: str | None) -> None:
    """MACs are 12 lowercase hex digits; anything else is not a MAC."""
    assert normalize_mac(value) == expected


def test_ipv4_only() -> None:
    """The plug API is IPv4 only: IPv6 and names are refused."""
    assert ipv4_address(" 127.0.0.11 ") == "127.0.0.11"
    assert ipv4_address("::1") is None
    assert ipv4_address("plug.local") is None
    assert ipv4_address(None) is None


# --------------------------------------------------------------------------------------------------
# Datagrams


def test_one_datagram_many_lines() -> None:
    """A datagram carries the plug's report and relayed ones, one JSON object per line."""
    data = RAW["plug"] + b"\n" + RAW["house_net"] + b"\r\n\n" + RAW["water"]
    lines = parse_datagram(data)
    assert [type(line) for line in lines] == [Report, Report, Report]
    assert [line.message["mac"] for line in lines if isinstance(line, Report)] == [
        "246f280487a4",
        "bcddc247d1f5",
        "bcddc247d338",
    ]


def test_subscription_and_discovery_lines_are_the_protocol_s_own() -> None:
    """Warnings and expiries are notices; a discovery answer names a plug."""
    data = b"\n".join(
        (
            RAW["subscription_warning"],
            RAW["subscription_expiry"],
            b'{"type": "discovery", "ip": "127.0.0.11", "mac": "246F280487A4"}',
        )
    )
    assert parse_datagram(data) == [
        SubscriptionNotice("warning"),
        SubscriptionNotice("expiry"),
        DiscoveryAnswer("127.0.0.11", "246f280487a4"),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (RAW["house_net"][:57], "not JSON"),  # truncated
        (b"{not json}", "not JSON"),
        (b"\xff\xfe" + RAW["plug"], "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"mac": "246f280487a4", "power": 5}', "no message type"),
        (b'{"type": "subscription"}', "subscription notice without subtype"),
        (b'{"type": "discovery", "ip": "x"}', "discovery answer without ip/mac"),
        (
            b'{"type": "instant_power", "x": "' + b"a" * MAX_LINE + b'"}',
            "oversized line",
        ),
    ],
)
def test_a_bad_line_is_skipped_alone(line: bytes, reason: str) -> None:
    """A bad line becomes a BadLine with its reason; the lines around it are still delivered."""
    lines = parse_datagram(RAW["plug"] + b"\n" + line + b"\n" + RAW["solar"])
    assert isinstance(lines[0], Report)
    assert isinstance(lines[1], BadLine)
    assert lines[1].reason.startswith(reason)
    assert len(lines[1].excerpt) <= 80
    assert isinstance(lines[2], Report)
    assert lines[2].message["role"] == "solar"


def test_an_oversized_datagram_is_one_bad_line() -> None:
    """Nothing longer than a UDP datagram can carry is parsed."""
    lines = parse_datagram(RAW["plug"] + b"\n" + b" " * MAX_DATAGRAM)
    assert len(lines) == 1
    assert isinstance(lines[0], BadLine)
    assert lines[0].reason.startswith("oversized datagram")


def test_discovery_datagrams() -> None:
    """A scan reads ip and mac from JSON answers and ignores everything else."""
    data = (
        b'{"type": "discovery", "ip": "127.0.0.11", "mac": "246f280487a4"}\n'
        b"\xff garbage\n"
        b'{"ip": "127.0.0.12", "mac": "a4cf1276fc70"}\n'
        b'{"ip": "not an ip", "mac": "a4cf1276fc70"}\n'
        b"[]\n"
    )
    assert parse_discovery_datagram(data) == [
        DiscoveryAnswer("127.0.0.11", "246f280487a4"),
        DiscoveryAnswer("127.0.0.12", "a4cf1276fc70"),
    ]
    assert parse_discovery_datagram(b" " * (MAX_DATAGRAM + 1)) == []


STREAM_LINES = [
    RAW["plug"],
    RAW["house_net"],
    b'{"mac": "246f280487a4"}',  # no type: the library's handler raises on this one
    RAW["solar"],
    RAW["subscription_warning"],
    RAW["water"][:40],  # truncated
    b"\xc3\x28 not utf-8",
    RAW["water"],
    RAW["invalid_sample"],
]


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(
        st.booleans(), min_size=len(STREAM_LINES) - 1, max_size=len(STREAM_LINES) - 1
    ),
    separators=st.lists(
        st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
        min_size=len(STREAM_LINES),
        max_size=len(STREAM_LINES),
    ),
    trailing=st.booleans(),
)
def test_any_grouping_of_lines_into_datagrams_gives_the_same_lines(
    cuts: list[bool], separators: list[bytes], trailing: bool
) -> None:
    """Lines packed into datagrams any way (one each, all in one, ...) parse to the same sequence.

    The plug decides how many lines go into a datagram; a line is never split across two (so a cut
    inside a line is a truncated line, tested above).
    """
    expected = [item for line in STREAM_LINES for item in parse_datagram(line)]
    datagrams: list[bytes] = []
    current = b""
    for index, line in enumerate(STREAM_LINES):
        current += line
        last = index == len(STREAM_LINES) - 1
        if last or cuts[index]:
            datagrams.append(current + (separators[index] if trailing else b""))
            current = b""
        else:
            current += separators[index]
    parsed = [item for datagram in datagrams for item in parse_datagram(datagram)]
    assert parsed == expected
    assert sum(isinstance(item, BadLine) for item in parsed) == 3


# --------------------------------------------------------------------------------------------------
# Mapping (the vendor's field rules, then our channels)


def test_plug_sample() -> None:
    """A plug: power, the currents, voltage, and energy in kWh from the summation in J."""
    sample = sample_of(_message("plug"), RELAY)
    assert sample.device == "plug"
    assert sample.mac == "246f280487a4"
    assert sample.values == {
        "power": 1.0,
        "apparent_current": 0.141,
        "active_current": 0.005,
        "reactive_current": 0.006,
        "voltage": 232.114,
        "energy": 5103988.0 / 3_600_000,
    }
    assert sample.resets == {"energy": datetime.fromtimestamp(1770501947, UTC)}


def test_house_net_sample() -> None:
    """The house mains: net power, net energy (negative here), battery, signal, role."""
    sample = sample_of(_message("house_net"), RELAY)
    assert sample.values == {
        "power": 992.0,
        "energy": -281230401 / 3_600_000,
        "battery_voltage": 3.803104,
        "battery_level": battery_percent(3.803104),
        "average_rssi": -89.0,
        "last_rssi": -91.0,
        "sensor_role": "house_net",
    }
    assert sample.resets["energy"] == datetime.fromtimestamp(1769972064, UTC)
    assert not sample.uncalibrated and not sample.invalid
    # The household view's input: the vendor's two events, as its translation words them.
    assert sample.household == {
        "average_power": {
            "mac": "bcddc247d1f5",
            "role": "house-net",
            "starttime_utc": 1772164705,
            "watts": 992,
            "duration_s": 30,
            "via": RELAY,
        },
        "summation_energy": {
            "mac": "bcddc247d1f5",
            "role": "house-net",
            "starttime_utc": 1772164705,
            "summation_joules": -281230401,
            "summation_resettime_utc": 1769972064,
            "via": RELAY,
        },
    }


def test_water_sample_and_legacy_firmware() -> None:
    """Water: flow in L/min and volume in L (new firmware only: old figures are unscaled)."""
    sample = sample_of(_message("water"), RELAY)
    assert sample.values["water_flow"] == 9.2
    assert sample.values["water_volume"] == 132.1
    assert "power" not in sample.values
    legacy = sample_of(_message("water_legacy"), RELAY)
    assert "water_flow" not in legacy.values and "water_volume" not in legacy.values
    assert legacy.values["sensor_role"] == "water"


def test_uncalibrated_and_invalid_samples_carry_no_power() -> None:
    """Unit U and unit I give no power value (the source then shows it unknown)."""
    uncalibrated = sample_of(_message("solar_uncalibrated"), RELAY)
    assert uncalibrated.uncalibrated
    assert "power" not in uncalibrated.values and "energy" not in uncalibrated.values
    invalid = sample_of(_message("invalid_sample"), RELAY)
    assert invalid.invalid
    assert "power" not in invalid.values
    assert invalid.values["battery_voltage"] == 3.803104


def test_old_firmware_without_summation_start_has_no_energy() -> None:
    """Without summation_start the vendor skips the summation (it cannot be compared across resets)."""
    sample = sample_of(_message("house_net_no_summation_start"), RELAY)
    assert "energy" not in sample.values
    assert sample.values["power"] == 992.0


@pytest.mark.parametrize(
    "message",
    [
        {
            "type": "instant_power",
            "device": "sensor",
            "mac": "bcddc247d1f5",
            "unit": "w",
        },
        {"type": "instant_power", "mac": "bcddc247d1f5"},
        {"device": "sensor"},
        {
            **json.loads(RAW["house_net"]),
            "batteryMicrovolt": "lots",
        },
    ],
)
def test_untranslatable_reports_raise_one_error(message: dict[str, Any]) -> None:
    """Whatever the vendor's translation raises on becomes UntranslatableReport."""
    with pytest.raises(UntranslatableReport):
        sample_of(message, RELAY)


def test_non_numbers_are_unknown_not_zero() -> None:
    """A field of the wrong type gives an unknown value, never a made-up number."""
    message = {**_message("house_net"), "power": "992", "rssi": float("nan")}
    sample = sample_of(message, RELAY)
    assert sample.values["power"] is None
    assert sample.values["average_rssi"] is None


@pytest.mark.parametrize(
    ("volts", "percent"),
    [(3.0, 0.0), (3.3, 0.0), (3.725, 50.0), (4.15, 100.0), (4.3, 100.0)],
)
def test_battery_percent_linear_and_clamped(volts: float, percent: float) -> None:
    """3.3 V is empty, 4.15 V full, linear in between, clamped outside (the vendor's suggestion)."""
    assert battery_percent(volts) == percent


def test_household_readings() -> None:
    """VirtualHousehold events: watts as they are, summations in kWh, never negative."""
    assert household_reading("from_grid", {"watts": 120}) == (
        "grid_import_power",
        120.0,
    )
    assert household_reading("to_grid_summation", {"summation_joules": 7_200_000}) == (
        "grid_export_energy",
        2.0,
    )
    assert household_reading("home_usage", {"watts": -3}) == (
        "home_consumption_power",
        0.0,
    )
    assert household_reading("home_usage", {"watts": "x"}) == (
        "home_consumption_power",
        None,
    )
    assert household_reading("something_else", {}) is None
    assert household_reading("to_grid_summation", {"summation_joules": None}) == (
        "grid_export_energy",
        None,
    )


def test_reset_times_out_of_range_are_unknown() -> None:
    """A reset time no datetime can hold gives no last_reset rather than an error."""
    assert timestamp(1e300) is None
    assert timestamp(-1e300) is None
    assert timestamp("1769972064") is None
    assert timestamp(1769972064) == datetime.fromtimestamp(1769972064, UTC)


def test_channel_catalogue() -> None:
    """Energy-dashboard meters carry the right state classes; noisy channels start disabled."""
    plug, sensor, household = (
        CHANNELS[DeviceType.PLUG],
        CHANNELS[DeviceType.SENSOR],
        CHANNELS[DeviceType.HOUSEHOLD],
    )
    assert plug["energy"].state_class is StateClass.TOTAL_INCREASING
    assert sensor["energy"].state_class is StateClass.TOTAL and sensor["energy"].resets
    assert sensor["water_volume"].device_class == "water"
    assert all(
        spec.state_class is StateClass.TOTAL_INCREASING
        for key, spec in household.items()
        if key.endswith("_energy")
    )
    assert not plug["apparent_current"].enabled_by_default
    assert not sensor["average_rssi"].enabled_by_default
    role = sensor["sensor_role"].definition("sensor-1")
    assert role.kind is ChannelKind.ENUM and role.state_class is None
    reset = datetime(2026, 1, 1, tzinfo=UTC)
    assert sensor["energy"].definition("sensor-1", reset).last_reset == reset
    assert plug["energy"].definition("plug-1", reset).last_reset is None
    assert sensor_name("bcddc247d289", "solar") == "Powersensor solar sensor 47d289"
    assert sensor_name("bcddc247d289", "unknown") == "Powersensor sensor 47d289"
