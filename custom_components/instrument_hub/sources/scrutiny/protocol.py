"""The Scrutiny client API's wire format: framed, compressed, hashed JSON objects over TCP.

A frame is ``<SCRUTINY size=<hex> flags=<c?h?>>`` + payload (+ the payload's 16-byte MD5 when the
flags have ``h``); ``size`` counts the payload only, ``c`` means the payload is zlib-compressed JSON.
The server always sends ``flags=ch`` (scrutiny/tools/stream_datagrams.py); it accepts any flags.

The SDK's own parser (``StreamParser``) drops a frame whose hash is wrong together with every byte
its header declared, so a truncated frame or a wrong size swallows the frames that follow; it also
relies on a 1 s inter-chunk timeout. :class:`FrameDecoder` instead rescans right after a header that
did not lead to a valid frame, and takes a complete, valid frame that starts inside a still
incomplete one as proof that the outer one was cut short. Its output depends only on the bytes,
never on how they were chunked or on time. No Home Assistant imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import hashlib
import json
import re
from typing import Any, Final
import zlib

from .. import json_wire

HASH_SIZE: Final = 16
MTU: Final = 1024 * 1024
"""The largest payload the server sends or accepts (TCPClientHandler.STREAM_MTU)."""
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""The largest decompressed message kept (a zlib bomb is refused, not inflated)."""
LOOP_INFLATE_BYTES: Final = 1024 * 1024
"""The most a frame may inflate to while decoded on the event loop (about a millisecond's work); one
that inflates further is decoded again in the executor (``MessageTooLargeForLoop``)."""
COMPRESSION_LEVEL: Final = 1
HEADER_START: Final = b"<SCRUTINY size="
_HEADER: Final = re.compile(rb"<SCRUTINY size=([0-9a-fA-F]{1,8}) flags=(c?h?)>")
_MAX_HEADER: Final = len(b"<SCRUTINY size=ffffffff flags=ch>")

type MalformedCallback = Callable[[str, bytes], None]
"""Told the reason and an excerpt of every skipped frame or stretch of garbage."""


class MessageError(ValueError):
    """A verified frame whose payload is not a Scrutiny message (bad zlib, bad JSON, not an object)."""


class MessageTooLargeForLoop(MessageError):
    """A frame that inflates past the limit it was decoded with (decode it again off the loop)."""


@dataclass(slots=True)  # one per message: not frozen, as events.Reading
class Frame:
    """One verified frame: its payload (still compressed when ``compressed``)."""

    payload: bytes
    compressed: bool


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Return one message as the server's own framing: compressed, hashed (``flags=ch``)."""
    data = zlib.compress(
        json.dumps(message, separators=(",", ":")).encode(), COMPRESSION_LEVEL
    )
    return (
        b"<SCRUTINY size=%x flags=ch>" % len(data) + data + hashlib.md5(data).digest()
    )


