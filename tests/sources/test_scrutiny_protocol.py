"""The Scrutiny framing on captured server traffic: every frame back, bad ones skipped, any chunking."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
import zlib

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.sources.scrutiny.protocol import (
    Frame,
    FrameDecoder,
    MessageError,
    decode_frame,
    encode_message,
)

CAPTURE = Path(__file__).parent.parent / "fixtures" / "scrutiny" / "raw_messages.jsonl"


def captured_messages() -> list[dict[str, Any]]:
    """Return what the real server sent in the captured session (692 messages, S2C only)."""
    messages = []
    for line in CAPTURE.read_text().splitlines():
        record = json.loads(line)
        if record["dir"] == "S2C":
            messages.append(record["msg"])
    return messages


MESSAGES = captured_messages()
STREAM = b"".join(encode_message(message) for message in MESSAGES)


def decode_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    """Feed chunks; return the messages of the frames that verify and decode."""
    found = []
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            try:
                found.append(decode_frame(frame))
            except MessageError:
                continue
    return found


def raw_frame(
    payload: bytes,
    *,
    flags: str = "ch",
    size: int | None = None,
    digest: bytes | None = None,
) -> bytes:
    """Return a frame with chosen parts (for corrupting one on purpose)."""
    header = f"<SCRUTINY size={len(payload) if size is None else size:x} flags={flags}>".encode()
    hashed = hashlib.md5(payload).digest() if digest is None else digest
    return header + payload + (hashed if "h" in flags else b"")


def test_the_welcome_frame_as_captured_from_the_socket() -> None:
    """The server's own 122-byte welcome (reference note §1.3) decodes; ours encodes the same framing."""
    welcome = {
        "cmd": "welcome",
        "reqid": None,
        "server_time_zero_timestamp": 1795236047.604454,
    }
    data = encode_message(welcome)
    assert data.startswith(b"<SCRUTINY size=4f flags=ch>x\x01")
    assert len(data) == 122
    (frame,) = FrameDecoder().feed(data)
    assert decode_frame(frame) == welcome


def test_captured_stream_in_one_piece() -> None:
    """Captured stream in one piece."""
    decoder = FrameDecoder()
    assert decode_all(decoder, [STREAM]) == MESSAGES
    assert decoder.malformed == 0 and decoder.buffered == 0


def test_unhashed_and_uncompressed_frames_are_accepted() -> None:
    """The server accepts any flags; the decoder does too (as the SDK's parser)."""
    payload = json.dumps({"cmd": "response_echo", "reqid": 1}).encode()
    frames = FrameDecoder().feed(
        raw_frame(payload, flags="") + raw_frame(zlib.compress(payload), flags="c")
    )
    assert [decode_frame(frame)["cmd"] for frame in frames] == ["response_echo"] * 2


def _corrupt(kind: str) -> bytes:
    message = json.dumps(
        {"cmd": "watchable_update", "reqid": None, "updates": []}
    ).encode()
    compressed = zlib.compress(message)
    match kind:
        case "bad_md5":
            return raw_frame(compressed, digest=b"\0" * 16)
        case "bad_zlib":
            return raw_frame(b"not zlib at all")
        case "bad_json":
            return raw_frame(zlib.compress(b"{not json"))
        case "not_an_object":
            return raw_frame(zlib.compress(b"[1, 2, 3]"))
        case "wrong_encoding":
            return raw_frame(zlib.compress('{"cmd": "é"}'.encode("latin-1")))
        case "truncated":
            return raw_frame(compressed)[:-25]
        case "size_too_large":
            return raw_frame(compressed, size=len(compressed) + 40)
        case "size_too_small":
            return raw_frame(compressed, size=len(compressed) - 5)
        case "oversized":
            return b"<SCRUTINY size=ffffffff flags=ch>" + compressed
        case "garbage":
            return b"\x00\xffnoise<SCRUTINY size=zz flags=ch><SCRUT"
    raise AssertionError(kind)


