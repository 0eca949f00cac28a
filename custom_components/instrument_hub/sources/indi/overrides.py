"""The user's units for properties INDI gives none: one line per property (or member).

    # device / property [/ member] = unit [, device class]
    Thermostat / targetvector / target = °C, temperature
    Weather Simulator / WEATHER_PARAMETERS / WEATHER_WIND_SPEED = m/s, wind_speed
    CCD Simulator / CCD_GAIN =

Without a member the line applies to every member of the property (a member's own line wins); an empty unit
removes a unit, a missing device class means none. Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

from typing import Final

from .mapping import UnitOverride, UnitOverrides

MAX_UNIT_LENGTH: Final = 32


class OverrideSyntaxError(ValueError):
    """A line that does not read ``device / property [/ member] = unit [, device class]``."""

    def __init__(self, line_number: int, line: str) -> None:
        """Keep where the error is."""
        super().__init__(f"line {line_number}: {line!r}")
        self.line_number = line_number
        self.line = line


def parse_unit_overrides(text: str) -> UnitOverrides:
    """Parse the options' unit lines; raise OverrideSyntaxError for the first line that does not parse."""
    overrides: dict[tuple[str, str, str | None], UnitOverride] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        target, equals, quantity = line.rpartition("=")
        names = [part.strip() for part in target.split("/")]
        if not equals or len(names) not in (2, 3) or not all(names):
            raise OverrideSyntaxError(number, raw)
        unit, _, device_class = (part.strip() for part in quantity.partition(","))
        if len(unit) > MAX_UNIT_LENGTH or "," in device_class:
            raise OverrideSyntaxError(number, raw)
        member = names[2] if len(names) == 3 else None
        overrides[(names[0], names[1], member)] = UnitOverride(
            unit or None, device_class.lower() or None
        )
    return overrides
