"""Entity names from a device's own labels: tidied, with the unit a label states, unique within the device.

A label such as "Temperature (C)" or "Period (ms)" states its unit; the unit becomes the channel's and the
name loses the parenthesis ("Temperature" in °C). Names must be unique within a device: indilib's cameras label
CCD_FRAME, GUIDER_FRAME and CCD_STREAM_FRAME all "Frame", so where names collide the group is put in front
("Image Settings Frame Left", "Guider Head Frame Left"), and where even that collides the property's name is
added ("Abort (CCD_ABORT_EXPOSURE)"). Every channel whose name is in a collision is renamed, whichever came
first, so the result does not depend on the order in which the driver defined them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import functools
import re
from typing import Final

from .standard import (
    ARCSEC_PER_SECOND,
    CELSIUS,
    DEGREES,
    HECTOPASCAL,
    HOURS,
    KELVIN,
    METRES,
    MICROMETRES,
    MILLIMETRES,
    MILLISECONDS,
    PERCENT,
    PIXELS,
    SECONDS,
    Quantity,
)

_ARCSECONDS: Final = Quantity("″")
_ARCMINUTES: Final = Quantity("′")
_SPEED: Final = Quantity("km/h", "speed")
_MICROSECONDS: Final = Quantity(
    "μs", "duration"
)  # Home Assistant spells it with the Greek mu
_MINUTES: Final = Quantity("min", "duration")

LABEL_UNITS: Final[Mapping[str, Quantity]] = {
    **dict.fromkeys(("c", "°c", "degc", "deg c", "celsius"), CELSIUS),
    **dict.fromkeys(("k", "kelvin"), KELVIN),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), SECONDS),
    **dict.fromkeys(("ms", "msec", "milliseconds"), MILLISECONDS),
    **dict.fromkeys(("us", "µs", "μs", "usec", "microseconds"), _MICROSECONDS),
    **dict.fromkeys(("min", "mins", "minutes"), _MINUTES),
    **dict.fromkeys(("m", "meters", "metres"), METRES),
    **dict.fromkeys(("mm", "millimeters", "millimetres"), MILLIMETRES),
    **dict.fromkeys(("um", "µm", "microns"), MICROMETRES),
    **dict.fromkeys(("%", "percent"), PERCENT),
    **dict.fromkeys(("deg", "degs", "degree", "degrees", "°"), DEGREES),
    **dict.fromkeys(("hh:mm:ss", "hh:mm:ss.s", "hh:mm", "h:m:s", "hours"), HOURS),
    **dict.fromkeys(("dd:mm:ss", "dd:mm:ss.s", "dd:mm", "d:m:s", "ddd:mm:ss"), DEGREES),
    **dict.fromkeys(("arcsec", "arcsecs", "arcsecond", "arcseconds", '"'), _ARCSECONDS),
    **dict.fromkeys(("arcmin", "arcmins", "arcminute", "arcminutes", "'"), _ARCMINUTES),
    **dict.fromkeys(("arcsec/s", "arcsecs/s", '"/s'), ARCSEC_PER_SECOND),
    **dict.fromkeys(("kph", "km/h", "kmh"), _SPEED),
    "m/s": Quantity("m/s", "speed"),
    **dict.fromkeys(("hpa", "mbar"), Quantity(HECTOPASCAL.unit, "pressure")),
    "c/min": Quantity("°C/min"),
    **dict.fromkeys(("px", "pixels"), PIXELS),
    "mb": Quantity("MB", "data_size"),
    **dict.fromkeys(("mag", "magnitudes"), Quantity("mag")),
    "v": Quantity("V", "voltage"),
    "a": Quantity("A", "current"),
    "w": Quantity("W", "power"),
    "rpm": Quantity("rpm"),
}
"""Units stated in a label's trailing parenthesis ("Temperature (C)"), lower case."""

_TRAILING_PARENTHESIS = re.compile(r"\s*\(([^()]*)\)\s*\Z")
_SLUG_SEPARATORS = re.compile(r"[^0-9a-z]+")


def tidy(label: str) -> str:
    """Return a label without leading, trailing or repeated whitespace ("Left " -> "Left")."""
    return " ".join(label.split())


def label_unit(label: str) -> tuple[str, Quantity | None]:
    """Split a stated unit off a label: "Period (ms)" -> ("Period", ms); other labels stay whole."""
    match = _TRAILING_PARENTHESIS.search(label)
    if match is None:
        return label, None
    quantity = LABEL_UNITS.get(" ".join(match.group(1).lower().split()))
    if quantity is None or match.start() == 0:
        return label, None
    return label[: match.start()], quantity


def without_unit(label: str) -> str:
    """Return a label without a trailing parenthesis that states a unit."""
    return label_unit(label)[0]


def member_name(vector_label: str, member_label: str) -> str:
    """Return the name of one member of several: "UTC" + "UTC Time" is "UTC Time", not "UTC UTC Time"."""
    if member_label.lower().startswith(f"{vector_label.lower()} "):
        return member_label
    return f"{vector_label} {member_label}"


@functools.lru_cache(maxsize=4096)
def slug(name: str) -> str:
    """Return what Home Assistant's entity ids make of a name, roughly: lower case, words joined by _.

    Cached: every definition re-checks the names of its device's channels, which rarely change.
    """
    return _SLUG_SEPARATORS.sub("_", name.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class NameCandidate:
    """A channel's names from plainest to most specific; the first that is unique in its device is used.

    ``detail`` is the member's label of a one-member vector (whose plain name is the vector's label) when
    it says something the vector's label does not ("Backlash" + "Steps").
    """

    key: str
    plain: str
    group: str | None
    vector: str
    member: str | None
    detail: str | None = None

    def at(self, level: int) -> str:
        """Return the name at a level (0 plain, 1 group, 2 member label, 3 vector, 4 vector and member)."""
        if level == 0:
            return self.plain
        if level == 1:
            return f"{self.group} {self.plain}" if self.group else self.plain
        if level == 2:
            return f"{self.plain} {self.detail}" if self.detail else self.plain
        if level == 3 or self.member is None:
            return f"{self.plain} ({self.vector})"
        return f"{self.plain} ({self.vector} {self.member})"


MAX_LEVEL: Final = 4


def unique_names(candidates: Iterable[NameCandidate]) -> dict[str, str]:
    """Return channel key -> name, unique (as entity ids compare them) within the given channels.

    Channels whose names collide move to the next level together, until they differ; the last level
    carries the vector and member names, which INDI keeps unique.
    """
    entries = list(candidates)
    levels = dict.fromkeys((entry.key for entry in entries), 0)
    for _ in range(MAX_LEVEL):
        names = {entry.key: entry.at(levels[entry.key]) for entry in entries}
        counts = Counter(slug(name) for name in names.values())
        colliding = [entry for entry in entries if counts[slug(names[entry.key])] > 1]
        if not colliding:
            return names
        for entry in colliding:
            levels[entry.key] = min(levels[entry.key] + 1, MAX_LEVEL)
    return {entry.key: entry.at(levels[entry.key]) for entry in entries}


__all__ = [
    "LABEL_UNITS",
    "NameCandidate",
    "label_unit",
    "member_name",
    "slug",
    "tidy",
    "unique_names",
    "without_unit",
]
