"""INDI traffic for the benchmarks, generated deterministically (stdlib only: the pusher imports it).

Two kinds of traffic:

* the end-to-end plan: one device (``Thermostat``) with three number vectors whose definitions are
  copied from the captures in ``tests/fixtures/indi`` (not imported: the benchmark must not depend
  on ``tests/``), then rounds of ``setNumberVector`` elements with changing values. The parent (Home
  Assistant) and the pusher process both build the plan from the same arguments, so the parent knows
  which entity and value end each round without being told over the wire.
* the parser stream: a realistic mix of set vectors of every kind, a few definitions, messages and
  an occasional small BLOB, built with a seeded RNG so every run parses the same bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import random
import textwrap
from typing import Final

# --------------------------------------------------------------------------------------------------
# End to end: one device, three number vectors

E2E_DEVICE: Final = "Thermostat"

E2E_DEFINITIONS: Final = (
    # tests/fixtures/indi/capture_thermo.txt, verbatim: read-only -> sensor (temperature, °C)
    '<defNumberVector device="Thermostat" name="temperaturevector" label="Temperature" group="Values" state="Ok" perm="ro" timestamp="2026-11-21T04:40:38.454175"><defNumber name="temperature" label="temperature" format="%3.1f" min="-50" max="99" step="0">19.60</defNumber></defNumberVector>',
    # tests/fixtures/indi/capture_thermo.txt, verbatim: writable -> number
    '<defNumberVector device="Thermostat" name="targetvector" label="Target" group="Values" state="Ok" perm="rw" timestamp="2026-11-21T04:40:38.454217" timeout="0"><defNumber name="target" label="target" format="%3.1f" min="-50" max="99" step="0">15.00</defNumber></defNumberVector>',
    # tests/fixtures/indi/capture_extras.txt, moved from device "Extras" to "Thermostat": read-only -> sensor
    '<defNumberVector device="Thermostat" name="havector" label="Hour angle" group="Status" state="Ok" perm="ro" timestamp="2026-11-21T04:41:07.703677"><defNumber name="hourangle" label="Hour angle" format="%010.6m" min="0" max="24" step="0">3.7625</defNumber></defNumberVector>',
)


@dataclass(frozen=True, slots=True)
class E2EChannel:
    """One pushed number: its vector and member, and the entity Home Assistant shows it as."""

    vector: str
    member: str
    entity_id: str


E2E_CHANNELS: Final = (
    E2EChannel("temperaturevector", "temperature", "sensor.thermostat_temperature"),
    E2EChannel("targetvector", "target", "number.thermostat_target"),
    E2EChannel("havector", "hourangle", "sensor.thermostat_hour_angle"),
)
MAX_ROUNDS: Final = 150
"""The round markers below stay distinct (and within the temperature's declared range) up to here."""

_SAWTOOTH_MIN = 100  # hundredths: values run 1.00, 1.01, ... 23.99, 1.00, ...
_SAWTOOTH_SPAN = 2300
_E2E_EPOCH: Final = datetime(2026, 11, 21, 4, 40, 40, tzinfo=UTC)


def round_marker(round_index: int) -> float:
    """Return the value that ends a round: negative, so no other value of the plan has it."""
    if not 0 <= round_index < MAX_ROUNDS:
        raise ValueError(f"round {round_index} outside 0..{MAX_ROUNDS - 1}")
    return -1.0 - round_index * 0.25


def final_channel() -> E2EChannel:
    """Return the channel whose marker value ends every round (the temperature)."""
    return E2E_CHANNELS[0]


def e2e_definitions() -> bytes:
    """Return the definitions the pusher answers getProperties with."""
    return "".join(line + "\n" for line in E2E_DEFINITIONS).encode()


def e2e_round(round_index: int, events: int) -> bytes:
    """Return the ``events`` set elements of one round, one number member each.

    Events go round-robin over the three channels, so consecutive events touch different entities.
    Each channel's value steps by 0.01 on a sawtooth (it never repeats from one event of a channel
    to its next, so every event is a state change); the round's last event sets the temperature to
    the round's marker.
    """
    if events < 1:
        raise ValueError("a round has at least one event")
    channels = len(E2E_CHANNELS)
    first = round_index * events
    parts: list[str] = []
    for offset in range(events):
        index = first + offset
        if offset == events - 1:
            channel = final_channel()
            value = f"{round_marker(round_index):.2f}"
        else:
            channel = E2E_CHANNELS[index % channels]
            step = index // channels
            value = f"{(_SAWTOOTH_MIN + step % _SAWTOOTH_SPAN) / 100:.2f}"
        stamp = (_E2E_EPOCH + timedelta(milliseconds=index)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f"
        )
        parts.append(
            f'<setNumberVector device="{E2E_DEVICE}" name="{channel.vector}" state="Ok" '
            f'timestamp="{stamp}"><oneNumber name="{channel.member}">{value}</oneNumber>'
            "</setNumberVector>\n"
        )
    return "".join(parts).encode()


# --------------------------------------------------------------------------------------------------
# Parser stream: a realistic mix


@dataclass(frozen=True, slots=True)
class _NumberVector:
    device: str
    name: str
    label: str
    members: tuple[tuple[str, str, float, float], ...]  # name, format, low, high


@dataclass(frozen=True, slots=True)
class _SwitchVector:
    device: str
    name: str
    label: str
    rule: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Vector:
    device: str
    name: str
    label: str
    members: tuple[str, ...]


_NUMBERS: Final = (
    _NumberVector(
        "Telescope Simulator",
        "EQUATORIAL_EOD_COORD",
        "Eq. Coordinates",
        (("RA", "%010.6m", 0.0, 24.0), ("DEC", "%010.6m", -90.0, 90.0)),
    ),
    _NumberVector(
        "Telescope Simulator",
        "HORIZONTAL_COORD",
        "Horizontal",
        (("AZ", "%010.6m", 0.0, 360.0), ("ALT", "%010.6m", -90.0, 90.0)),
    ),
    _NumberVector(
        "CCD Simulator",
        "CCD_TEMPERATURE",
        "Temperature",
        (("CCD_TEMPERATURE_VALUE", "%5.2f", -20.0, 25.0),),
    ),
    _NumberVector(
        "CCD Simulator",
        "CCD_EXPOSURE",
        "Expose",
        (("CCD_EXPOSURE_VALUE", "%5.2f", 0.0, 300.0),),
    ),
    _NumberVector(
        "Focuser Simulator",
        "ABS_FOCUS_POSITION",
        "Absolute Position",
        (("FOCUS_ABSOLUTE_POSITION", "%6.0f", 0.0, 100000.0),),
    ),
    _NumberVector(
        "Weather Station",
        "WEATHER_PARAMETERS",
        "Parameters",
        (
            ("WEATHER_TEMPERATURE", "%4.2f", -30.0, 40.0),
            ("WEATHER_HUMIDITY", "%4.2f", 0.0, 100.0),
            ("WEATHER_WIND_SPEED", "%4.2f", 0.0, 40.0),
            ("WEATHER_RAIN_HOUR", "%4.2f", 0.0, 20.0),
            ("WEATHER_SKY_TEMPERATURE", "%4.2f", -40.0, 10.0),
        ),
    ),
)
_SWITCHES: Final = (
    _SwitchVector(
        "Telescope Simulator",
        "TELESCOPE_TRACK_STATE",
        "Tracking",
        "OneOfMany",
        ("TRACK_ON", "TRACK_OFF"),
    ),
    _SwitchVector(
        "CCD Simulator",
        "CCD_FRAME_TYPE",
        "Frame Type",
        "OneOfMany",
        ("FRAME_LIGHT", "FRAME_BIAS", "FRAME_DARK", "FRAME_FLAT"),
    ),
    _SwitchVector(
        "Weather Station",
        "CONNECTION",
        "Connection",
        "OneOfMany",
        ("CONNECT", "DISCONNECT"),
    ),
)
_TEXTS: Final = (
    _Vector("Telescope Simulator", "TIME_UTC", "UTC", ("UTC", "OFFSET")),
    _Vector(
        "CCD Simulator", "FITS_HEADER", "FITS Header", ("FITS_OBSERVER", "FITS_OBJECT")
    ),
)
_LIGHTS: Final = (
    _Vector(
        "Weather Station",
        "WEATHER_STATUS",
        "Status",
        (
            "WEATHER_TEMPERATURE",
            "WEATHER_HUMIDITY",
            "WEATHER_WIND_SPEED",
            "WEATHER_RAIN_HOUR",
        ),
    ),
    _Vector("Focuser Simulator", "FOCUS_STATUS", "Status", ("FOCUS_MOVING",)),
)
_BLOB: Final = _Vector("CCD Simulator", "CCD1", "Image", ("CCD1",))
_LIGHT_STATES: Final = ("Idle", "Ok", "Ok", "Ok", "Busy", "Alert")
_WORDS: Final = (
    "M31",
    "NGC 7000",
    "flat field",
    "Jane & John",
    "<dark>",
    'M42 "Orion"',
    "",
)
_KINDS: Final = ("number", "switch", "text", "light", "message", "def", "blob")
_KIND_WEIGHTS: Final = (55, 14, 9, 14, 4, 3, 1)
_STREAM_EPOCH: Final = datetime(2026, 11, 21, 21, 0, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ParserStream:
    """A generated stream and what it holds."""

    data: bytes
    elements: int
    counts: dict[str, int]


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_attr(text: str) -> str:
    return _xml_text(text).replace('"', "&quot;")


class _StreamWriter:
    """Builds elements one by one from a seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.moment = _STREAM_EPOCH

    def stamp(self) -> str:
        self.moment += timedelta(microseconds=self.rng.randrange(200, 20000))
        return self.moment.strftime("%Y-%m-%dT%H:%M:%S.%f")

    def number_value(self, low: float, high: float) -> str:
        # Drivers send numbers as plain decimals of varying length ("%g"-like), a few as integers.
        value = self.rng.uniform(low, high)
        return f"{value:.{self.rng.choice((0, 2, 6, 9))}f}"

    def def_number(self, vector: _NumberVector) -> str:
        members = "".join(
            f'<defNumber name="{name}" label="{name.title()}" format="{fmt}" min="{low:g}" '
            f'max="{high:g}" step="0">\n{self.number_value(low, high)}\n</defNumber>'
            for name, fmt, low, high in vector.members
        )
        return (
            f'<defNumberVector device="{vector.device}" name="{vector.name}" label="{vector.label}" '
            f'group="Main Control" state="Idle" perm="ro" timeout="60" timestamp="{self.stamp()}">'
            f"{members}</defNumberVector>"
        )

    def def_switch(self, vector: _SwitchVector) -> str:
        on = self.rng.randrange(len(vector.members))
        members = "".join(
            f'<defSwitch name="{name}" label="{name.title()}">\n{"On" if i == on else "Off"}\n</defSwitch>'
            for i, name in enumerate(vector.members)
        )
        return (
            f'<defSwitchVector device="{vector.device}" name="{vector.name}" label="{vector.label}" '
            f'group="Main Control" state="Ok" perm="rw" rule="{vector.rule}" timeout="60" '
            f'timestamp="{self.stamp()}">{members}</defSwitchVector>'
        )

    def def_text(self, vector: _Vector) -> str:
        members = "".join(
            f'<defText name="{name}" label="{name.title()}">\n{_xml_text(self.rng.choice(_WORDS))}\n</defText>'
            for name in vector.members
        )
        return (
            f'<defTextVector device="{vector.device}" name="{vector.name}" label="{vector.label}" '
            f'group="Options" state="Idle" perm="rw" timeout="60" timestamp="{self.stamp()}">'
            f"{members}</defTextVector>"
        )

    def def_light(self, vector: _Vector) -> str:
        members = "".join(
            f'<defLight name="{name}" label="{name.title()}">Idle</defLight>'
            for name in vector.members
        )
        return (
            f'<defLightVector device="{vector.device}" name="{vector.name}" label="{vector.label}" '
            f'group="Status" state="Idle" timestamp="{self.stamp()}">{members}</defLightVector>'
        )

    def def_blob(self, vector: _Vector) -> str:
        return (
            f'<defBLOBVector device="{vector.device}" name="{vector.name}" label="{vector.label}" '
            f'group="Image Info" state="Idle" perm="ro" timestamp="{self.stamp()}">'
            f'<defBLOB name="{vector.members[0]}" label="Image"/></defBLOBVector>'
        )

    def any_def(self) -> str:
        pick = self.rng.randrange(5)
        if pick == 0:
            return self.def_number(self.rng.choice(_NUMBERS))
        if pick == 1:
            return self.def_switch(self.rng.choice(_SWITCHES))
        if pick == 2:
            return self.def_text(self.rng.choice(_TEXTS))
        if pick == 3:
            return self.def_light(self.rng.choice(_LIGHTS))
        return self.def_blob(_BLOB)

    def set_number(self) -> str:
        vector = self.rng.choice(_NUMBERS)
        members = "".join(
            f'<oneNumber name="{name}">\n{self.number_value(low, high)}\n</oneNumber>'
            for name, _fmt, low, high in vector.members
        )
        return (
            f'<setNumberVector device="{vector.device}" name="{vector.name}" state="Ok" '
            f'timeout="60" timestamp="{self.stamp()}">{members}</setNumberVector>'
        )

    def set_switch(self) -> str:
        vector = self.rng.choice(_SWITCHES)
        on = self.rng.randrange(len(vector.members))
        members = "".join(
            f'<oneSwitch name="{name}">\n{"On" if i == on else "Off"}\n</oneSwitch>'
            for i, name in enumerate(vector.members)
        )
        return (
            f'<setSwitchVector device="{vector.device}" name="{vector.name}" state="Ok" '
            f'timeout="60" timestamp="{self.stamp()}">{members}</setSwitchVector>'
        )

    def set_text(self) -> str:
        vector = self.rng.choice(_TEXTS)
        members = "".join(
            f'<oneText name="{name}">\n{_xml_text(self.rng.choice(_WORDS))}\n</oneText>'
            for name in vector.members
        )
        return (
            f'<setTextVector device="{vector.device}" name="{vector.name}" state="Ok" '
            f'timeout="60" timestamp="{self.stamp()}">{members}</setTextVector>'
        )

    def set_light(self) -> str:
        vector = self.rng.choice(_LIGHTS)
        members = "".join(
            f'<oneLight name="{name}">{self.rng.choice(_LIGHT_STATES)}</oneLight>'
            for name in vector.members
        )
        return (
            f'<setLightVector device="{vector.device}" name="{vector.name}" '
            f'state="{self.rng.choice(_LIGHT_STATES)}" timestamp="{self.stamp()}">{members}'
            "</setLightVector>"
        )

    def message(self) -> str:
        device = self.rng.choice(_NUMBERS).device
        text = (
            f"[INFO] {_xml_attr(self.rng.choice(_WORDS))} {self.rng.randrange(10000)}"
        )
        return (
            f'<message device="{device}" timestamp="{self.stamp()}" message="{text}"/>'
        )

    def blob(self) -> str:
        # A small file (a preview, a log): random bytes, base64 wrapped at 72 columns like indilib.
        raw = self.rng.randbytes(self.rng.randrange(512, 8192))
        text = "\n".join(textwrap.wrap(base64.b64encode(raw).decode(), 72))
        member = _BLOB.members[0]
        return (
            f'<setBLOBVector device="{_BLOB.device}" name="{_BLOB.name}" state="Ok" '
            f'timestamp="{self.stamp()}"><oneBLOB name="{member}" size="{len(raw)}" '
            f'format=".fits">\n{text}\n</oneBLOB></setBLOBVector>'
        )


def parser_stream(elements: int, seed: int = 20261121) -> ParserStream:
    """Return a stream of ``elements`` top-level elements: every definition first, then a mix."""
    writer = _StreamWriter(seed)
    parts = [
        *(writer.def_number(vector) for vector in _NUMBERS),
        *(writer.def_switch(vector) for vector in _SWITCHES),
        *(writer.def_text(vector) for vector in _TEXTS),
        *(writer.def_light(vector) for vector in _LIGHTS),
        writer.def_blob(_BLOB),
    ]
    if elements < len(parts):
        raise ValueError(f"a parser stream has at least {len(parts)} elements")
    counts = dict.fromkeys(_KINDS, 0)
    counts["def"] = len(parts)
    builders = {
        "number": writer.set_number,
        "switch": writer.set_switch,
        "text": writer.set_text,
        "light": writer.set_light,
        "message": writer.message,
        "def": writer.any_def,
        "blob": writer.blob,
    }
    while len(parts) < elements:
        kind = writer.rng.choices(_KINDS, _KIND_WEIGHTS)[0]
        counts[kind] += 1
        parts.append(builders[kind]())
    data = "".join(part + "\n" for part in parts).encode()
    return ParserStream(data=data, elements=len(parts), counts=counts)
