"""Decode a received BLOB: checked against the size cap on its decoded length, large ones in the executor."""

from __future__ import annotations

import asyncio
import binascii
import zlib

from ...events import BlobData
from .protocol import BlobTooLarge, SetMember, base64_decoded_length, decode_blob


class BlobSkipped(Exception):
    """A BLOB that is not delivered, and why (too large, undecodable, truncated)."""


async def decode_member(
    given: SetMember, max_bytes: int, executor_threshold: int
) -> BlobData:
    """Decode (and decompress) one BLOB member; raise BlobSkipped when it is not to be delivered.

    The cap applies to the decoded bytes, counted before anything is decoded (the base64 is wrapped with
    newlines by indilib: those do not count) and again after decompression (a ``.z`` file).
    """
    decoded = base64_decoded_length(given.value)
    if decoded > max_bytes:
        raise BlobSkipped(f"{decoded} bytes")
    fmt = given.format or ""
    try:
        if len(given.value) > executor_threshold:
            loop = asyncio.get_running_loop()
            data, fmt = await loop.run_in_executor(
                None, decode_blob, given.value, fmt, max_bytes
            )
        else:
            data, fmt = decode_blob(given.value, fmt, max_bytes)
    except BlobTooLarge:
        raise BlobSkipped("more than the limit once decompressed") from None
    except (binascii.Error, zlib.error, ValueError) as err:
        raise BlobSkipped(f"undecodable: {err}") from None
    return BlobData(data, fmt, len(data))
