"""Frame decoding of the Scrutiny SDK (scrutinydebugger 0.16.0) and ours, on one interpreter.

``python benchmarks/scrutiny_sdk_decode.py --events N --repeats R [--chunk B] [--sdk-path DIR]`` prints one JSON
line: the interpreter's version and, per decoder that imports on it, the CPU µs per frame of each
repeat. The stream is the captured session's server messages (tests/fixtures/scrutiny), framed by
the SDK's own ``StreamMaker`` (zlib, MD5: the server's framing), repeated to N frames and cut in
chunks of the SDK's socket read (4096 bytes).

* ``sdk``: what ``ScrutinyClient`` does with every read: ``StreamParser.parse`` (header regex, MD5,
  zlib into its queue), then per message ``decode`` + ``json.loads`` (``_wt_recv``).
* ``ours``: ``FrameDecoder.feed`` + ``decode_frame`` (needs Python 3.12+: the integration's code uses
  ``type`` statements; on the SDK's 3.11 it does not import, and the line says so).

Run by the scrutiny rows: once with .venv-peers' Python 3.11 (where scrutinydebugger is installed),
once with the integration's 3.14 with the SDK's folder on the path (its parser is pure Python).
Standard library only, apart from the two decoders.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
from pathlib import Path
import platform
import sys
import time
import types
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if sys.path and Path(sys.path[0]).resolve() == HERE:
    del sys.path[0]  # benchmarks/scrutiny.py would shadow the SDK's package
CAPTURE = ROOT / "tests" / "fixtures" / "scrutiny" / "raw_messages.jsonl"
SOURCES = ROOT / "custom_components" / "instrument_hub" / "sources"


def _messages() -> list[dict[str, Any]]:
    return [
        record["msg"]
        for record in map(json.loads, CAPTURE.read_text().splitlines())
        if record["dir"] == "S2C"
    ]


def _stream(count: int, chunk: int) -> list[bytes]:
    from scrutiny.tools.stream_datagrams import StreamMaker  # noqa: PLC0415

    maker = StreamMaker(mtu=1024 * 1024, use_hash=True, compress=True)
    frames = [
        bytes(maker.encode(json.dumps(message).encode())) for message in _messages()
    ]
    data = b"".join(frames[index % len(frames)] for index in range(count))
    return [data[offset : offset + chunk] for offset in range(0, len(data), chunk)]


def _sdk(chunks: list[bytes]) -> int:
    from scrutiny.server.api.tcp_client_handler import TCPClientHandler  # noqa: PLC0415

    parser = TCPClientHandler.get_compatible_stream_parser()
    queue = parser.queue()
    decoded = 0
    for chunk in chunks:
        parser.parse(chunk)
        while not queue.empty():
            data = queue.get_or_none()
            if data is None:
                break
            json.loads(data.decode("utf8"))
            decoded += 1
    return decoded


def _load_ours() -> Any:
    """Import our protocol module alone (its package's __init__ needs Home Assistant)."""
    package = types.ModuleType("ih_sources")
    package.__path__ = [str(SOURCES)]
    sys.modules["ih_sources"] = package
    scrutiny = types.ModuleType("ih_sources.scrutiny")
    scrutiny.__path__ = [str(SOURCES / "scrutiny")]
    sys.modules["ih_sources.scrutiny"] = scrutiny
    return importlib.import_module("ih_sources.scrutiny.protocol")


def _ours(protocol: Any, chunks: list[bytes]) -> int:
    decoder = protocol.FrameDecoder()
    decoded = 0
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            protocol.decode_frame(frame)
            decoded += 1
    return decoded


def _measure(run: Any, chunks: list[bytes], count: int, repeats: int) -> list[float]:
    samples: list[float] = []
    for repeat in range(-1, repeats):
        gc.collect()
        begin = time.process_time_ns()
        decoded = run(chunks)
        end = time.process_time_ns()
        if decoded != count:
            raise SystemExit(f"{decoded} of {count} frames decoded")
        if repeat >= 0:
            samples.append((end - begin) / count / 1000)
    return samples


def main() -> int:
    """Measure both decoders where they import; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument(
        "--sdk-path", help="a site-packages folder holding scrutinydebugger (appended)"
    )
    args = parser.parse_args()
    if args.sdk_path:
        sys.path.append(args.sdk_path)
    count = max(args.events, len(_messages()))
    chunks = _stream(count, args.chunk)
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "frames": count,
        "chunk": args.chunk,
        "sdk": _measure(_sdk, chunks, count, args.repeats),
    }
    try:
        protocol = _load_ours()
    except SyntaxError as err:
        result["ours_error"] = (
            f"does not import on Python {platform.python_version()}: {err.msg}"
        )
    else:
        result["ours"] = _measure(
            lambda data: _ours(protocol, data), chunks, count, args.repeats
        )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
