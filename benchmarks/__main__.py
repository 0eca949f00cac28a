"""Run the benchmark rows and print their per-event cost as multiples of Home Assistant's state write.

``python -m benchmarks [--quick] [--repeats R] [--events N] [--only KEY ...]`` (``scripts/bench``).
Every row runs on its own production-like event loop (debug off), the floor first; each reports the
median of its repeats (min and max beside it) in µs per event and the ratio to the floor's median.
A benchmark, not a test: nothing is asserted about the figures. The exit status is 0 when every
row measured, 1 when one could not (its error is printed, the others still run).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
import logging
import os
from pathlib import Path
import platform
import sys
from typing import Final

from homeassistant.const import __version__ as HA_VERSION

from .harness import environment_notes, median_min_max, new_event_loop
from .rows import BenchError, Measurement, Row, Settings, load_rows

_LOGGER = logging.getLogger("benchmarks")

DEFAULT_EVENTS: Final = 2000
DEFAULT_REPEATS: Final = 5
QUICK_EVENTS: Final = 200
QUICK_REPEATS: Final = 2
MAX_EVENTS: Final = 200_000
MAX_REPEATS: Final = 100


def _parse_args(argv: Sequence[str] | None, rows: Sequence[Row]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Per-event CPU cost of the Instrument Hub pipeline, as ratios to Home "
        "Assistant's own state write.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run (fewer events and repeats)",
    )
    parser.add_argument(
        "--events",
        type=int,
        help=f"events per repeat (default {DEFAULT_EVENTS}, --quick {QUICK_EVENTS})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"measured repeats per row (default {DEFAULT_REPEATS}, --quick {QUICK_REPEATS})",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[entry.key for entry in rows if not entry.floor],
        help="run only this row (repeatable); the floor always runs",
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the table as Markdown to FILE (what the README's Performance section quotes)",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if not 10 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be 10..{MAX_EVENTS}")
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be 1..{MAX_REPEATS}")
    return args


def _run(entry: Row, settings: Settings) -> Measurement:
    """Run one row on a fresh production-like loop."""
    with asyncio.Runner(debug=False, loop_factory=new_event_loop) as runner:
        return runner.run(entry.run(settings))


def _table(lines: list[list[str]]) -> str:
    widths = [
        max(len(line[column]) for line in lines) for column in range(len(lines[0]))
    ]
    right = {1, 2, 3}
    out = []
    for line in lines:
        cells = [
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _markdown(header: str, lines: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = [header, "", "| " + " | ".join(lines[0]) + " |", "|---|---:|---:|---:|---|"]
    out.extend(
        "| " + " | ".join(cell(text) for text in line) + " |" for line in lines[1:]
    )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rows, print the header and the table; 1 when a row could not measure."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Once per run, about the integration under test being a custom one: known, not news.
    logging.getLogger("homeassistant.loader").setLevel(logging.ERROR)
    rows = load_rows()
    args = _parse_args(argv, rows)
    settings = Settings(events=args.events, repeats=args.repeats, quick=args.quick)
    selected = [
        entry
        for entry in rows
        if entry.floor or not args.only or entry.key in args.only
    ]
    out = sys.stdout
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    header = (
        f"Home Assistant {HA_VERSION} · Python {platform.python_version()} "
        f"({platform.python_implementation()}) · {os.cpu_count()} CPUs"
        + (f" ({usable} usable)" if usable is not None else "")
        + f" · asyncio debug off · {settings.events} events × {settings.repeats} repeats"
        + (" (quick)" if settings.quick else "")
    )
    out.write(header + "\n")
    for note in environment_notes():
        out.write(f"note: {note}\n")
    out.flush()
    lines = [["row", "µs/event (median)", "min–max", "× floor", "notes"]]
    floor_us: float | None = None
    failed = False
    for entry in selected:
        try:
            measurement = _run(entry, settings)
        except BenchError as err:
            failed = True
            lines.append([entry.title, "—", "—", "—", f"FAILED: {err}"])
            continue
        except Exception:
            _LOGGER.exception("Row %s failed", entry.key)
            failed = True
            lines.append([entry.title, "—", "—", "—", "FAILED (traceback above)"])
            continue
        median, low, high = median_min_max(measurement.samples_us)
        if entry.floor:
            floor_us = median
        ratio = f"{median / floor_us:.1f}" if floor_us else "—"
        lines.append(
            [
                entry.title,
                f"{median:.2f}",
                f"{low:.2f}–{high:.2f}",
                ratio,
                "; ".join(measurement.notes),
            ]
        )
    out.write(_table(lines) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(_markdown(header, lines), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
