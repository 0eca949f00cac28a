"""INDI 1.7 wire protocol: number parsing, stream splitting, element parsing and command builders.

Pure functions and classes without I/O. The INDI stream is a sequence of top-level XML elements with
no document root; :class:`ElementSplitter` cuts it into elements, :func:`parse_element` turns one
element into a typed dataclass, and the builders produce the bytes a client sends.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, StrEnum
import math
import re
from typing import Final
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr
import zlib

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _defused_fromstring

from ...events import MessageLevel

PROTOCOL_VERSION: Final = "1.7"
DEFAULT_MAX_ELEMENT_BYTES: Final = 64 * 1024 * 1024
"""Largest single element the splitter keeps; a camera frame as base64 fits, a runaway stream does not."""

TOP_LEVEL_TAGS: Final = frozenset(
    {
        "defNumberVector",
        "defSwitchVector",
        "defTextVector",
        "defLightVector",
        "defBLOBVector",
        "setNumberVector",
        "setSwitchVector",
        "setTextVector",
        "setLightVector",
        "setBLOBVector",
        "message",
        "delProperty",
        "getProperties",
        "newNumberVector",
        "newSwitchVector",
        "newTextVector",
        "newBLOBVector",
        "enableBLOB",
        "pingRequest",
        "pingReply",
    }
)
"""Elements that only ever appear at the top level of the stream and never nest in themselves."""

SWITCH_ON: Final = "On"
SWITCH_OFF: Final = "Off"
BLOB_MODES: Final = frozenset({"Never", "Also", "Only"})


class ProtocolError(Exception):
    """An element is not well-formed XML or lacks a required attribute."""


class VectorKind(StrEnum):
    """The five INDI property types; the value is the infix of the tag names (``defNumberVector``)."""

    NUMBER = "Number"
    SWITCH = "Switch"
    TEXT = "Text"
    LIGHT = "Light"
    BLOB = "BLOB"


# --------------------------------------------------------------------------------------------------
# Numbers


_SEXAGESIMAL_SEPARATOR = re.compile(r"\s*[:;]\s*|\s+")
_UNSIGNED_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)\Z")
_MAX_SEXAGESIMAL_PARTS = 3


def parse_number(text: str | None) -> float | None:
    """Parse an INDI number: a decimal or sexagesimal ``d:m:s`` with ``:``, ``;`` or space separators.

    Components may be real and missing ones count as 0; a leading ``-`` negates the whole value
    (``"-10:30:18"`` == ``"-10 30.3"`` == -10.505). Returns None for empty, invalid or non-finite
    text (never a made-up 0.0).
    """
    if text is None:
        return None
    body = text.strip()
    if not body:
        return None
    negative = body.startswith("-")
    unsigned = body[1:].lstrip() if body[0] in "+-" else body
    parts = _SEXAGESIMAL_SEPARATOR.split(unsigned)
    if len(parts) == 1:
        # float() also takes exponents: "%g" output such as "1e-05".
        return _parse_plain(body)
    if len(parts) > _MAX_SEXAGESIMAL_PARTS or not any(parts):
        return None
    total = 0.0
    for scale, part in zip((1.0, 60.0, 3600.0), parts, strict=False):
        if not part:
            continue  # a missing component ("12:", "10::30") counts as 0
        if not _UNSIGNED_DECIMAL.match(part):
            return None
        total += float(part) / scale
    return -total if negative else total


def _parse_plain(text: str) -> float | None:
    """Parse a plain decimal (exponents allowed), rejecting nan/inf that no device means."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    """Format a number for the wire as a plain decimal that round-trips exactly.

    The shortest repr is expanded to positional notation (no exponent, which not every driver
    parses) and trailing zeros are dropped: 18.5 -> "18.5", 19.25 -> "19.25", 20.0 -> "20",
    1e-05 -> "0.00001". The device's display format is never used: ``%3.1f`` would send 19.2.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    if number == 0:
        return "0"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_PRINTF_FORMAT = re.compile(r"%[-+ #0']*(\d+)?(?:\.(\d+))?[hlLqjzt]*([a-zA-Z])")
_DEFAULT_PRINTF_PRECISION = 6
# indilib's %<w>.<f>m: the fraction digits f say how far the sexagesimal display goes (indiapi.h), and so
# how many decimals of the same value show that resolution: d:mm (1/60) needs 2, d:mm.m 3, d:mm:ss (1/3600) 4,
# d:mm:ss.s 5, d:mm:ss.ss 6.
_SEXAGESIMAL_DECIMALS: Final = ((3, 2), (5, 3), (7, 4), (8, 5))
_SEXAGESIMAL_MAX_DECIMALS = 6


