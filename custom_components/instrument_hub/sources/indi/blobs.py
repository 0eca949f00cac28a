"""Receive a BLOB while it streams in: base64 decoded on the loop in small pieces, inflated and spooled off it.

What runs where. The parser hands a member's base64 over as it arrives (``write``), never more than one
read brought. On the loop each piece loses the whitespace servers wrap the text in (indilib: a newline every
72 columns), is cut at a multiple of 4 characters (the rest waits for the next piece) and decoded, strictly:
microseconds per read. The decoded bytes are gathered into pieces of ``PIECE_BYTES`` and handed, in order, to
executor jobs (one at a time per BLOB) that inflate ``.z`` files (zlib's decompressobj, its output taken in
bounded pieces) and write to a spool file, or keep the bytes in memory when there is no spool folder. Neither
inflating nor writing holds the GIL for long, and the loop never holds a whole file.

A spool folder that cannot be used (it is a file, the disk is full) does not lose the BLOB: its bytes are
kept in memory instead (within the cap), so that whoever saves the reading meets the same problem and
says so where the user looks (the file store reports it on the event).

Limits. The cap applies to the decoded length, counted as the base64 arrives (the wrapping does not count)
and, for ``.z`` files, again while inflating, which stops past the cap: a zip bomb costs at most the cap. A
truncated ``.z`` (no end marker), base64 that is corrupt or cut off, and a failed write are reported, never
delivered as if whole. Memory: one piece per BLOB on the loop plus the jobs' backlog, which the source keeps
below a high-water mark by pausing the connection (``backlog``); the spool file is on disk.
"""

from __future__ import annotations

import asyncio
import binascii
from collections import deque
from collections.abc import Callable
import contextlib
import logging
import os
from pathlib import Path
from typing import Final
import zlib

from ...blob_store import FileRefused, create_spool_file, discard_spooled
from ...events import BlobData

_LOGGER = logging.getLogger(__name__)

PIECE_BYTES: Final = 256 * 1024
"""Decoded bytes handed to a job at once."""
INFLATE_PIECE_BYTES: Final = 1024 * 1024
"""Most bytes one call of the inflater may produce (a zip bomb is taken in pieces of this)."""
_WHITESPACE: Final = b" \t\r\n"
_COMPRESSED_SUFFIX: Final = ".z"


class BlobTooLarge(ValueError):
    """A BLOB is larger than the configured limit (after decoding, or once inflated)."""


class Base64Stream:
    """Decode base64 that arrives in pieces: whitespace ignored, 4-character groups kept across pieces."""

    def __init__(self) -> None:
        """Start with nothing carried over."""
        self._carry = b""
        self._padded = False

    def decode(self, text: str) -> bytes:
        """Return the bytes of the complete 4-character groups so far; raise ValueError when corrupt."""
        raw = text.encode("ascii").translate(None, _WHITESPACE)
        if not raw:
            return b""
        if self._padded:
            raise binascii.Error("data after the padding")
        if self._carry:
            raw = self._carry + raw
        usable = len(raw) - len(raw) % 4
        self._carry = raw[usable:]
        if not usable:
            return b""
        group = raw[:usable] if self._carry else raw
        self._padded = group.endswith(b"=")
        return binascii.a2b_base64(group, strict_mode=True)

    def finish(self) -> None:
        """Raise binascii.Error when the text ended inside a 4-character group (it was cut off)."""
        if self._carry:
            raise binascii.Error("the base64 text was cut off")