def decode_frame(frame: Frame, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Return the message a verified frame carries; MessageError when it is not one.

    ``limit`` bounds the inflated size: past ``MAX_MESSAGE_BYTES`` the frame is refused, past a
    smaller limit it raises MessageTooLargeForLoop (the caller decodes it again off the loop).
    """
    data = frame.payload
    if frame.compressed:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, limit)
        except zlib.error as err:
            raise MessageError(f"bad zlib data: {err}") from err
        if inflater.unconsumed_tail:
            if limit < MAX_MESSAGE_BYTES:
                raise MessageTooLargeForLoop(f"more than {limit} bytes once inflated")
            raise MessageError(f"more than {MAX_MESSAGE_BYTES} bytes once inflated")
        if not inflater.eof:
            raise MessageError("bad zlib data: incomplete stream")
    elif len(data) > limit and limit < MAX_MESSAGE_BYTES:
        raise MessageTooLargeForLoop(f"more than {limit} bytes of JSON")
    try:
        message = json_wire.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise MessageError(f"bad JSON: {err}") from err
    if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
        raise MessageError("not a Scrutiny message (no cmd)")
    return message


@dataclass(slots=True)
class _Header:
    start: int
    end: int
    size: int
    compressed: bool
    hashed: bool

    @property
    def frame_end(self) -> int:
        return self.end + self.size + (HASH_SIZE if self.hashed else 0)


class FrameDecoder:
    """Turn a byte stream into verified frames, skipping bad ones and resyncing on the next header.

    ``feed`` returns the frames completed by the new bytes. Skipped bytes are reported to
    ``on_malformed`` (bad hash, oversized or truncated frame, garbage between frames).
    """

    def __init__(
        self, on_malformed: MalformedCallback | None = None, *, mtu: int = MTU
    ) -> None:
        """Start with an empty buffer."""
        self._on_malformed = on_malformed
        self._mtu = mtu
        self._buffer = bytearray()
        self._garbage = 0  # bytes skipped since the last frame or error
        self._after_error = False
        self.frames = 0
        self.malformed = 0
        self.skipped_bytes = 0

    def reset(self) -> None:
        """Forget a partial frame (a new connection starts clean)."""
        self._buffer.clear()
        self._garbage = 0
        self._after_error = False

    @property
    def buffered(self) -> int:
        """Return the bytes held for a frame not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames they completed, in stream order."""
        self._buffer += data
        frames: list[Frame] = []
        buffer = self._buffer
        position = 0
        mtu = self._mtu
        while True:
            # The usual case first, in one go: the next header is well formed and its frame is
            # complete and verified (what the general path below would conclude, only faster).
            start = buffer.find(HEADER_START, position)
            match = _HEADER.match(buffer, start) if start >= 0 else None
            if match is not None:
                end = match.end()
                size = int(match.group(1), 16)
                flags = match.group(2)
                hashed = b"h" in flags
                frame_end = end + size + (HASH_SIZE if hashed else 0)
                if size <= mtu and frame_end <= len(buffer):
                    payload = bytes(buffer[end : end + size])
                    if (
                        not hashed
                        or hashlib.md5(payload).digest()
                        == buffer[end + size : frame_end]
                    ):
                        self._garbage += start - position
                        if self._garbage or self._after_error:
                            self._report_garbage()
                        frames.append(Frame(payload, b"c" in flags))
                        position = frame_end
                        continue
            header = self._next_header(buffer, position)
            if header is None:
                # Keep what may be the start of a header split across reads.
                keep = self._partial_header_start(buffer, position)
                self._garbage += keep - position
                position = keep
                break
            self._garbage += header.start - position
            position = header.start
            if header.size > self._mtu:
                self._malformed(
                    f"frame of {header.size} bytes (over the {self._mtu} limit)",
                    buffer[header.start : header.end],
                    header.end - header.start,
                )
                position = header.end
                continue
            if header.frame_end <= len(buffer):
                frame = self._verified(buffer, header)
                if frame is None:
                    self._malformed(
                        "bad MD5 (a corrupted frame or a wrong size)",
                        buffer[header.start : header.end],
                        header.end - header.start,
                    )
                    position = header.end  # resync right after this header
                    continue
                self._report_garbage()
                frames.append(frame)
                position = header.frame_end
                continue
            inner = self._valid_inner_frame(buffer, header)
            if inner is None:
                break  # wait for the rest of the frame
            self._malformed(
                "truncated frame",
                buffer[header.start : header.end],
                inner.start - header.start,
            )
            position = inner.start
        del buffer[:position]
        self.frames += len(frames)
        return frames

    def _report_garbage(self) -> None:
        """Report the bytes skipped before a frame, unless they were the rest of a bad frame."""
        if self._garbage and not self._after_error:
            self.malformed += 1
            if self._on_malformed is not None:
                self._on_malformed(f"{self._garbage} bytes outside any frame", b"")
        self.skipped_bytes += self._garbage
        self._garbage = 0
        self._after_error = False

    def _next_header(self, buffer: bytearray, position: int) -> _Header | None:
        while (start := buffer.find(HEADER_START, position)) >= 0:
            match = _HEADER.match(buffer, start)
            if match is not None:
                flags = match.group(2)
                return _Header(
                    start,
                    match.end(),
                    int(match.group(1), 16),
                    compressed=b"c" in flags,
                    hashed=b"h" in flags,
                )
            if len(buffer) - start < _MAX_HEADER and _could_be_header(buffer, start):
                return None  # a header still arriving
            position = start + 1
        return None

    @staticmethod
    def _partial_header_start(buffer: bytearray, position: int) -> int:
        """Return where a header that may still be arriving starts (else the buffer's end)."""
        tail_start = max(position, len(buffer) - _MAX_HEADER + 1)
        index = buffer.find(b"<", tail_start)
        while index >= 0:
            if _could_be_header(buffer, index):
                return index
            index = buffer.find(b"<", index + 1)
        return len(buffer)

    @staticmethod
    def _verified(buffer: bytearray, header: _Header) -> Frame | None:
        payload = bytes(buffer[header.end : header.end + header.size])
        if header.hashed:
            digest = buffer[header.end + header.size : header.frame_end]
            if hashlib.md5(payload).digest() != digest:
                return None
        return Frame(payload, header.compressed)

    def _valid_inner_frame(self, buffer: bytearray, outer: _Header) -> _Header | None:
        """Return a complete frame with a valid hash that starts inside ``outer`` (still incomplete).

        Compressed payloads never contain a whole valid frame, so one there means ``outer`` was cut
        short (or declared too large a size) and the stream goes on at that frame.
        """
        position = outer.end
        while (header := self._next_header(buffer, position)) is not None:
            if (
                header.hashed
                and header.size <= self._mtu
                and header.frame_end <= len(buffer)
                and self._verified(buffer, header) is not None
            ):
                return header
            position = header.start + 1
        return None

    def _malformed(self, reason: str, excerpt: bytes | bytearray, skipped: int) -> None:
        self.malformed += 1
        self.skipped_bytes += skipped + self._garbage
        self._garbage = 0
        self._after_error = True
        if self._on_malformed is not None:
            self._on_malformed(reason, bytes(excerpt[:80]))


def _could_be_header(buffer: bytearray, start: int) -> bool:
    """Tell whether the bytes from ``start`` to the end are a prefix of some header."""
    tail = bytes(buffer[start:])
    if len(tail) <= len(HEADER_START):
        return HEADER_START.startswith(tail)
    if not tail.startswith(HEADER_START):
        return False
    return _HEADER_PREFIX.fullmatch(tail[len(HEADER_START) :]) is not None


_HEADER_PREFIX: Final = re.compile(
    rb"[0-9a-fA-F]{0,8}|[0-9a-fA-F]{1,8}( (f(l(a(g(s(=(c?h?)?)?)?)?)?)?)?)?"
)