def display_precision(fmt: str | None) -> int | None:
    """Return the number of decimals a number format shows, or None when it does not say.

    ``%3.1f`` -> 1, ``%.2e`` -> 2, ``%f`` -> 6 (printf's default), ``%d`` -> 0, ``%g`` (variable)
    -> None. The sexagesimal ``%<w>.<f>m`` gives the decimals that resolve what it displays:
    ``%010.6m`` (d:mm:ss, one arc-second or second of time) -> 4.
    """
    if not fmt:
        return None
    match = _PRINTF_FORMAT.search(fmt)
    if match is None:
        return None
    precision, conversion = match.group(2), match.group(3)
    if conversion in "fFeE":
        return int(precision) if precision is not None else _DEFAULT_PRINTF_PRECISION
    if conversion in "diu":
        return 0
    if conversion == "m" and precision is not None:
        fraction = int(precision)
        return next(
            (
                decimals
                for limit, decimals in _SEXAGESIMAL_DECIMALS
                if fraction <= limit
            ),
            _SEXAGESIMAL_MAX_DECIMALS,
        )
    return None


def is_sexagesimal(fmt: str | None) -> bool:
    """Return True for indilib's sexagesimal format ``%<w>.<f>m``."""
    match = _PRINTF_FORMAT.search(fmt or "")
    return match is not None and match.group(3) == "m"


# --------------------------------------------------------------------------------------------------
# Text a client may send

# XML 1.0 (section 2.2) allows tab, newline, carriage return and the code points from U+0020 on, except
# the surrogates and U+FFFE/U+FFFF; anything else makes a server's parser drop the connection.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def forbidden_xml_char(text: str) -> str | None:
    """Return the first character XML 1.0 cannot carry (NUL, ESC, a lone surrogate, ...), or None."""
    match = _NOT_XML_CHAR.search(text)
    return match.group(0) if match else None


# --------------------------------------------------------------------------------------------------
# Message levels

_LEVEL_PREFIX = re.compile(r"\A\s*\[(ERROR|WARNING|INFO|DEBUG|SCOPE)\]\s*")


_PREFIX_LEVELS: Final = {"ERROR": MessageLevel.ERROR, "WARNING": MessageLevel.WARNING}


def message_level(text: str) -> tuple[MessageLevel | None, str]:
    """Split indilib's level prefix off a message (its drivers log "[ERROR] ...", "[WARNING] ...").

    ``"[ERROR] x"`` -> (ERROR, "x"); ``[INFO]``, ``[DEBUG]`` and ``[SCOPE]`` are info; no prefix ->
    (None, text), so the caller decides (a property in Alert speaks a warning).
    """
    match = _LEVEL_PREFIX.match(text)
    if match is None:
        return None, text
    level = _PREFIX_LEVELS.get(match.group(1), MessageLevel.INFO)
    return level, text[match.end() :] or text


# --------------------------------------------------------------------------------------------------
# Stream splitting


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


# --------------------------------------------------------------------------------------------------
# Parsed elements


@dataclass(frozen=True, slots=True)
class DefMember:
    """One member of a ``def*Vector``; ``value`` is the raw text (empty for BLOBs)."""

    name: str
    label: str
    value: str
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


@dataclass(frozen=True, slots=True)
class DefVector:
    """A property definition (``def*Vector``)."""

    kind: VectorKind
    device: str
    name: str
    label: str
    group: str | None
    state: str | None
    perm: str | None
    rule: str | None
    timeout: float | None
    timestamp: datetime | None
    message: str | None
    members: tuple[DefMember, ...]


@dataclass(frozen=True, slots=True)
class SetMember:
    """One member of a ``set*Vector``; for BLOBs ``value`` is the base64 text, not decoded."""

    name: str
    value: str
    size: int | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class SetVector:
    """New values (``set*Vector``); ``state`` None means unchanged."""

    kind: VectorKind
    device: str
    name: str
    state: str | None
    timeout: float | None
    timestamp: datetime | None
    message: str | None
    members: tuple[SetMember, ...]