class _Sink:
    """Where a BLOB's decoded bytes go; run by one executor job at a time (never on the loop)."""

    def __init__(
        self, spool_folder: Path | None, *, compressed: bool, max_bytes: int
    ) -> None:
        self._spool_folder = spool_folder
        self._max_bytes = max_bytes
        self._inflater = zlib.decompressobj() if compressed else None
        self._fd: int | None = None
        self._path: Path | None = None
        self._in_memory = spool_folder is None
        self.trivial = self._in_memory and not compressed
        """Nothing to inflate and no file: writing is appending to a list (no blocking work at all)."""
        self._chunks: list[bytes] = []
        self._spooled = 0  # bytes in the spool file
        self.size = 0

    def write(self, data: bytes) -> None:
        inflater = self._inflater
        if inflater is None:
            self._out(data)
            return
        while data and not inflater.eof:
            self._out(inflater.decompress(data, INFLATE_PIECE_BYTES))
            data = inflater.unconsumed_tail

    def finish(self, fmt: str) -> BlobData:
        inflater = self._inflater
        if inflater is not None:
            if not inflater.eof:
                self._out(inflater.flush())
            if not inflater.eof:
                raise zlib.error(
                    "truncated compressed data: the stream ends before its end marker"
                )
        if self._in_memory:
            data = b"".join(self._chunks)
            self._chunks = []
            return BlobData(data, fmt, len(data))
        if self._fd is None:
            try:
                self._open()
            except (OSError, FileRefused) as err:
                self._keep_in_memory(err, b"")
                return self.finish(fmt)
        fd, self._fd = self._fd, None
        assert fd is not None
        try:
            # Durable before it is moved into place: a crash must not leave an empty "saved" file.
            os.fsync(fd)
        finally:
            os.close(fd)
        assert self._path is not None
        # The path stays known: an abort racing the finish still removes the file.
        return BlobData(b"", fmt, self.size, spooled=self._path)

    def discard(self) -> None:
        self._chunks = []
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        path, self._path = self._path, None
        if path is not None:
            discard_spooled(path)

    def _out(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise BlobTooLarge(f"more than {self._max_bytes} bytes once inflated")
        if self._in_memory:
            self._chunks.append(data)
            return
        view = memoryview(data)
        try:
            if self._fd is None:
                self._open()
            while view:
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                self._spooled += written
                view = view[written:]
        except (OSError, FileRefused) as err:
            self._keep_in_memory(err, bytes(view))

    def _open(self) -> None:
        assert self._spool_folder is not None
        self._fd, self._path = create_spool_file(self._spool_folder)

    def _keep_in_memory(self, err: Exception, rest: bytes) -> None:
        """Go on in memory: what the spool file holds is read back, the file removed."""
        _LOGGER.debug("Cannot spool a BLOB (%s): keeping it in memory", err)
        chunks = []
        fd = self._fd
        if fd is not None:
            offset = 0
            while offset < self._spooled:
                piece = os.pread(
                    fd, min(INFLATE_PIECE_BYTES, self._spooled - offset), offset
                )
                if not piece:
                    break
                chunks.append(piece)
                offset += len(piece)
        self.discard()
        self._in_memory = True
        self._chunks = [*chunks, rest] if rest else chunks


class _Final:
    """Markers in a transfer's job queue: finish the file, or throw it away."""

    def __init__(self, name: str) -> None:
        self.name = name


_FINISH: Final = _Final("finish")
_DISCARD: Final = _Final("discard")

type TransferCallback = Callable[["BlobTransfer"], None]


class BlobTransfer:
    """One BLOB member on its way to a file: the parser's receiver first, then the source's pending reading.

    ``finish`` (once the element is complete) makes it end with ``result`` (the BlobData) or ``error`` (why
    it is not delivered); ``on_done`` is called on the loop then. ``abort`` throws it away.
    """

    def __init__(
        self,
        fmt: str,
        max_bytes: int,
        spool_folder: Path | None,
        on_progress: Callable[[], None],
    ) -> None:
        """Prepare a transfer; ``on_progress`` is called whenever its backlog shrank, and once it is done."""
        compressed = fmt.endswith(_COMPRESSED_SUFFIX)
        self.format = fmt.removesuffix(_COMPRESSED_SUFFIX) if compressed else fmt
        self._max_bytes = max_bytes
        self._decoder = Base64Stream()
        self._sink = _Sink(spool_folder, compressed=compressed, max_bytes=max_bytes)
        self._on_progress = on_progress
        self._on_done: TransferCallback | None = None
        self._piece: list[bytes] = []
        self._piece_bytes = 0
        self._jobs: deque[bytes | _Final] = deque()
        self._running: asyncio.Future[tuple[int, bool]] | None = None
        self._handed_over = False  # a job may have created a spool file
        self._final_queued = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.decoded = 0
        """Bytes decoded from the base64 so far (before inflating)."""
        self.backlog = 0
        """Decoded bytes handed to jobs and not written yet."""
        self.error: str | None = None
        self.result: BlobData | None = None
        self.done = False

    @property
    def empty(self) -> bool:
        """Return True when no content arrived (an empty member only acknowledges)."""
        return self.decoded == 0 and self.error is None

    # ------------------------------------------------------------------ the parser's receiver

    def write(self, text: str) -> None:
        """Decode the next piece of base64 and hand full pieces to the jobs."""
        if self.error is not None or self._final_queued:
            return
        try:
            data = self._decoder.decode(text)
        except (
            ValueError
        ) as err:  # binascii.Error and UnicodeEncodeError are ValueErrors
            self._fail(f"undecodable: {err}")
            return
        if not data:
            return
        self.decoded += len(data)
        if self.decoded > self._max_bytes:
            self._fail(f"more than {self._max_bytes} bytes")
            return
        self._piece.append(data)
        self._piece_bytes += len(data)
        if self._piece_bytes >= PIECE_BYTES:
            self._hand_over()

    def end(self) -> None:
        """Take the end of the member's text: check it ended on a group and hand over the rest."""
        if self.error is not None or self._final_queued:
            return
        try:
            self._decoder.finish()
        except ValueError as err:
            self._fail(f"undecodable: {err}")
            return
        self._hand_over()

    def abort(self) -> None:
        """Throw the BLOB away (its element was dropped, or the source stops)."""
        self._on_done = None
        self._fail("aborted")

    # ------------------------------------------------------------------ the source

    def finish(self, on_done: TransferCallback) -> None:
        """Complete the file (or clean up after a failure) and call ``on_done`` on the loop once it is."""
        if self.done:
            on_done(self)
            return
        self._on_done = on_done
        if self._final_queued:
            return
        self._final_queued = True
        self._queue(_DISCARD if self.error is not None else _FINISH)

    async def wait_idle(self) -> None:
        """Return once no job of this transfer runs or waits (for stopping cleanly)."""
        await self._idle.wait()

    # ------------------------------------------------------------------ jobs

    def _hand_over(self) -> None:
        if not self._piece:
            return
        piece = self._piece[0] if len(self._piece) == 1 else b"".join(self._piece)
        self._piece = []
        self._piece_bytes = 0
        self.backlog += len(piece)
        self._queue(piece)

    def _queue(self, item: bytes | _Final) -> None:
        if isinstance(item, bytes):
            self._handed_over = True
        elif item is _DISCARD and not self._handed_over:
            self._complete()  # nothing was ever written: nothing to remove
            return
        self._jobs.append(item)
        self._start_job()

    def _start_job(self) -> None:
        if self._running is not None or not self._jobs:
            return
        if self._sink.trivial and self.decoded <= PIECE_BYTES:
            # Kept in memory as it is: the job is a list append (and a join of at most one piece), less work
            # than the hop to a thread and back, which would hold every later event for a loop iteration.
            self._after_job(self._drain)
            return
        self._idle.clear()
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(None, self._drain)
        self._running.add_done_callback(self._drained)

    def _drain(self) -> tuple[int, bool]:
        """Run in the executor (inline for a trivial sink): process queued pieces in order; return (bytes written, final item done)."""
        written = 0
        jobs = self._jobs
        while jobs:
            item = jobs.popleft()
            if item is _FINISH:
                self.result = self._sink.finish(self.format)
                return written, True
            if item is _DISCARD:
                self._sink.discard()
                return written, True
            assert isinstance(item, bytes)
            self._sink.write(item)
            written += len(item)
        return written, False

    def _drained(self, future: asyncio.Future[tuple[int, bool]]) -> None:
        """Back on the loop after a job: account, go on with what was queued meanwhile, or complete."""
        self._running = None
        self._after_job(future.result)

    def _after_job(self, result: Callable[[], tuple[int, bool]]) -> None:
        """Account for a job whose outcome ``result`` returns (or raises)."""
        try:
            written, final = result()
        except BlobTooLarge:
            self._fail_after_job("more than the limit once decompressed")
        except zlib.error as err:
            self._fail_after_job(f"undecodable: {err}")
        except OSError as err:
            self._fail_after_job(f"could not spool it: {err.strerror or err}")
        except Exception as err:
            _LOGGER.exception("Error while receiving a BLOB")
            self._fail_after_job(f"internal error: {err}")
        else:
            self.backlog = max(0, self.backlog - written)
            if self._jobs:
                self._start_job()  # queued meanwhile (a discard after the finish included)
            elif final:
                self._complete()
        if self._running is None and not self._jobs:
            self._idle.set()
        self._on_progress()

    def _fail(self, reason: str) -> None:
        """Stop taking data; remove what was written (the final job of a failed transfer)."""
        if self.error is None:
            self.error = reason
        self._piece = []
        self._piece_bytes = 0
        self._jobs.clear()
        self.backlog = 0
        if self.done:
            return
        self._final_queued = True
        self._queue(_DISCARD)

    def _fail_after_job(self, reason: str) -> None:
        self.result = None
        if self.done:
            return
        self.error = reason
        self._jobs.clear()
        self.backlog = 0
        self._final_queued = True
        self._jobs.append(_DISCARD)
        self._start_job()

    def _complete(self) -> None:
        if self.done:
            return
        self.done = True
        if self.error is not None:
            self.result = None
        self._sink = _Sink(None, compressed=False, max_bytes=0)  # drop references early
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self)
        self._on_progress()
