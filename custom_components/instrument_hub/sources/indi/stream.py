"""Parse the INDI stream incrementally: one expat parser per connection, typed elements out.

The stream is a sequence of top-level XML elements without a document root. One expat parser is fed a
synthetic root (``<indi>``) and then every byte as it arrives, so each byte is tokenised once, nothing is
copied out of the stream to be parsed again, and a top-level element is handed on (as a dataclass of
``protocol``) once its end tag is parsed, before ``feed`` returns (see ``_deliver``). A BLOB's base64 is
not collected: it streams to the receiver the consumer opens for it (see ``blobs``), chunk by chunk.

Safety, as defusedxml's (which refuses DTDs and entity declarations), by construction: the synthetic root
is open before the first received byte, and XML allows a document type declaration only before the root,
so a ``<!DOCTYPE`` anywhere in the stream is a syntax error. Without a DTD no entity can be declared:
only the five predefined ones and character references exist, and any other reference is an "undefined
entity" error. Entity expansion (billion laughs, quadratic blow-up), external entities and DTD retrieval
(XXE, network access) cannot happen. Should a declaration ever reach the parser anyway, handlers refuse
it, and parameter entities are never parsed.

Bad input. expat cannot continue after an error, so the parser is replaced: the bytes after the error are
searched (a C regular expression, not a Python loop) for the next start tag of a top-level element (INDI's
top-level elements never nest in one another), and a fresh parser continues there. A known top-level start
tag nested inside an element proves that element was truncated: it is dropped and parsing resumes at that
tag. Only the bad element is lost; every drop is reported through ``on_malformed`` (the connection logs the
first of a connection as a warning). An element whose bytes (BLOB content aside) outgrow
``max_element_bytes`` is dropped as oversized, and what follows it is still delivered.

Bounded work: ``feed`` does work proportional to the bytes given (at most one fresh parser per error, and
each restart moves forward), so the caller bounds a loop callback by the size of what it feeds at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
import logging
import re
from typing import Any, Final, NoReturn
from xml.parsers import expat

from .protocol import (
    DEFAULT_MAX_ELEMENT_BYTES,
    TOP_LEVEL_TAGS,
    BlobReceiver,
    DefMember,
    DefVector,
    DelProperty,
    IndiElement,
    ProtocolError,
    ServerMessage,
    SetMember,
    SetVector,
    VectorKind,
    member_text,
    parse_number,
    parse_timestamp,
)

_LOGGER = logging.getLogger(__name__)

_ROOT: Final = b"<indi>"
_ROOT_END: Final = b"</indi>"
_TEXT_BUFFER: Final = 65536
"""expat hands character data on in pieces of up to this size (fewer calls for a BLOB's base64)."""
_EXCERPT_BYTES: Final = 80
MAX_TOKEN_BYTES: Final = 1024 * 1024
"""Longest single tag, attribute value or comment; beyond it the element is dropped.

expat's deferral of re-parsing an unfinished token (its defence against quadratic re-scans) is turned
off, because it holds back an element whose last bytes arrive in a short read until more data comes: the
newest value of a burst could wait for the next one. Re-scanning is bounded by this limit instead.
"""

_BOUNDARY: Final = re.compile(
    rb"<(?:"
    + b"|".join(sorted(tag.encode() for tag in TOP_LEVEL_TAGS))
    + rb")(?=[ \t\r\n/>])"
)
"""The start of a top-level element: where parsing can resume after bad input."""
_LONGEST_BOUNDARY: Final = max(len(tag) for tag in TOP_LEVEL_TAGS) + 2

_DEF_KINDS: Final = {f"def{kind.value}Vector": kind for kind in VectorKind}
_SET_KINDS: Final = {f"set{kind.value}Vector": kind for kind in VectorKind}
_DEF_MEMBER_TAGS: Final = {kind: f"def{kind.value}" for kind in VectorKind}
_SET_MEMBER_TAGS: Final = {kind: f"one{kind.value}" for kind in VectorKind}

# What the top-level element being parsed is.
_IGNORED: Final = (
    0  # new*Vector of other clients, getProperties, enableBLOB, pings, unknown tags
)
_DEF: Final = 1
_SET: Final = 2
_DELETE: Final = 3
_MESSAGE: Final = 4
_OTHER_MODES: Final = {"delProperty": _DELETE, "message": _MESSAGE}

type ElementCallback = Callable[[IndiElement], None]
type MalformedCallback = Callable[[str, bytes], None]
"""Told why an element was dropped and its first bytes (as far as they are still at hand)."""


type BlobOpener = Callable[[str, str, str, str, int | None], BlobReceiver | None]
"""(device, vector, member, format, size) -> where the member's base64 goes; None: discard it."""


class _Truncated(Exception):
    """A known top-level start tag inside an element: the element was cut off there."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


class _Refused(Exception):
    """A DTD or an entity declaration reached the parser (it cannot, see the module's docstring)."""


def _refuse(
    *_args: object,
) -> Any:  # pragma: no cover - unreachable, see the module docstring
    raise _Refused("DTDs and entity declarations are refused")


class IndiStreamParser:
    """Parse a root-less stream of INDI elements, delivering each complete one to ``on_element``.

    ``open_blob`` receives the base64 of ``oneBLOB`` members of set vectors instead of collecting it in
    ``SetMember.value`` (which then stays empty and ``SetMember.blob`` is the receiver); without it the
    text is collected like any member's.
    """

    def __init__(
        self,
        on_element: ElementCallback,
        on_malformed: MalformedCallback | None = None,
        *,
        open_blob: BlobOpener | None = None,
        max_element_bytes: int = DEFAULT_MAX_ELEMENT_BYTES,
    ) -> None:
        """Create the parser; nothing is parsed before ``feed``."""
        self._on_element = on_element
        self._on_malformed = on_malformed
        self._open_blob = open_blob
        self._max_element_bytes = max_element_bytes
        self.elements = 0
        self.malformed = 0
        self.truncated = 0
        self.oversized = 0
        self.skipped_bytes = 0
        """Bytes passed over while resynchronising after bad input."""
        self._offset = 0  # stream bytes fed so far
        # Where a resynchronisation searches: the chunk being fed, and before it what expat had not
        # tokenised yet (an unfinished tag); contiguous in the stream.
        self._retained = b""
        self._retained_start = 0
        self._current = b""
        self._current_start = 0
        self._discarding = False  # no parser: looking for the next top-level start tag
        self._tail = b""  # while discarding: the end of the last chunk, a start tag's beginning maybe
        self._receivers: list[BlobReceiver] = []
        self._pending: list[
            IndiElement
        ] = []  # parsed, not handed on yet (see _deliver)
        self._head = b""  # the first bytes of the open element, once it spans chunks
        self._head_start = -1
        self._base = 0
        self._expat: Any = None
        self._new_parser(0)

    def reset(self) -> None:
        """Forget any unfinished element (a new connection starts a new stream); keep the counters."""
        self._abort_element()
        self._discarding = False
        self._tail = b""
        self._retained = self._current = b""
        self._retained_start = self._current_start = self._offset
        self._new_parser(self._offset)

    def feed(self, data: bytes | memoryview) -> None:
        """Parse received bytes, delivering the elements they complete, in stream order."""
        if not data:
            return
        try:
            self._feed(data)
        finally:
            self._deliver()

    def _feed(self, data: bytes | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        start = self._offset
        self._offset = start + len(data)
        self._current, self._current_start = data, start
        if self._discarding:
            self._scan_for_boundary(data, start)
        else:
            self._parse(data)
        if self._discarding:
            self._retained = b""
            return
        # What expat has not tokenised yet is one unfinished token (a tag, say): bounded, see MAX_TOKEN_BYTES.
        if self._depth:
            # The element goes on in the next chunk: keep its first bytes for a report.
            if self._head_start != self._start:
                self._head = self._excerpt(self._start)
                self._head_start = self._start
            elif len(self._head) < _EXCERPT_BYTES:
                self._head += data[: _EXCERPT_BYTES - len(self._head)]
        unparsed_start = int(self._expat.CurrentByteIndex) + self._base
        self._retain(unparsed_start)
        if self._offset - unparsed_start > MAX_TOKEN_BYTES or (
            self._depth
            and self._offset - self._start - self._blob_chars > self._max_element_bytes
        ):
            # Still growing past the limit: drop it now, and skip the rest of it as it arrives.
            self._drop("oversized element", self._start if self._depth else start)
            self.oversized += 1
            self._discard(b"")

    def close(self) -> None:
        """End the stream; raise ProtocolError when it stops inside an element (used for single elements)."""
        if self._discarding:
            raise ProtocolError("the stream ends inside a bad element")
        try:
            self._expat.Parse(_ROOT_END, True)
        except expat.ExpatError as err:
            self._abort_element()
            raise ProtocolError(
                f"malformed XML: {expat.ErrorString(err.code)}"
            ) from None
        finally:
            self._deliver()

    def _deliver(self) -> None:
        """Hand on the elements parsed so far, in stream order.

        Parsed elements wait until the feed ends (or until something depends on the ones before: a
        BLOB's receiver, a drop's report), so the consumer handles a whole read's elements in one run
        instead of taking turns with expat after each: a fifth less CPU per element, the order and the
        loop callback the same.
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        on_element = self._on_element
        for element in pending:
            try:
                on_element(element)
            except Exception:
                # The consumer's bug must not break the parser, nor lose the elements after it.
                _LOGGER.exception("Error while handling an INDI element")

    # ------------------------------------------------------------------ expat and resynchronisation

    def _new_parser(self, base: int) -> None:
        """Start a fresh expat parser whose first byte (after the synthetic root) is stream offset ``base``."""
        old = self._expat
        if old is not None:
            # Its handlers are bound to self, which holds it: a cycle only the GC would free, with its
            # 64 KiB text buffer, thousands of times under a storm of bad elements.
            old.StartElementHandler = old.EndElementHandler = None
            old.CharacterDataHandler = None
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.buffer_size = _TEXT_BUFFER
        parser.StartElementHandler = self._start_element
        parser.EndElementHandler = self._end_element
        parser.CharacterDataHandler = self._characters
        parser.StartDoctypeDeclHandler = _refuse
        parser.EntityDeclHandler = _refuse
        parser.UnparsedEntityDeclHandler = _refuse
        parser.ExternalEntityRefHandler = _refuse
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.SetReparseDeferralEnabled(False)  # see MAX_TOKEN_BYTES
        self._expat = parser
        self._base = base - len(_ROOT)  # expat's byte index -> stream offset
        self._depth = -1  # the synthetic root's start takes it to 0
        self._reset_element()
        parser.Parse(_ROOT, False)

    def _reset_element(self) -> None:
        """No element is open (``_begin`` sets all of this again for each element)."""
        self._mode = _IGNORED
        self._kind: VectorKind | None = None
        self._member_tag: str | None = None
        self._blob_members = False
        self._attributes: dict[str, str] = {}
        self._members: list[tuple[dict[str, str], Any]] = []
        self._member: dict[str, str] | None = None
        self._text: list[str] | None = None
        self._blob: BlobReceiver | None = None
        self._blob_chars = 0
        self._start = 0

    def _parse(self, data: bytes | memoryview) -> None:
        """Feed expat; after an error resume at the next top-level start tag, as often as needed."""
        while True:
            try:
                self._expat.Parse(data, False)
            except _Truncated as cut:
                self._drop("truncated element", self._start)
                self.truncated += 1
                resume = cut.position
            except (expat.ExpatError, _Refused) as err:
                reason = (
                    f"malformed XML: {expat.ErrorString(err.code)}"
                    if isinstance(err, expat.ExpatError)
                    else f"malformed XML: {err}"
                )
                position = int(self._expat.ErrorByteIndex) + self._base
                # The start of the bad element (or of the bad tag between elements).
                start = self._start if self._depth > 0 else self._tag_start(position)
                if self._boundary_at(position):
                    # Cut off by the next element ("<" cannot be inside a tag).
                    reason = "truncated element"
                    self.truncated += 1
                self._drop(reason, start)
                # Never resume at the bad element's own start.
                resume = max(position, start + 1) if self._depth > 0 else position
            else:
                return
            # Each restart moves forward: a parser failing where it began resumes past that point.
            resumed = self._resume(max(resume, self._base + len(_ROOT) + 1))
            if resumed is None:
                return
            data = resumed

    def _resume(self, position: int) -> memoryview | None:
        """Start a parser at the first top-level start tag from ``position``; None: none yet (discarding)."""
        window, window_start = self._window(position)
        offset = min(max(0, position - window_start), len(window))
        match = _BOUNDARY.search(window, offset)
        if match is None:
            tail = window[max(offset, len(window) - _LONGEST_BOUNDARY) :]
            self.skipped_bytes += len(window) - offset - self._discard(bytes(tail))
            return None
        self.skipped_bytes += match.start() - offset
        self._new_parser(window_start + match.start())
        return memoryview(window)[match.start() :]

    def _tag_start(self, position: int) -> int:
        """Return where the tag an error at ``position`` is in begins (as far as the bytes at hand go)."""
        window, window_start = self._window(self._retained_start)
        found = window.rfind(b"<", 0, max(0, position - window_start))
        return window_start + found if found >= 0 else position

    def _boundary_at(self, position: int) -> bool:
        window, window_start = self._window(position)
        offset = position - window_start
        return offset >= 0 and _BOUNDARY.match(window, offset) is not None

    def _window(self, position: int) -> tuple[bytes, int]:
        """Return the bytes at hand (see ``_retained``) from ``position`` on, where they reach back that far."""
        if position >= self._current_start or not self._retained:
            return self._current, self._current_start
        return self._retained + self._current, self._retained_start

    def _retain(self, position: int) -> None:
        """Keep the stream's bytes from ``position`` (expat's unfinished token) for the next chunk."""
        current_start = self._current_start
        if position >= current_start:
            self._retained = self._current[position - current_start :]
        else:
            skip = max(0, position - self._retained_start)
            self._retained = self._retained[skip:] + self._current
            position = self._retained_start + skip
        self._retained_start = position

    def _discard(self, tail: bytes) -> int:
        """No parser until the next top-level start tag; keep what of ``tail`` may begin one.

        Returns how many bytes were kept (they are counted as skipped only once passed over).
        """
        self._abort_element()
        self._discarding = True
        cut = tail.rfind(b"<")
        self._tail = tail[cut:] if cut >= 0 else b""
        self._depth = 0
        return len(self._tail)

    def _scan_for_boundary(self, data: bytes | memoryview, start: int) -> None:
        """While discarding: find the next top-level start tag and parse from there."""
        tail = self._tail
        window = tail + bytes(data) if tail else data
        window_start = start - len(tail)
        match = _BOUNDARY.search(window)
        if match is None:
            kept = self._discard(bytes(window[-_LONGEST_BOUNDARY:]))
            self.skipped_bytes += len(window) - kept
            return
        self.skipped_bytes += match.start()
        self._discarding = False
        self._tail = b""
        self._new_parser(window_start + match.start())
        self._parse(memoryview(window)[match.start() :])

    def _drop(self, reason: str, position: int) -> None:
        """Report the element (or bytes) at ``position`` as dropped and forget the element."""
        self.malformed += 1
        self._abort_element()
        if self._on_malformed is not None:
            self._deliver()  # the elements before it first, as they came
            self._on_malformed(reason, self._excerpt(position))

    def _excerpt(self, position: int) -> bytes:
        if position == self._head_start and position < self._current_start:
            return self._head
        window, window_start = self._window(position)
        offset = max(0, position - window_start)
        return bytes(window[offset : offset + _EXCERPT_BYTES])

    def _abort_element(self) -> None:
        """Forget the element being parsed; its BLOB receivers are told."""
        receivers, self._receivers = self._receivers, []
        for receiver in receivers:
            receiver.abort()
        self._reset_element()

    def _position(self) -> int:
        return int(self._expat.CurrentByteIndex) + self._base

    # ------------------------------------------------------------------ expat handlers
    # The hot path: a set vector of one or two members costs a handful of these calls. Members are
    # collected as (attributes, text pieces) and built in one loop at the element's end.

    def _start_element(self, name: str, attributes: dict[str, str]) -> None:
        depth = self._depth + 1
        self._depth = depth
        if depth == 2 and name == self._member_tag:
            self._member = attributes
            if self._blob_members:
                self._begin_blob(attributes)
            else:
                self._text = []
        elif depth == 1:
            # A top-level element begins (inline: once per element).
            self._start = self._expat.CurrentByteIndex + self._base
            self._attributes = attributes
            self._members = []
            self._blob_chars = 0
            self._blob_members = False
            if (kind := _SET_KINDS.get(name)) is not None:
                self._mode = _SET
                self._kind = kind
                self._member_tag = _SET_MEMBER_TAGS[kind]
                self._blob_members = (
                    kind is VectorKind.BLOB and self._open_blob is not None
                )
            else:
                self._begin(name)
        elif name in TOP_LEVEL_TAGS:
            raise _Truncated(self._position())

    def _begin(self, name: str) -> None:
        """Begin any other top-level element: a definition, deletion, message or ignored tag."""
        if (kind := _DEF_KINDS.get(name)) is not None:
            self._mode = _DEF
            self._kind = kind
            self._member_tag = _DEF_MEMBER_TAGS[kind]
        else:
            self._mode = _OTHER_MODES.get(name, _IGNORED)
            self._member_tag = None

    def _begin_blob(self, attributes: dict[str, str]) -> None:
        """Open the receiver of a BLOB member (the vector's device and name are known by now)."""
        assert self._open_blob is not None
        device = self._attributes.get("device")
        vector = self._attributes.get("name")
        member = attributes.get("name")
        if not (device and vector and member):
            return  # reported at the element's end; its text is not kept meanwhile
        self._deliver()  # the opener looks at what the elements before (a definition) made known
        receiver = self._open_blob(
            device,
            vector,
            member,
            attributes.get("format") or "",
            _optional_int(attributes.get("size")),
        )
        if receiver is not None:
            self._blob = receiver
            self._receivers.append(receiver)

    def _characters(self, data: str) -> None:
        text = self._text
        if text is not None:
            text.append(data)
        elif self._blob is not None:
            self._blob_chars += len(data)
            self._blob.write(data)

    def _end_element(self, _name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 2:
            member = self._member
            if member is not None:
                self._member = None
                if self._blob_members:
                    self._end_blob_member(member)
                else:
                    self._members.append((member, self._text))
                    self._text = None
        elif depth == 1:
            self._end_top_level()

    def _end_blob_member(self, attributes: dict[str, str]) -> None:
        receiver, self._blob = self._blob, None
        if receiver is not None:
            receiver.end()
        self._members.append((attributes, receiver))

    def _end_top_level(self) -> None:
        mode = self._mode
        if mode == _IGNORED:
            return
        start = self._start
        # Cheap first: the element cannot be larger than what was fed since it began.
        if self._offset - start - self._blob_chars > self._max_element_bytes and (
            int(self._expat.CurrentByteIndex) + self._base - start - self._blob_chars
            > self._max_element_bytes
        ):
            self._drop("oversized element", start)
            self.oversized += 1
            return
        try:
            if mode == _SET:
                element: IndiElement = self._build_set()
            elif mode == _DEF:
                element = self._build_def()
            elif mode == _DELETE:
                element = self._build_delete()
            else:
                element = self._build_message()
        except ProtocolError as err:
            self._drop(str(err), self._start)
            return
        if self._receivers:
            self._receivers = []  # the consumer owns them now
        self.elements += 1
        self._pending.append(element)

    def _build_set(self) -> SetVector:
        kind = self._kind
        assert kind is not None
        members: list[SetMember]
        if kind is not VectorKind.TEXT and kind is not VectorKind.BLOB:
            # Numbers, switches and lights (almost every element): a token, its layout whitespace stripped.
            tag = self._member_tag
            members = [
                SetMember(
                    attributes.get("name") or _no_member_name(tag),
                    "".join(parts).strip(),
                )
                for attributes, parts in self._members
            ]
        elif self._blob_members:
            members = []
            for attributes, receiver in self._members:
                members.append(
                    SetMember(
                        _member_name(attributes, self._member_tag),
                        "",
                        _optional_int(attributes.get("size")),
                        attributes.get("format"),
                        receiver,
                    )
                )
        else:
            members = []
            token = kind is not VectorKind.TEXT
            blob = kind is VectorKind.BLOB  # collected as text: no receiver was given
            for attributes, parts in self._members:
                name = attributes.get("name")
                if not name:
                    raise _missing_member_name(self._member_tag)
                text = "".join(parts)  # one piece almost always: returned as it is
                members.append(
                    SetMember(
                        name,
                        text.strip() if token else member_text(text, kind),
                        _optional_int(attributes.get("size")) if blob else None,
                        attributes.get("format") if blob else None,
                    )
                )
        attributes = self._attributes
        device = attributes.get("device")
        name = attributes.get("name")
        if not device or not name:
            raise _missing(attributes, f"set{kind.value}Vector")
        timeout_text = attributes.get("timeout")
        timeout = None
        if timeout_text is not None:
            cached = _TIMEOUTS.get(timeout_text, _UNKNOWN)
            timeout = _parse_timeout(timeout_text) if cached is _UNKNOWN else cached
        stamp = attributes.get("timestamp")
        timestamp = None
        if stamp:
            # parse_timestamp's common case inline: ISO-8601 without a zone, i.e. UTC (given as its
            # offset: cheaper than replacing the zone after); anything else fails here and goes to it.
            try:
                timestamp = datetime.fromisoformat(stamp + "+00:00")
            except ValueError:
                timestamp = parse_timestamp(stamp)
            else:
                if timestamp.tzinfo is None:
                    timestamp = timestamp.replace(tzinfo=UTC)
        return SetVector(
            kind,
            device,
            name,
            attributes.get("state") or None,
            timeout,  # type: ignore[arg-type]
            timestamp,
            attributes.get("message") or None,
            tuple(members),
        )

    def _build_def(self) -> DefVector:
        kind = self._kind
        assert kind is not None
        members = []
        for attributes, parts in self._members:
            name = _member_name(attributes, self._member_tag)
            members.append(
                DefMember(
                    name,
                    attributes.get("label") or name,
                    member_text("".join(parts), kind),
                    attributes.get("format") or None,
                    parse_number(attributes.get("min")),
                    parse_number(attributes.get("max")),
                    parse_number(attributes.get("step")),
                )
            )
        attributes = self._attributes
        device = attributes.get("device")
        vector_name = attributes.get("name")
        if not device or not vector_name:
            raise _missing(attributes, f"def{kind.value}Vector")
        return DefVector(
            kind=kind,
            device=device,
            name=vector_name,
            label=attributes.get("label") or vector_name,
            group=attributes.get("group") or None,
            state=attributes.get("state") or None,
            perm=attributes.get("perm") or None,
            rule=attributes.get("rule") or None,
            timeout=_optional_float(attributes.get("timeout")),
            timestamp=parse_timestamp(attributes.get("timestamp")),
            message=attributes.get("message") or None,
            members=tuple(members),
        )

    def _build_delete(self) -> DelProperty:
        attributes = self._attributes
        device = attributes.get("device")
        if not device:
            raise _missing(attributes, "delProperty")
        return DelProperty(
            device=device,
            name=attributes.get("name") or None,
            timestamp=parse_timestamp(attributes.get("timestamp")),
            message=attributes.get("message") or None,
        )

    def _build_message(self) -> ServerMessage:
        attributes = self._attributes
        return ServerMessage(
            device=attributes.get("device") or None,
            timestamp=parse_timestamp(attributes.get("timestamp")),
            message=attributes.get("message") or None,
        )


def _member_name(attributes: dict[str, str], tag: str | None) -> str:
    name = attributes.get("name")
    if not name:
        raise _missing_member_name(tag)
    return name


def _no_member_name(tag: str | None) -> NoReturn:
    raise _missing_member_name(tag)


def _missing_member_name(tag: str | None) -> ProtocolError:
    return ProtocolError(f"<{tag}> without the required attribute 'name'")


_UNKNOWN: Final = object()
_TIMEOUTS: dict[str, float | None] = {}
"""Timeouts as sent (a few distinct ones per server), parsed once each."""
_MAX_TIMEOUTS = 256


def _parse_timeout(text: str) -> float | None:
    value = parse_number(text)
    if len(_TIMEOUTS) < _MAX_TIMEOUTS:
        _TIMEOUTS[text] = value
    return value


def _missing(attributes: dict[str, str], tag: str) -> ProtocolError:
    missing = "device" if not attributes.get("device") else "name"
    return ProtocolError(f"<{tag}> without the required attribute {missing!r}")


def _optional_float(text: str | None) -> float | None:
    return None if text is None else parse_number(text)


def _optional_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_element(raw: bytes) -> IndiElement | None:
    """Parse one complete top-level element; None for elements a client ignores.

    Ignored: ``new*Vector`` forwarded from other clients, ``getProperties``, ``enableBLOB``, pings and
    unknown tags. Raises ProtocolError for malformed or incomplete XML, a missing device/name attribute,
    and DTDs or entities (see the module's docstring).
    """
    found: list[IndiElement] = []
    problems: list[str] = []
    parser = IndiStreamParser(
        found.append, lambda reason, _excerpt: problems.append(reason)
    )
    parser.feed(raw)
    if not problems:
        try:
            parser.close()
        except ProtocolError as err:
            problems.append(str(err))
    if problems:
        raise ProtocolError(problems[0])
    return found[0] if found else None
