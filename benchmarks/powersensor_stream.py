"""Powersensor traffic for the benchmarks, generated deterministically (stdlib only: the pusher imports it).

A household the way a plug streams it: every datagram carries the plug's own ``instant_power``
report, and every third one also the relayed reports of a house mains, a solar and a water sensor
(the shapes of the vendor's fixtures in ``tests/fixtures/powersensor``, not imported: benchmarks do
not depend on ``tests/``). Values change on every report so every state really changes. The
end-to-end rounds carry plug reports only; the last report of round ``r`` has the power
``round_marker(r)``, so the parent knows which state ends the round without being told.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import random
from typing import Any, Final

PLUG_MAC: Final = "246f280487a4"
SENSOR_MACS: Final = {
    "house-net": "bcddc247d1f5",
    "solar": "bcddc247d289",
    "water": "bcddc247d338",
}
MAX_ROUNDS: Final = 200
START: Final = 1772164754.0


def round_marker(round_index: int) -> float:
    """Return the plug power (W) of the last report of a round (never a value of the noise)."""
    return 100000.0 + round_index


def plug_report(
    rng: random.Random, index: int, power: float | None = None
) -> dict[str, Any]:
    """Return one plug report (about 450 bytes, as real ones)."""
    watts = power if power is not None else 60.0 + rng.random() * 10
    volts = 238.0 + rng.random() * 4
    active = watts / volts
    return {
        "reactive_current": 0.08 + rng.random() / 100,
        "type": "instant_power",
        "summation_start": 1770501947.113085,
        "count": 13,
        "duration": 1.039551,
        "role": "appliance",
        "power": watts,
        "unit": "W",
        "device": "plug",
        "source": "BLE",
        "active_current": active,
        "mac": PLUG_MAC,
        "voltage": volts,
        "starttime": START + index,
        "current": active + 0.02,
        "borrowed_summation": 0,
        "summation": 5103988.143331 + index * 65.0,
    }


def sensor_reports(rng: random.Random, index: int) -> list[dict[str, Any]]:
    """Return the house mains, solar and water reports of one 30 s window."""
    common = {
        "starttime": int(START) + index,
        "device": "sensor",
        "type": "instant_power",
        "duration": 30,
        "summation_start": 1769972064,
    }
    house = 400 + rng.randrange(600)
    solar = -rng.randrange(500)
    return [
        {
            **common,
            "raw_rssi": -91,
            "rssi": -89.04 + rng.random(),
            "batteryMicrovolt": 3803104,
            "mac": SENSOR_MACS["house-net"],
            "role": "house-net",
            "power": house,
            "unit": "w",
            "summation": -281230401 + index * 30 * house,
        },
        {
            **common,
            "raw_rssi": -90,
            "rssi": -88.5 + rng.random(),
            "batteryMicrovolt": 4106208,
            "mac": SENSOR_MACS["solar"],
            "role": "solar",
            "power": solar,
            "unit": "w",
            "summation": -906357844 + index * 30 * solar,
        },
        {
            **common,
            "raw_rssi": -89,
            "rssi": -87.03 + rng.random(),
            "batteryMicrovolt": 3612871,
            "mac": SENSOR_MACS["water"],
            "role": "water",
            "power": 92,
            "unit": "L",
            "summation": 1321 + index,
            "average_flow": round(rng.random() * 9, 1),
            "summation_volume": round(132.1 + index * 0.1, 3),
        },
    ]


def datagram(lines: list[dict[str, Any]]) -> bytes:
    """Return the datagram a plug sends for these reports: one JSON object per line."""
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@dataclass(frozen=True, slots=True)
class ParserStream:
    """The parser row's datagrams and how many reports they carry."""

    datagrams: list[bytes]
    reports: int


def parser_stream(datagrams: int, seed: int = 7) -> ParserStream:
    """Return ``datagrams`` datagrams: a plug report each, the sensors' in every third."""
    rng = random.Random(seed)
    data: list[bytes] = []
    reports = 0
    for index in range(datagrams):
        lines = [plug_report(rng, index)]
        if index % 3 == 0:
            lines += sensor_reports(rng, index)
        reports += len(lines)
        data.append(datagram(lines))
    return ParserStream(data, reports)


def e2e_round(round_index: int, reports: int) -> list[bytes]:
    """Return one end-to-end round: ``reports`` datagrams of one plug report each, the marker last."""
    rng = random.Random(round_index)
    first = round_index * reports
    datagrams = [
        datagram([plug_report(rng, first + index)]) for index in range(reports - 1)
    ]
    last = plug_report(rng, first + reports - 1, power=round_marker(round_index))
    datagrams.append(datagram([last]))
    return datagrams


MAX_DATAGRAM: Final = 65507
FLOODS: Final = ("burst", "garbage", "oversized", "lines", "blank")
"""The loop-lag row's inputs: a burst of real plug reports, random bytes, one line filling a whole
datagram, a datagram full of tiny reports, a datagram of nothing but newlines."""


def _tiny_report(index: int) -> bytes:
    return json.dumps(
        {
            "type": "instant_power",
            "device": "plug",
            "mac": PLUG_MAC,
            "unit": "W",
            "starttime": START + index,
            "duration": 1,
            "power": index % 50,
        },
        separators=(",", ":"),
    ).encode()


def flood_datagrams(kind: str, count: int, seed: int = 11) -> list[bytes]:
    """Return ``count`` datagrams of one flood input (``FLOODS``)."""
    rng = random.Random(seed)
    if kind == "burst":
        return [datagram([plug_report(rng, index)]) for index in range(count)]
    if kind == "garbage":
        return [rng.randbytes(rng.randrange(1, 1400)) for _ in range(count)]
    if kind == "oversized":
        line = b'{"type":"instant_power","pad":"' + b"x" * (MAX_DATAGRAM - 40) + b'"}'
        return [line[:MAX_DATAGRAM]] * count
    if kind == "lines":
        lines = b""
        index = 0
        while True:
            line = _tiny_report(index) + b"\n"
            if len(lines) + len(line) > MAX_DATAGRAM:
                break
            lines += line
            index += 1
        return [lines] * count
    if kind == "blank":
        return [b"\n" * MAX_DATAGRAM] * count
    raise ValueError(f"no flood {kind!r}")
