"""BLOBs while they stream in: base64 in any pieces, the cap on the decoded length, .z inflated, spool files."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
import random
import threading
from typing import Any
import zlib

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.blob_store import spool_folder
from custom_components.instrument_hub.events import BlobData
from custom_components.instrument_hub.sources.indi import blobs as blobs_module
from custom_components.instrument_hub.sources.indi.blobs import (
    Base64Stream,
    BlobTransfer,
)
from tests.fake_indi import WAIT_SECONDS


def wrapped(data: bytes, columns: int = 72) -> str:
    """Return base64 wrapped as indilib sends it (a newline every 72 columns)."""
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + columns] for i in range(0, len(text), columns))


async def receive(
    text: str,
    fmt: str,
    max_bytes: int,
    *,
    piece: int = 1000,
    spool: Path | None = None,
) -> BlobTransfer:
    """Stream ``text`` into a transfer in pieces of ``piece`` characters; return it once it is done."""
    transfer = BlobTransfer(fmt, max_bytes, spool, lambda: None)
    for start in range(0, len(text), piece):
        transfer.write(text[start : start + piece])
    transfer.end()
    done = asyncio.Event()
    transfer.finish(lambda _transfer: done.set())
    async with asyncio.timeout(WAIT_SECONDS):
        await done.wait()
        await transfer.wait_idle()
    return transfer


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=12),
    columns=st.sampled_from([4, 7, 72, 1000]),
)
def test_base64_in_any_pieces_decodes_to_the_same_bytes(
    data: bytes, cuts: list[int], columns: int
) -> None:
    """Newlines anywhere and pieces of any length (4-character groups split across them) change nothing."""
    text = wrapped(data, columns)
    decoder = Base64Stream()
    out = b""
    last = 0
    for cut in [*sorted({min(cut, len(text)) for cut in cuts}), len(text)]:
        out += decoder.decode(text[last:cut])
        last = cut
    decoder.finish()
    assert out == data


@pytest.mark.parametrize(
    "text",
    [
        "QUJD*EVG",  # not the base64 alphabet
        "QQ==QUJD",  # data after the padding
        "QQ==\nQQ==",  # again, across pieces
        "QUJDRA",  # cut off inside a 4-character group
        "QUJD\u00e9",  # not ASCII
    ],
)
async def test_corrupt_base64_is_reported_not_delivered(text: str) -> None:
    """Corrupt or cut-off base64 is an error, never half a file."""
    transfer = await receive(text, ".bin", 1000, piece=4)
    assert transfer.result is None
    assert transfer.error is not None and transfer.error.startswith("undecodable")


async def test_wrapped_and_compressed_blobs_decode() -> None:
    """Wrapped base64 decodes; '.z' is inflated and removed from the format."""
    data = b"SIMPLE  =                    T" * 100
    plain = await receive(wrapped(data), ".fits", 1_000_000)
    assert plain.result == BlobData(data, ".fits", len(data))
    compressed = await receive(wrapped(zlib.compress(data)), ".fits.z", 1_000_000)
    assert compressed.result == BlobData(data, ".fits", len(data))


async def test_a_wrapped_blob_just_under_the_cap_counts_its_bytes_not_its_newlines() -> (
    None
):
    """A BLOB wrapped every 72 columns (as indilib sends them): its decoded length meets the cap, not its text."""
    data = bytes(range(256)) * 4000  # 1 024 000 bytes
    text = wrapped(data)
    assert len(text) * 3 // 4 > len(data)  # counting the text would skip it
    transfer = await receive(text, ".fits", len(data), piece=65536)
    assert transfer.result == BlobData(data, ".fits", len(data))
    over = await receive(text, ".fits", len(data) - 1, piece=65536)
    assert (over.result, over.error) == (None, f"more than {len(data) - 1} bytes")


async def test_a_truncated_compressed_blob_is_an_error_not_half_a_file(
    tmp_path: Path,
) -> None:
    """A .z stream cut off before its end is reported, never delivered as if whole; nothing stays spooled."""
    compressed = zlib.compress(random.Random(2).randbytes(400_000))
    cut = base64.b64encode(compressed[: len(compressed) // 2]).decode()
    spool = spool_folder(tmp_path)
    transfer = await receive(cut, ".fits.z", 10**6, piece=65536, spool=spool)
    assert transfer.result is None
    assert transfer.error is not None and "truncated" in transfer.error
    assert list(spool.iterdir()) == []


async def test_decompression_stops_at_the_cap() -> None:
    """A small compressed BLOB that inflates beyond the cap is refused, in bounded pieces."""
    bomb = base64.b64encode(zlib.compress(b"\0" * 10_000_000)).decode()
    assert len(bomb) < 20_000
    transfer = await receive(bomb, ".bin.z", 100_000)
    assert (transfer.result, transfer.error) == (
        None,
        "more than the limit once decompressed",
    )


async def test_a_large_blob_is_spooled_in_pieces(tmp_path: Path) -> None:
    """The decoded bytes go to a spool file in pieces; the result names the file, holding no bytes."""
    data = random.Random(4).randbytes(3_000_000)
    spool = spool_folder(tmp_path)
    transfer = await receive(wrapped(data), ".fits", 10**7, piece=16384, spool=spool)
    blob = transfer.result
    assert blob is not None and blob.data == b"" and blob.size == len(data)
    assert blob.spooled is not None and blob.spooled.parent == spool
    assert blob.spooled.read_bytes() == data
    assert transfer.backlog == 0


async def test_an_empty_member_creates_no_file(tmp_path: Path) -> None:
    """A member without content (an acknowledgement) never touches the disk."""
    spool = spool_folder(tmp_path)
    transfer = BlobTransfer(".fits", 1000, spool, lambda: None)
    transfer.write("\n  \n")
    transfer.end()
    assert transfer.empty
    transfer.abort()
    await transfer.wait_idle()
    assert not spool.exists()


async def test_abort_removes_the_spool_file_even_while_a_job_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aborting a transfer whose piece is being written waits for the job and removes the file."""
    gate = threading.Event()
    writing = threading.Event()
    real_write = blobs_module._Sink.write

    def slow_write(self: Any, data: bytes) -> None:
        real_write(self, data)
        writing.set()
        gate.wait(WAIT_SECONDS)

    monkeypatch.setattr(blobs_module._Sink, "write", slow_write)
    spool = spool_folder(tmp_path)
    transfer = BlobTransfer(".fits", 10**7, spool, lambda: None)
    transfer.write(
        base64.b64encode(b"x" * 300_000).decode()
    )  # more than a piece: a job starts
    async with asyncio.timeout(WAIT_SECONDS):
        while not writing.is_set():
            await asyncio.sleep(
                0.005
            )  # waiting for the executor thread; it has no event for the loop
    assert len(list(spool.iterdir())) == 1
    transfer.abort()
    gate.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await transfer.wait_idle()
    assert transfer.done and transfer.result is None
    assert list(spool.iterdir()) == []


async def test_a_failing_disk_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails (disk full) skips the BLOB with the reason."""

    def full(self: Any, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs_module._Sink, "write", full)
    transfer = await receive(
        base64.b64encode(b"x" * 1000).decode(), ".bin", 10**6, spool=tmp_path
    )
    assert transfer.result is None
    assert transfer.error == "could not spool it: No space left on device"
