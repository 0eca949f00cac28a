"""Short, bounded descriptions of values for log records (no Home Assistant imports).

A log record never carries a payload: a 12 MB BLOB or text written through an action must not end up
in the log because a command failed. ``excerpt`` describes any value in at most ``EXCERPT_CHARS``
characters without building the full ``repr`` of a large value first.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from typing import Final

EXCERPT_CHARS: Final = 120
"""Longest description of a value in a log record."""
_ITEMS: Final = 8
"""Items of a container or fields of a dataclass described before "…"."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """Describe ``value`` in at most ``limit`` characters (strings and bytes cut, sizes stated)."""
    text = _describe(value, limit, depth=0)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _describe(value: object, limit: int, depth: int) -> str:
    if isinstance(value, str | bytes | bytearray | memoryview):
        size = len(value)
        if size <= limit:
            return repr(bytes(value) if isinstance(value, memoryview) else value)
        unit = "chars" if isinstance(value, str) else "bytes"
        head = value[: limit // 2]  # room for the size note within the limit
        return f"{(bytes(head) if isinstance(head, memoryview) else head)!r}… ({size} {unit})"
    if depth >= 2:
        return f"<{type(value).__name__}>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        inner = ", ".join(
            f"{field.name}={_describe(getattr(value, field.name), limit, depth + 1)}"
            for field in fields[:_ITEMS]
        )
        more = ", …" if len(fields) > _ITEMS else ""
        return f"{type(value).__name__}({inner}{more})"
    if isinstance(value, Mapping):
        items = list(value.items())
        inner = ", ".join(
            f"{_describe(key, limit, depth + 1)}: {_describe(item, limit, depth + 1)}"
            for key, item in items[:_ITEMS]
        )
        return f"{{{inner}{', …' if len(items) > _ITEMS else ''}}}"
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        inner = ", ".join(_describe(item, limit, depth + 1) for item in items[:_ITEMS])
        return f"[{inner}{', …' if len(items) > _ITEMS else ''}]"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"