@dataclass(frozen=True, slots=True)
class DelProperty:
    """A vector (``name``) or, with ``name`` None, a whole device was deleted."""

    device: str
    name: str | None
    timestamp: datetime | None
    message: str | None


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """A ``message`` element: commentary from a device, or from the server when ``device`` is None."""

    device: str | None
    timestamp: datetime | None
    message: str | None


type IndiElement = DefVector | SetVector | DelProperty | ServerMessage

_DEF_KINDS: Final = {f"def{kind.value}Vector": kind for kind in VectorKind}
_SET_KINDS: Final = {f"set{kind.value}Vector": kind for kind in VectorKind}
_LEADING_LAYOUT_NEWLINE = re.compile(r"\A\r?\n")
_TRAILING_LAYOUT_NEWLINE = re.compile(r"\r?\n[ \t]*\Z")


def parse_element(raw: bytes) -> IndiElement | None:
    """Parse one top-level element; None for elements a client ignores.

    Ignored: ``new*Vector`` forwarded from other clients, ``getProperties``, ``enableBLOB``, pings
    and unknown tags. Raises ProtocolError for malformed XML or a missing device/name attribute.
    Entities and DTDs are refused (defusedxml).
    """
    root = _parse_xml(raw)
    tag = root.tag
    if (kind := _DEF_KINDS.get(tag)) is not None:
        return _parse_def(root, kind)
    if (kind := _SET_KINDS.get(tag)) is not None:
        return _parse_set(root, kind)
    if tag == "delProperty":
        return DelProperty(
            device=_required(root, "device"),
            name=root.get("name") or None,
            timestamp=parse_timestamp(root.get("timestamp")),
            message=root.get("message") or None,
        )
    if tag == "message":
        return ServerMessage(
            device=root.get("device") or None,
            timestamp=parse_timestamp(root.get("timestamp")),
            message=root.get("message") or None,
        )
    return None