CORRUPTIONS = [
    "bad_md5",
    "bad_zlib",
    "bad_json",
    "not_an_object",
    "wrong_encoding",
    "truncated",
    "size_too_large",
    "size_too_small",
    "oversized",
    "garbage",
]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_bad_frame_mid_stream_is_skipped_and_the_rest_delivered(kind: str) -> None:
    """One corrupted frame in the middle of the captured stream costs that frame only."""
    middle = len(MESSAGES) // 2
    before = b"".join(encode_message(message) for message in MESSAGES[:middle])
    after = b"".join(encode_message(message) for message in MESSAGES[middle:])
    reports: list[str] = []
    decoder = FrameDecoder(lambda reason, _excerpt: reports.append(reason))
    messages = decode_all(decoder, [before + _corrupt(kind) + after])
    assert messages == MESSAGES
    if kind in {"bad_zlib", "bad_json", "not_an_object", "wrong_encoding"}:
        # The frame itself is intact: decode_frame refuses its content (the client logs it).
        assert decoder.malformed == 0
    else:
        assert decoder.malformed >= 1 and reports


@pytest.mark.parametrize(
    "kind", ["bad_zlib", "bad_json", "not_an_object", "wrong_encoding"]
)
def test_a_verified_frame_with_bad_content_is_refused(kind: str) -> None:
    """A verified frame with bad content is refused."""
    (frame,) = FrameDecoder().feed(_corrupt(kind))
    with pytest.raises(MessageError):
        decode_frame(frame)


def test_a_zlib_bomb_is_refused_not_inflated() -> None:
    """A zlib bomb is refused not inflated."""
    bomb = zlib.compress(
        b'{"cmd": "x", "pad": "' + b"a" * (70 * 1024 * 1024) + b'"}', 9
    )
    with pytest.raises(MessageError, match="once inflated"):
        decode_frame(Frame(bomb, compressed=True))


def test_a_truncated_frame_at_the_end_waits_then_gives_way_to_the_next() -> None:
    """An incomplete frame holds nothing back once a complete one follows it."""
    decoder = FrameDecoder()
    truncated = _corrupt("truncated")
    assert decoder.feed(truncated) == []
    assert decoder.buffered == len(truncated)
    follow = encode_message({"cmd": "welcome", "reqid": None})
    (frame,) = decoder.feed(follow)
    assert decode_frame(frame)["cmd"] == "welcome"
    assert decoder.buffered == 0


def test_garbage_between_frames_is_reported_once_per_run() -> None:
    """Garbage between frames is reported once per run."""
    reports: list[str] = []
    decoder = FrameDecoder(lambda reason, _excerpt: reports.append(reason))
    frames = decoder.feed(b"xx" * 100 + encode_message({"cmd": "a", "reqid": None}))
    assert len(frames) == 1
    assert reports == ["200 bytes outside any frame"]
    assert decoder.skipped_bytes == 200


def test_reset_forgets_a_partial_frame() -> None:
    """Reset forgets a partial frame."""
    decoder = FrameDecoder()
    decoder.feed(encode_message({"cmd": "a", "reqid": None})[:20])
    decoder.reset()
    assert decoder.buffered == 0


CORRUPTED_STREAM = b"".join(
    [
        *(encode_message(message) for message in MESSAGES[:40]),
        *(
            _corrupt(kind) + encode_message(MESSAGES[40 + index])
            for index, kind in enumerate(CORRUPTIONS)
        ),
        *(encode_message(message) for message in MESSAGES[40 + len(CORRUPTIONS) : 80]),
    ]
)
EXPECTED = decode_all(FrameDecoder(), [CORRUPTED_STREAM])


def test_the_corrupted_stream_loses_only_the_corrupted_frames() -> None:
    """The corrupted stream loses only the corrupted frames."""
    assert MESSAGES[:80] == EXPECTED


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(
        st.integers(min_value=0, max_value=len(CORRUPTED_STREAM)), max_size=60
    )
)
def test_any_chunking_yields_the_same_messages(cuts: list[int]) -> None:
    """However the stream is cut into reads, the same messages come out in the same order."""
    points = sorted({0, len(CORRUPTED_STREAM), *cuts})
    chunks = [CORRUPTED_STREAM[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert decode_all(FrameDecoder(), chunks) == EXPECTED


@settings(max_examples=50, deadline=None)
@given(size=st.integers(min_value=1, max_value=64))
def test_byte_by_byte_in_small_reads(size: int) -> None:
    """Byte by byte in small reads."""
    stream = CORRUPTED_STREAM[:6000]
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert decode_all(FrameDecoder(), chunks) == decode_all(FrameDecoder(), [stream])
