r"""hololinked over HTTP, the wire part: Server-Sent Events framing, JSON payloads, payload timestamps.

Pure code without I/O. hololinked 0.4.2 pushes every event and every change of an observable property
as one ``data: <compact JSON>\n\n`` frame (no ``event:``, ``id:`` or ``retry:`` fields, no heartbeat);
:class:`SseParser` reads any Server-Sent Events stream (WHATWG HTML, "9.2 Server-sent events") from
chunks of any size and hands back the ``data`` of each complete event.

Why not a library: the aiohttp SSE clients (aiohttp-sse-client 0.2.1, its fork aiohttp-sse-client2
0.3.0) iterate ``response.content`` line by line, so one invalid UTF-8 byte raises out of the
iterator and ends the stream, a line longer than aiohttp's read buffer raises and ends the stream, a
lone CR never ends a line, and their reconnect delay doubles without bound and without jitter;
httpx-sse's decoder needs httpx, not Home Assistant's shared aiohttp session. Each of these has a test
in tests/sources/test_hololinked_protocol.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
import math
import re
from typing import Final

from ...events import NUMBER_TYPES
from .. import json_wire

DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024
"""Longest line kept (one event's JSON); a longer one is skipped without being buffered. The same
bound holds for an event's data as a whole (all its ``data:`` lines), so memory stays bounded."""
_BOM: Final = b"\xef\xbb\xbf"
_KNOWN_FIELDS: Final = frozenset({"data", "event", "id", "retry"})


@dataclass(slots=True)  # one per message: not frozen, as events.Reading
class SseEvent:
    """One dispatched Server-Sent Event: its type (``message`` unless named) and its data."""

    data: str
    event: str = "message"


type DropCallback = Callable[[str, bytes], None]
"""Told (reason, excerpt of the bad line) about every line the parser had to skip."""


class SseParser:
    """Incremental Server-Sent Events parser: bytes in (any chunking), complete events out.

    Lines end with CR LF, LF or CR (a CR at the end of a chunk waits for the next chunk's first
    byte). A line that is not UTF-8, is longer than ``max_line_bytes`` or names a field the format
    does not have is reported to ``on_drop`` and taints its event, which is then dropped at the next
    blank line: the parser resynchronises there and what follows is delivered. So is an event whose
    data lines add up to more than ``max_line_bytes`` (its lines are not kept past that). An event
    cut off by the end of the stream is never dispatched (call :meth:`reset` for a new connection).
    """

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_drop: DropCallback | None = None,
    ) -> None:
        """Start at the beginning of a stream."""
        self._max_line_bytes = max_line_bytes
        self._on_drop = on_drop
        self.events = 0
        self.dropped_lines = 0
        self.dropped_events = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything of the previous stream (a new connection starts a new stream)."""
        self._buffer = bytearray()
        self._skipping = False  # inside an oversized line: discard up to its end
        self._after_cr = (
            False  # the last byte seen was a CR: an LF right after it is part of it
        )
        self._at_start = True  # a UTF-8 BOM may open the stream
        self._data: list[str] = []
        self._data_size = 0
        self._event_type = ""
        self._tainted = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Take the next bytes of the stream; return the events they completed, in order."""
        events: list[SseEvent] = []
        view = memoryview(chunk)
        start = 0
        end = len(chunk)
        if self._after_cr and start < end:
            self._after_cr = False
            if view[0] == 0x0A:
                start = 1
        # The next blank line (b"\n\n"): -2 not looked for yet, -1 none left in the chunk.
        sep = -2
        while start < end:
            if (
                sep != -1
                and not self._buffer
                and not self._data
                and not self._after_cr
                and not self._skipping
                and not self._at_start
                and not self._tainted
                and not self._event_type
            ):
                # Between events: take the ``data: <json>\n\n`` frames hololinked sends whole.
                start, sep = self._whole_frames(chunk, start, sep, events)
                if start >= end:
                    break
            stop = _line_end(chunk, start)
            if stop < 0:
                self._keep(view[start:end])
                break
            self._keep(view[start:stop])
            if chunk[stop] == 0x0D:
                if stop + 1 < end:
                    start = stop + 2 if chunk[stop + 1] == 0x0A else stop + 1
                else:
                    self._after_cr = True
                    start = end
            else:
                start = stop + 1
            self._end_line(events)
        return events

    def _whole_frames(
        self, chunk: bytes, start: int, sep: int, events: list[SseEvent]
    ) -> tuple[int, int]:
        """Dispatch the one-line ``data:`` events from ``start`` on, without the line machinery.

        Stops at the first frame that is anything else (more lines, CR, not UTF-8, too long) or
        incomplete, and returns where it stopped with the next blank line's index (-1: none left
        in the chunk), for the line-by-line path to go on from there.
        """
        limit = self._max_line_bytes
        find = chunk.find
        while True:
            if sep < start:
                sep = find(b"\n\n", start)
                if sep < 0:
                    return start, -1
            if (
                sep - start > limit
                or not chunk.startswith(b"data:", start)
                or find(b"\n", start, sep) >= 0
                or find(b"\r", start, sep) >= 0
            ):
                return start, sep
            try:
                line = chunk[start + 5 : sep].decode("utf-8")
            except UnicodeDecodeError:
                return start, sep
            self.events += 1
            events.append(SseEvent(line.removeprefix(" ")))
            start = sep + 2

    def _keep(self, part: memoryview) -> None:
        if self._skipping or not part:
            return
        if len(self._buffer) + len(part) > self._max_line_bytes:
            self._drop(
                f"line longer than {self._max_line_bytes} bytes",
                bytes(self._buffer[:80]) or bytes(part[:80]),
            )
            self._buffer.clear()
            self._skipping = True
            return
        self._buffer += part

    def _end_line(self, events: list[SseEvent]) -> None:
        if self._skipping:
            self._skipping = False
            self._at_start = False
            return
        raw = bytes(self._buffer)
        self._buffer.clear()
        if self._at_start:
            self._at_start = False
            raw = raw.removeprefix(_BOM)
        if not raw:
            self._dispatch(events)
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._drop("not UTF-8", raw[:80])
            return
        if line.startswith(":"):
            return  # a comment (some servers' keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name not in _KNOWN_FIELDS:
            self._drop(f"unknown field {name[:20]!r}", raw[:80])
            return
        if name == "data":
            if self._tainted:
                return  # dropped at its end anyway: keep nothing of it
            self._data_size += len(value) + 1
            if self._data_size > self._max_line_bytes:
                self._drop(
                    f"event data longer than {self._max_line_bytes} bytes", raw[:80]
                )
                self._data.clear()
                return
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        # id and retry: hololinked sends neither and replays nothing; accepted, not used.

    def _drop(self, reason: str, excerpt: bytes) -> None:
        self.dropped_lines += 1
        self._tainted = True
        if self._on_drop is not None:
            self._on_drop(reason, excerpt)

    def _dispatch(self, events: list[SseEvent]) -> None:
        data, event_type, tainted = self._data, self._event_type, self._tainted
        self._data, self._event_type, self._tainted = [], "", False
        self._data_size = 0
        if tainted:
            self.dropped_events += 1
            return
        if not data:
            return  # a blank line without data dispatches nothing
        self.events += 1
        events.append(SseEvent("\n".join(data), event_type or "message"))