def _parse_xml(raw: bytes) -> Element:
    try:
        root: Element = _defused_fromstring(raw, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as err:
        raise ProtocolError(f"malformed XML: {err}") from err
    return root


def _parse_def(root: Element, kind: VectorKind) -> DefVector:
    name = _required(root, "name")
    member_tag = f"def{kind.value}"
    members = tuple(
        _parse_def_member(child, kind) for child in root if child.tag == member_tag
    )
    return DefVector(
        kind=kind,
        device=_required(root, "device"),
        name=name,
        label=root.get("label") or name,
        group=root.get("group") or None,
        state=root.get("state") or None,
        perm=root.get("perm") or None,
        rule=root.get("rule") or None,
        timeout=_parse_optional_float(root.get("timeout")),
        timestamp=parse_timestamp(root.get("timestamp")),
        message=root.get("message") or None,
        members=members,
    )


def _parse_def_member(child: Element, kind: VectorKind) -> DefMember:
    name = _required(child, "name")
    return DefMember(
        name=name,
        label=child.get("label") or name,
        value=member_text(child.text, kind),
        format=child.get("format") or None,
        minimum=parse_number(child.get("min")),
        maximum=parse_number(child.get("max")),
        step=parse_number(child.get("step")),
    )


def _parse_set(root: Element, kind: VectorKind) -> SetVector:
    member_tag = f"one{kind.value}"
    members = tuple(
        SetMember(
            name=_required(child, "name"),
            value=member_text(child.text, kind),
            size=_parse_optional_int(child.get("size")),
            format=child.get("format"),
        )
        for child in root
        if child.tag == member_tag
    )
    return SetVector(
        kind=kind,
        device=_required(root, "device"),
        name=_required(root, "name"),
        state=root.get("state") or None,
        timeout=_parse_optional_float(root.get("timeout")),
        timestamp=parse_timestamp(root.get("timestamp")),
        message=root.get("message") or None,
        members=members,
    )


def member_text(text: str | None, kind: VectorKind) -> str:
    """Return a member's value text without the layout whitespace servers wrap it in.

    Numbers, switches, lights and BLOB base64 are tokens: all surrounding whitespace goes. Text
    members keep their content as sent, except the one newline indilib writes after the start tag
    and the newline plus indentation before the close tag (its multi-line layout); other leading or
    trailing spaces are the device's own and stay.
    """
    if not text:
        return ""
    if kind is not VectorKind.TEXT:
        return text.strip()
    text = _LEADING_LAYOUT_NEWLINE.sub("", text, count=1)
    return _TRAILING_LAYOUT_NEWLINE.sub("", text, count=1)


def _required(element: Element, attribute: str) -> str:
    value = element.get(attribute)
    if not value:
        raise ProtocolError(
            f"<{element.tag}> without the required attribute {attribute!r}"
        )
    return value


def _parse_optional_float(text: str | None) -> float | None:
    return None if text is None else parse_number(text)


def _parse_optional_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse an INDI timestamp (ISO-8601, UTC when it has no zone); None when absent or invalid."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


# --------------------------------------------------------------------------------------------------
# BLOB payloads


class BlobTooLarge(ValueError):
    """A BLOB is larger than the configured limit (after decoding and decompression)."""


def base64_decoded_length(text: str) -> int:
    """Return how many bytes a base64 text decodes to, ignoring the whitespace it is wrapped with.

    indilib wraps BLOBs every 72 columns: counting the newlines as data would overestimate a file just
    under the size cap by 1/73 and skip it.
    """
    characters = len(text) - sum(text.count(space) for space in " \t\r\n")
    padding = len(text) - len(text.rstrip(" \t\r\n="))
    padding -= len(text) - len(text.rstrip(" \t\r\n"))
    return max(0, characters * 3 // 4 - min(padding, 2))


def decode_blob(text: str, fmt: str, limit: int) -> tuple[bytes, str]:
    """Decode a BLOB's base64 text and, for a ``.z`` format, zlib-decompress it.

    Returns the bytes and the format without ``.z``. Newlines in the base64 (indilib wraps at 72
    columns) are ignored. Raises BlobTooLarge beyond ``limit`` bytes (decompression stops there, so
    a zip bomb costs at most ``limit``), ``binascii.Error`` for corrupt base64 and ``zlib.error`` for
    corrupt or truncated compressed data (a cut-off stream is never returned as if it were whole).
    """
    data = base64.b64decode(text)
    if fmt.endswith(".z"):
        decompressor = zlib.decompressobj()
        data = decompressor.decompress(data, limit + 1)
        fmt = fmt[:-2]
        if len(data) <= limit and not decompressor.eof:
            raise zlib.error(
                "truncated compressed data: the stream ends before its end marker"
            )
    if len(data) > limit:
        raise BlobTooLarge(f"BLOB larger than {limit} bytes")
    return data, fmt


# --------------------------------------------------------------------------------------------------
# Builders (client -> server)


def get_properties(device: str | None = None, name: str | None = None) -> bytes:
    """Build ``getProperties`` (always with version 1.7, which IPyServer requires)."""
    if name is not None and device is None:
        raise ValueError("getProperties with a vector name needs a device")
    attributes = _attributes(version=PROTOCOL_VERSION, device=device, name=name)
    return f"<getProperties{attributes} />".encode()


def enable_blob(device: str, mode: str, name: str | None = None) -> bytes:
    """Build ``enableBLOB`` (mode Never, Also or Only) for a device or one of its BLOB vectors."""
    if mode not in BLOB_MODES:
        raise ValueError(f"unknown enableBLOB mode {mode!r}")
    return f"<enableBLOB{_attributes(device=device, name=name)}>{mode}</enableBLOB>".encode()


def new_vector(
    kind: VectorKind, device: str, name: str, members: Sequence[tuple[str, str]]
) -> bytes:
    """Build ``new{Number,Switch,Text}Vector`` from (member, value) pairs.

    Values are sent as given (numbers already as plain decimals, see format_number); switch members
    are ordered Off before On so a OneOfMany device never sees two On members in a row.
    """
    if kind in (VectorKind.LIGHT, VectorKind.BLOB):
        raise ValueError(f"a client cannot send new{kind.value}Vector here")
    ordered = list(members)
    if kind is VectorKind.SWITCH:
        ordered.sort(key=lambda member: member[1] == SWITCH_ON)
    tag = f"new{kind.value}Vector"
    member_tag = f"one{kind.value}"
    body = "".join(
        f"<{member_tag}{_attributes(name=member)}>{escape(value)}</{member_tag}>"
        for member, value in ordered
    )
    return f"<{tag}{_attributes(device=device, name=name)}>{body}</{tag}>".encode()


def _attributes(**attributes: str | None) -> str:
    """Render attributes (skipping None) with XML escaping, each preceded by a space."""
    return "".join(
        f" {key}={quoteattr(value)}"
        for key, value in attributes.items()
        if value is not None
    )
