r"""hololinked traffic for the benchmarks, deterministic (stdlib only: the pusher imports it).

* ``thing_description``: the TD of an energy meter laid out like the one captured from hololinked
  0.4.2 (tests/fixtures/hololinked/td.json; not imported: the benchmarks must not depend on tests/),
  with its two events and an observable property, hrefs on the authority given.
* ``frame``: one SSE frame exactly as hololinked's EventHandler writes it (``data: <JSON>\n\n``).
* ``parser_stream``: a realistic mix of data points (about 1 mJ, now and then null) and statistics,
  seeded, as the list of chunks a subscription receives (one frame per chunk, as tornado flushes).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import random
from typing import Any, Final

THING_ID: Final = "energy-meter"
DATA_POINT: Final = "data_point_event"
STATISTICS: Final = "statistics_event"
ENERGY_ENTITY: Final = "sensor.energy_meter_energy"
PULSES_ENTITY: Final = "sensor.energy_meter_pulse_count"
AVG_ENTITY: Final = "sensor.energy_meter_avg"
"""Shows the marker of a round's last statistics, as the energy shows that of its last data point."""
DATA_POINT_ENTITY: Final = "event.energy_meter_data_point_event"
PATHS: Final = {DATA_POINT: "data-point-event", STATISTICS: "statistics-event"}
PROPERTIES: Final = {"wavelength": 1064.0, "state": None}


def _form(
    origin: str, path: str, op: str, method: str, sse: bool = False
) -> dict[str, str]:
    form = {
        "href": f"{origin}/{THING_ID}/{path}",
        "op": op,
        "htv:methodName": method,
        "contentType": "application/json",
    }
    if sse:
        form["subprotocol"] = "sse"
    return form


def thing_description(origin: str) -> dict[str, Any]:
    """Return the meter's TD with every href on ``origin`` (``http://host:port``)."""
    number = {"type": "number", "unit": "J"}
    return {
        "context": ["https://www.w3.org/2022/wot/td/v1.1"],
        "id": THING_ID,
        "title": "GentecMaestroEnergyMeter",
        "properties": {
            "wavelength": {
                "type": "number",
                "unit": "nm",
                "minimum": 190,
                "maximum": 25000,
                "observable": True,
                "forms": [
                    _form(origin, "wavelength", "readproperty", "GET"),
                    _form(origin, "wavelength", "writeproperty", "PUT"),
                    _form(
                        origin,
                        "wavelength/change-event",
                        "observeproperty",
                        "GET",
                        sse=True,
                    ),
                ],
            },
            "state": {
                "readOnly": True,
                "oneOf": [{"type": "string"}, {"type": "null"}],
                "observable": True,
                "forms": [
                    _form(origin, "state", "readproperty", "GET"),
                    _form(
                        origin, "state/change-event", "observeproperty", "GET", sse=True
                    ),
                ],
            },
        },
        "events": {
            DATA_POINT: {
                "data": {
                    "type": "object",
                    "properties": {"timestamp": {"type": "number"}, "energy": number},
                },
                "forms": [
                    _form(origin, PATHS[DATA_POINT], "subscribeevent", "GET", sse=True)
                ],
            },
            STATISTICS: {
                "data": {
                    "type": "object",
                    "properties": {
                        "min": number,
                        "max": number,
                        "avg": number,
                        "pulse_count": {"type": "integer", "minimum": 0},
                    },
                },
                "forms": [
                    _form(origin, PATHS[STATISTICS], "subscribeevent", "GET", sse=True)
                ],
            },
        },
        "actions": {},
        "security": ["nosec"],
        "securityDefinitions": {"nosec": {"scheme": "nosec"}},
    }


def frame(payload: object) -> bytes:
    """Return one SSE frame as hololinked 0.4.2 writes it (compact JSON, NaN as null)."""
    return b"data: %s\n\n" % json.dumps(payload, separators=(",", ":")).encode()


@dataclass(slots=True)
class Meter:
    """The simulated pulses and their running statistics (seeded)."""

    rng: random.Random
    pulses: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None

    def data_point(self, timestamp: float) -> dict[str, object]:
        """Return the next pulse: about 1 mJ, every 20th without data (null)."""
        self.pulses += 1
        if self.pulses % 20 == 0:
            return {"timestamp": timestamp, "energy": None}
        energy = self.rng.gauss(1e-3, 5e-5)
        self.total += energy
        self.low = energy if self.low is None else min(self.low, energy)
        self.high = energy if self.high is None else max(self.high, energy)
        return {"timestamp": timestamp, "energy": energy}

    def statistics(self) -> dict[str, object]:
        """Return the statistics after the last pulse."""
        valid = self.pulses - self.pulses // 20
        return {
            "min": self.low,
            "max": self.high,
            "avg": self.total / valid if valid else None,
            "pulse_count": valid,
        }


def parser_stream(events: int, seed: int = 1) -> list[bytes]:
    """Return ``events`` frames (data points and statistics alternating), one chunk each."""
    meter = Meter(random.Random(seed))
    chunks: list[bytes] = []
    for index in range(events):
        if index % 2 == 0:
            chunks.append(frame(meter.data_point(1795236054.0 + index * 0.01)))
        else:
            chunks.append(frame(meter.statistics()))
    return chunks


FLOODS: Final = ("burst", "garbage", "long_line", "many_lines", "tiny")
"""The loop-lag row's inputs: real data points back to back, random bytes, one 2 MiB line (over the
parser's 1 MiB bound), one event of 20,000 ``data:`` lines, and a stream of near-empty events."""


def flood_frames(kind: str, count: int, seed: int = 5) -> list[bytes]:
    """Return ``count`` chunks of one flood input (``FLOODS``), each as the server writes it."""
    rng = random.Random(seed)
    if kind == "burst":
        meter = Meter(rng)
        return [frame(meter.data_point(1795236054.0 + index)) for index in range(count)]
    if kind == "garbage":
        return [rng.randbytes(rng.randrange(1, 4096)) + b"\n\n" for _ in range(count)]
    if kind == "long_line":
        return [b"data: " + b"7" * (2 * 1024 * 1024) + b"\n\n"] * count
    if kind == "many_lines":
        return [b"data: 1\n" * 20000 + b"\n"] * count
    if kind == "tiny":
        return [b"data: 0\n\n" * 1000] * count
    raise ValueError(f"no flood {kind!r}")
