"""The load generators' side of their line protocol with the bench: commands on stdin, answers on stdout.

Standard library only (the generators run as their own processes and import no Home Assistant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import sys

type Answer = Callable[[list[str]], Sequence[str] | None]
"""Return the lines that answer a command (its words), or None for a command it does not take."""


def say(line: str) -> None:
    """Tell the bench one line (flushed at once: it waits for it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_commands(answer: Answer, limit: int) -> None:
    """Answer at most ``limit`` commands, until ``quit`` or the end of stdin; others are errors."""
    for _ in range(limit):
        line = sys.stdin.readline()
        words = line.split()
        if not words or words[0] == "quit":
            return
        lines = answer(words)
        if lines is None:
            say(f"error {line.strip()!r}")
            continue
        for reply in lines:
            say(reply)
