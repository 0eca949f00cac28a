"""The registry of benchmark rows: each source kind adds its own rows with the ``row`` decorator.

A row is an async function that takes the run's settings, does its own warm-up and repeats (only it
knows what one "event" of its pipeline is) and returns one cost per repeat in µs per event, plus
notes worth printing next to them. Rows are compared with the floor (Home Assistant's own state
write), so the table reads as "this pipeline costs k state writes per event" and stays meaningful
across machines. ``ROW_MODULES`` lists the modules that register rows; a new source kind adds its
module there.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
import importlib
from typing import Any, Final

ROW_MODULES: Final = (
    "benchmarks.floor",
    "benchmarks.indi",
    "benchmarks.indi_floods",
    "benchmarks.powersensor",
    "benchmarks.hololinked",
    "benchmarks.gentec",
    "benchmarks.scrutiny",
    "benchmarks.core",
)
"""Modules whose import registers rows; the floor's module comes first."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the command line asked for."""

    events: int
    repeats: int
    quick: bool


@dataclass(slots=True)
class Measurement:
    """One row's result: a cost per repeat (µs per event) and notes for the table."""

    samples_us: list[float]
    notes: list[str] = field(default_factory=list)


type RowFunction = Callable[[Settings], Coroutine[Any, Any, Measurement]]


@dataclass(frozen=True, slots=True)
class Row:
    """A registered row."""

    key: str
    title: str
    source: str
    run: RowFunction
    floor: bool


ROWS: list[Row] = []


class BenchError(Exception):
    """A row could not measure (setup failed, a wait timed out): reported, never hidden."""


def row(
    key: str, title: str, *, source: str, floor: bool = False
) -> Callable[[RowFunction], RowFunction]:
    """Register a row under ``key`` (for ``--only``), shown as ``title``; ``floor`` marks the reference."""

    def register(function: RowFunction) -> RowFunction:
        if any(existing.key == key for existing in ROWS):
            raise ValueError(f"benchmark row {key!r} registered twice")
        ROWS.append(Row(key, title, source, function, floor))
        return function

    return register


def load_rows() -> list[Row]:
    """Import every row module and return the rows, the floor first, then in registration order."""
    for module in ROW_MODULES:
        importlib.import_module(module)
    floors = [entry for entry in ROWS if entry.floor]
    if len(floors) != 1:
        raise RuntimeError(f"expected exactly one floor row, found {len(floors)}")
    return floors + [entry for entry in ROWS if not entry.floor]
