"""Exact running statistics of a numeric channel: min, max, mean and count, O(1) per reading.

Shared by every source whose numeric channels want statistics computed from *every* value (the Gentec
serial source feeds it each pulse before anything is coalesced). No Home Assistant imports.
"""

from __future__ import annotations

from dataclasses import dataclass
import math


@dataclass(frozen=True, slots=True)
class StatisticsSnapshot:
    """The statistics at one moment (None while no value was counted)."""

    minimum: float | None
    maximum: float | None
    mean: float | None
    count: int


class RunningStatistics:
    """Min, max, mean and count over every value added since the last reset.

    The mean is a running (Welford) mean: it does not lose precision the way a sum of many
    readings near each other would, and costs the same O(1) per value. Values that are not finite
    numbers (NaN, infinities) are refused: a device's invalid reading is not a measurement.
    """

    __slots__ = ("_count", "_maximum", "_mean", "_minimum")

    def __init__(self) -> None:
        """Start empty."""
        self._count = 0
        self._minimum = math.inf
        self._maximum = -math.inf
        self._mean = 0.0

    def add(self, value: float) -> bool:
        """Count one value; return False (and count nothing) for a value that is not finite."""
        if not math.isfinite(value):
            return False
        self._count += 1
        self._minimum = min(self._minimum, value)
        self._maximum = max(self._maximum, value)
        self._mean += (value - self._mean) / self._count
        return True

    def reset(self) -> None:
        """Forget every value."""
        self._count = 0
        self._minimum = math.inf
        self._maximum = -math.inf
        self._mean = 0.0

    @property
    def count(self) -> int:
        """Return how many values were counted."""
        return self._count

    def snapshot(self) -> StatisticsSnapshot:
        """Return the current figures."""
        if not self._count:
            return StatisticsSnapshot(None, None, None, 0)
        return StatisticsSnapshot(self._minimum, self._maximum, self._mean, self._count)