def _line_end(chunk: bytes, start: int) -> int:
    """Return the index of the first CR or LF at or after ``start``, -1 when there is none."""
    lf = chunk.find(b"\n", start)
    cr = chunk.find(b"\r", start, lf if lf >= 0 else len(chunk))
    return cr if cr >= 0 else lf


# --------------------------------------------------------------------------------------------------
# Payloads


class PayloadError(ValueError):
    """An event's data is not JSON."""


@dataclass(frozen=True, slots=True)
class ThingError:
    """What a Thing reports in place of a value: ``{"exception": {"message": ..., "type": ...}}``."""

    message: str
    type: str | None = None


def decode_payload(data: str) -> object:
    """Decode an event's data: JSON (NaN and ``null`` stay the Thing's "no value"); PayloadError if not."""
    try:
        return json_wire.loads(data)
    except ValueError as err:
        raise PayloadError(str(err)) from err


def thing_error(body: object) -> ThingError | None:
    """Return the error a Thing put in a body (``{"exception": ...}``), None for an ordinary value."""
    if not isinstance(body, dict) or len(body) != 1 or "exception" not in body:
        return None
    exception = body["exception"]
    if isinstance(exception, dict):
        message = exception.get("message")
        kind = exception.get("type")
        return ThingError(
            str(message) if message is not None else "unknown error",
            str(kind) if isinstance(kind, str) else None,
        )
    return ThingError(str(exception))


# --------------------------------------------------------------------------------------------------
# Timestamps in payloads

_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?")
_MILLISECOND_EPOCH: Final = 1e11
"""Epoch values above this are milliseconds (1e11 s is in the year 5138)."""
_HALF_DAY: Final = timedelta(hours=12)


def payload_time(value: object, arrival: datetime, local: tzinfo) -> datetime | None:
    """Return the time a payload's timestamp field means, None when it does not parse.

    Numbers are epoch seconds (or milliseconds, when that large); strings are ISO 8601 date-times
    (local time when they name no offset) or a clock time ``HH:MM:SS[.ffffff]`` of the Thing's day,
    taken as the local date of ``arrival`` and moved by a day when that puts it more than 12 hours
    away (a reading from just before midnight that arrives just after).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, NUMBER_TYPES):
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
        if abs(seconds) > _MILLISECOND_EPOCH:
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if match := _CLOCK.fullmatch(text):
        return _clock_time(match, arrival, local)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local)
    return parsed.astimezone(UTC)


def _clock_time(
    match: re.Match[str], arrival: datetime, local: tzinfo
) -> datetime | None:
    hour, minute, second = (int(part) for part in match.group(1, 2, 3))
    fraction = (match.group(4) or "").ljust(6, "0")
    try:
        clock = time(hour, minute, second, int(fraction))
    except ValueError:
        return None
    arrived = arrival.astimezone(local)
    moment = datetime.combine(arrived.date(), clock, tzinfo=local)
    if moment - arrived > _HALF_DAY:
        moment -= timedelta(days=1)
    elif arrived - moment > _HALF_DAY:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)
