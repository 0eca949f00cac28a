"""Cut a root-less stream of INDI elements into raw top-level elements (the scripted server's framing).

The fake INDI server of the tests records what a client sends as raw elements, byte for byte, to compare
them with what the client should send. The client itself parses the stream incrementally
(``sources.indi.stream``); this splitter only looks at tag boundaries, so the tests see exactly the bytes
that went over the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
import re
from typing import Final

from custom_components.instrument_hub.sources.indi.protocol import (
    DEFAULT_MAX_ELEMENT_BYTES,
    TOP_LEVEL_TAGS,
)


class _SplitState(Enum):
    """Where the splitter is relative to the element at the start of its buffer."""

    OUTSIDE = "outside"
    START_TAG = "start_tag"
    BODY = "body"


@dataclass(frozen=True, slots=True)
class _Tag:
    """A tag opening at some position of the buffer: ``<name`` or ``</name``."""

    closing: bool
    name: bytes
    end: int


class _Incomplete(Enum):
    """Marker: the buffer ends before a tag can be recognised."""

    NEED_MORE = "need more data"


_NEED_MORE: Final = _Incomplete.NEED_MORE
_TAG_OPEN = re.compile(rb"<(/?)([A-Za-z_:][-A-Za-z0-9_.:]*)")
_MAX_TAG_NAME = 128
_NAME_TERMINATORS: Final = frozenset(b" \t\r\n/>")
_CLOSE_TAG_END = re.compile(rb"[ \t\r\n]*>")
_ONLY_WHITESPACE = re.compile(rb"[ \t\r\n]*\Z")
_START_TAG_STOP = re.compile(rb"[\"'<>]")
_QUOTE_STOP: Final = {ord('"'): re.compile(rb'["<]'), ord("'"): re.compile(rb"['<]")}
_TOP_LEVEL_BYTES: Final = frozenset(tag.encode() for tag in TOP_LEVEL_TAGS)
_EXCERPT_BYTES = 80

type DropCallback = Callable[[str, bytes], None]
"""Told why an element was dropped ("truncated", "oversized") and its first bytes."""


class ElementSplitter:
    """Cut a root-less stream of XML elements into complete top-level elements.

    A pull parser with a synthetic root cannot recover after a ParseError; this splitter only looks
    at tag boundaries, so it resynchronises at the next top-level start tag. Text cannot contain a
    raw ``<``, and the top-level elements never nest in themselves, so the element that starts at
    ``<Name`` ends at its ``/>`` or at ``</Name>``; a known top-level start tag before that means the
    element was truncated. Memory stays flat: only the unfinished element is kept, and the scan
    position is remembered so a BLOB arriving in many chunks is scanned once.
    """

    def __init__(
        self,
        max_element_bytes: int = DEFAULT_MAX_ELEMENT_BYTES,
        on_drop: DropCallback | None = None,
    ) -> None:
        """Create a splitter that drops elements larger than ``max_element_bytes``."""
        self._max_element_bytes = max_element_bytes
        self._on_drop = on_drop
        self._buffer = bytearray()
        self._state = _SplitState.OUTSIDE
        self._scan_pos = (
            0  # first byte of the buffer not yet looked at in the current state
        )
        self._name = (
            b""  # tag name of the element being collected (it starts at _buffer[0])
        )
        self._quote = (
            0  # the quote byte while inside a quoted attribute value of the start tag
        )
        self._discarding = (
            False  # the element is oversized: find its end, keep none of it
        )
        self.elements = 0
        self.truncated = 0
        self.oversized = 0
        self.skipped_bytes = 0
        self.dropped_bytes = 0
        self.scanned_bytes = 0

    @property
    def dropped(self) -> int:
        """Elements dropped because they were truncated or oversized."""
        return self.truncated + self.oversized

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an unfinished element."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any unfinished element (a new connection starts a new stream); keep the counters."""
        self._buffer.clear()
        self._state = _SplitState.OUTSIDE
        self._scan_pos = 0
        self._quote = 0
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the top-level elements completed by them, in stream order."""
        self._buffer += data
        elements: list[bytes] = []
        while self._step(elements):
            pass
        self._enforce_size_limit()
        return elements

    def _step(self, elements: list[bytes]) -> bool:
        """Advance the state machine once; False when more data is needed."""
        if self._state is _SplitState.OUTSIDE:
            return self._scan_outside()
        if self._state is _SplitState.START_TAG:
            return self._scan_start_tag(elements)
        return self._scan_body(elements)

    def _scan_outside(self) -> bool:
        """Skip bytes up to the next start tag and begin collecting that element."""
        found = self._buffer.find(b"<", self._scan_pos)
        self._count_scanned(found)
        if found < 0:
            self._skip(len(self._buffer))
            return False
        self._skip(found)
        tag = self._tag_at(0)
        if tag is _NEED_MORE:
            return False
        if tag is None or tag.closing:
            # A stray "<", a closing tag, "<?xml", "<!--": not an element start.
            self._skip(1)
            return True
        self._state = _SplitState.START_TAG
        self._name = tag.name
        self._quote = 0
        self._scan_pos = tag.end
        return True

    def _scan_start_tag(self, elements: list[bytes]) -> bool:
        """Find the ``>`` ending the start tag, honouring quoted attribute values."""
        while True:
            pattern = _QUOTE_STOP[self._quote] if self._quote else _START_TAG_STOP
            match = pattern.search(self._buffer, self._scan_pos)
            if match is None:
                self._count_scanned(-1)
                self._scan_pos = len(self._buffer)
                return False
            found = match.start()
            self._count_scanned(found + 1)
            char = self._buffer[found]
            self._scan_pos = found + 1
            if char == ord("<"):
                # A raw "<" is illegal anywhere in a start tag, even in a value: the tag was cut off.
                self._drop_truncated(found)
                return True
            if self._quote:
                self._quote = 0
            elif char != ord(">"):
                self._quote = char
            elif found > 0 and self._buffer[found - 1] == ord("/"):
                self._finish(found + 1, elements)
                return True
            else:
                self._state = _SplitState.BODY
                return True

    def _scan_body(self, elements: list[bytes]) -> bool:
        """Find the element's close tag, or a new top-level start tag that proves truncation."""
        while True:
            found = self._buffer.find(b"<", self._scan_pos)
            self._count_scanned(found)
            if found < 0:
                self._scan_pos = len(self._buffer)
                return False
            tag = self._tag_at(found)
            if tag is _NEED_MORE:
                self._scan_pos = found
                return False
            if tag is not None:
                if tag.closing and tag.name == self._name:
                    close_end = self._close_tag_end(tag)
                    if close_end is None:
                        self._scan_pos = found
                        return False
                    if close_end > 0:
                        self._finish(close_end, elements)
                        return True
                elif not tag.closing and tag.name in _TOP_LEVEL_BYTES:
                    self._drop_truncated(found)
                    return True
            self._scan_pos = found + 1

    def _close_tag_end(self, tag: _Tag) -> int | None:
        """Return the end of ``</name  >``, None when more data is needed, 0 when it is malformed."""
        match = _CLOSE_TAG_END.match(self._buffer, tag.end)
        if match is not None:
            return match.end()
        if _ONLY_WHITESPACE.match(self._buffer, tag.end):
            return None
        return 0

    def _tag_at(self, pos: int) -> _Tag | _Incomplete | None:
        """Read the tag opening at ``pos``: a _Tag, _NEED_MORE, or None when it is not a tag."""
        match = _TAG_OPEN.match(self._buffer, pos)
        length = len(self._buffer)
        if match is None:
            after = self._buffer[pos + 1 : pos + 2]
            if not after or (after == b"/" and length <= pos + 2):
                return _NEED_MORE
            return None
        name = match.group(2)
        if len(name) > _MAX_TAG_NAME:
            return None
        end = match.end()
        if end >= length:
            return _NEED_MORE  # the name may continue in the next chunk
        terminator = self._buffer[end]
        if terminator not in _NAME_TERMINATORS or (
            match.group(1) and terminator == ord("/")
        ):
            return None
        return _Tag(closing=bool(match.group(1)), name=bytes(name), end=end)

    def _finish(self, end: int, elements: list[bytes]) -> None:
        """Deliver the element occupying ``_buffer[:end]`` (or drop it when oversized)."""
        if self._discarding:
            self.dropped_bytes += end
        elif end > self._max_element_bytes:
            self._report_oversized()
            self.dropped_bytes += end
        else:
            elements.append(bytes(self._buffer[:end]))
            self.elements += 1
        del self._buffer[:end]
        self._back_outside()

    def _drop_truncated(self, pos: int) -> None:
        """Drop the unfinished element before ``pos`` and resynchronise at ``pos``."""
        if not self._discarding:
            self.truncated += 1
            self._notify("truncated", self._buffer[: min(pos, _EXCERPT_BYTES)])
        self.dropped_bytes += pos
        del self._buffer[:pos]
        self._back_outside()

    def _enforce_size_limit(self) -> None:
        """Switch to discarding an element that outgrew the limit; trim what a discarded one holds."""
        if self._state is _SplitState.OUTSIDE:
            return
        if not self._discarding and len(self._buffer) > self._max_element_bytes:
            self._report_oversized()
            self._discarding = True
        if self._discarding:
            # Keep the last scanned byte: a "/" there may be the start of the "/>" ending the tag.
            trim = max(0, self._scan_pos - 1)
            self.dropped_bytes += trim
            del self._buffer[:trim]
            self._scan_pos -= trim

    def _report_oversized(self) -> None:
        self.oversized += 1
        self._notify("oversized", self._buffer[:_EXCERPT_BYTES])

    def _back_outside(self) -> None:
        self._state = _SplitState.OUTSIDE
        self._scan_pos = 0
        self._quote = 0
        self._discarding = False

    def _skip(self, count: int) -> None:
        """Discard ``count`` bytes that lie outside any element."""
        if count:
            self.skipped_bytes += count
            del self._buffer[:count]
        self._scan_pos = 0

    def _count_scanned(self, found: int) -> None:
        """Account the bytes a search looked at (``found`` < 0: it ran to the end of the buffer)."""
        end = len(self._buffer) if found < 0 else found
        self.scanned_bytes += max(0, end - self._scan_pos)

    def _notify(self, reason: str, excerpt: bytes | bytearray) -> None:
        if self._on_drop is not None:
            self._on_drop(reason, bytes(excerpt))
