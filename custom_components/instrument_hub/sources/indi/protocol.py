"""INDI 1.7 wire protocol: numbers, the elements a server sends (as dataclasses) and command builders.

Pure functions and classes without I/O. The INDI stream is a sequence of top-level XML elements with
no document root; ``stream`` parses it incrementally into the dataclasses defined here, and the
builders produce the bytes a client sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
import math
import re
from typing import Final, Protocol
from xml.sax.saxutils import escape, quoteattr

from ...events import MessageLevel

PROTOCOL_VERSION: Final = "1.7"
DEFAULT_MAX_ELEMENT_BYTES: Final = 64 * 1024 * 1024
"""Largest element the parser accepts, not counting BLOB content (which streams to a file)."""

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
    try:
        # The common case, once: a plain decimal ("%g" output such as "1e-05" included).
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) else None
    body = text.strip()
    if not body:
        return None
    negative = body.startswith("-")
    unsigned = body[1:].lstrip() if body[0] in "+-" else body
    parts = _SEXAGESIMAL_SEPARATOR.split(unsigned)
    if len(parts) == 1:
        return None  # not a plain decimal (float() said so) and not sexagesimal
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
# Parsed elements
#
# Values, not to be changed once parsed. Not frozen: a frozen dataclass's __init__ costs three times as
# much, and these are built for every element of the stream.


@dataclass(slots=True)
class DefMember:
    """One member of a ``def*Vector``; ``value`` is the raw text (empty for BLOBs)."""

    name: str
    label: str
    value: str
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


@dataclass(slots=True)
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


class BlobReceiver(Protocol):
    """Takes a BLOB member's base64 text as it arrives; must not raise (it records its own failure)."""

    def write(self, text: str) -> None:
        """Take the next piece of base64 text (with the newlines servers wrap it in)."""

    def end(self) -> None:
        """Take the end of the member (its element may still turn out bad: then abort follows)."""

    def abort(self) -> None:
        """Forget the BLOB (its element was dropped)."""


@dataclass(slots=True)
class SetMember:
    """One member of a ``set*Vector``.

    For a BLOB, ``value`` is the base64 text when the parser collects it, or empty while ``blob`` is
    the receiver its text streamed to.
    """

    name: str
    value: str
    size: int | None = None
    format: str | None = None
    blob: BlobReceiver | None = None


@dataclass(slots=True)
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


@dataclass(slots=True)
class DelProperty:
    """A vector (``name``) or, with ``name`` None, a whole device was deleted."""

    device: str
    name: str | None
    timestamp: datetime | None
    message: str | None


@dataclass(slots=True)
class ServerMessage:
    """A ``message`` element: commentary from a device, or from the server when ``device`` is None."""

    device: str | None
    timestamp: datetime | None
    message: str | None


type IndiElement = DefVector | SetVector | DelProperty | ServerMessage

_LEADING_LAYOUT_NEWLINE = re.compile(r"\A\r?\n")
_TRAILING_LAYOUT_NEWLINE = re.compile(r"\r?\n[ \t]*\Z")


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
    if text[0] not in "\r\n" and text[-1] not in " \t\n":
        return text  # no layout to remove (the common case)
    text = _LEADING_LAYOUT_NEWLINE.sub("", text, count=1)
    return _TRAILING_LAYOUT_NEWLINE.sub("", text, count=1)


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse an INDI timestamp (ISO-8601, UTC when it has no zone); None when absent or invalid."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


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
