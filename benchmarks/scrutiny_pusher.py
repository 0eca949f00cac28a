"""The Scrutiny server of the end-to-end benchmark, run as its own process so its CPU is not counted.

``python -m benchmarks.scrutiny_pusher --events N --rounds R`` listens on 127.0.0.1 (a free port,
printed as ``port <n>``), greets like scrutinydebugger 0.16.0 (``welcome``), answers the requests an
entry makes (status: the demo device ready with its SFD; device info; SFD; watchables; subscribe) and
on each ``go <round>`` line sends that round's N ``watchable_update`` frames (one value each, three
watchables in turn, the round's last value a marker) with one ``sendall``, then prints
``sent <round> <bytes>``. Frames are the server's own: zlib level 1, MD5, ``flags=ch``. On
``flood <kind> <count> <marker>`` it sends one of the loop-lag row's inputs (``FLOODS``) with one
``sendall``, then an update of the first watchable carrying ``marker``, and prints
``flooded <kind> <bytes>``. Standard library only; it ends on ``quit``, at the end of stdin or when
the parent terminates it by its PID.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import sys
import threading
from typing import Any, Final
import zlib

from benchmarks.commands import say, serve_commands
from benchmarks.one_client import MAX_READS, OneClientServer

WATCHED: Final = ("/bench/a", "/bench/b", "/bench/c")
IDS: Final = {path: f"{index:x}" for index, path in enumerate(WATCHED, start=16)}
_HEADER: Final = re.compile(rb"<SCRUTINY size=([0-9a-fA-F]{1,8}) flags=(c?h?)>")


def frame(message: dict[str, Any]) -> bytes:
    """Return one message framed as the server frames it."""
    data = zlib.compress(json.dumps(message, separators=(",", ":")).encode(), 1)
    return (
        b"<SCRUTINY size=%x flags=ch>" % len(data) + data + hashlib.md5(data).digest()
    )


FLOODS: Final = ("burst", "garbage", "oversized", "bomb")
"""A burst of real updates, random bytes, frames announcing more than the MTU, and frames of a few
KiB that inflate to 60 MB."""


def flood_bytes(kind: str, count: int, marker: float) -> bytes:
    """Return ``count`` items of one flood input, then the marker update."""
    rng = random.Random(9)
    path = WATCHED[0]
    if kind == "burst":
        data = b"".join(
            frame(
                {
                    "cmd": "watchable_update",
                    "reqid": None,
                    "updates": [{"id": IDS[path], "v": float(index), "t": 1.0}],
                }
            )
            for index in range(count)
        )
    elif kind == "garbage":
        data = b"".join(rng.randbytes(rng.randrange(1, 4096)) for _ in range(count))
    elif kind == "oversized":
        data = b"".join(
            b"<SCRUTINY size=%x flags=ch>" % (1 << 30) + rng.randbytes(1000)
            for _ in range(count)
        )
    elif kind == "bomb":
        bomb = zlib.compress(
            b'{"cmd":"watchable_update","reqid":null,"pad":"'
            + b"0" * (60 * 1024 * 1024)
            + b'"}',
            9,
        )
        data = (
            b"<SCRUTINY size=%x flags=ch>" % len(bomb)
            + bomb
            + hashlib.md5(bomb).digest()
        ) * count
    else:
        raise ValueError(kind)
    last = {
        "cmd": "watchable_update",
        "reqid": None,
        "updates": [{"id": IDS[path], "v": marker}],
    }
    return data + frame(last)


def round_marker(round_index: int) -> float:
    """Return the value the round's last update carries (distinct per round)."""
    return 1_000_000.0 + round_index


def final_path(events: int) -> str:
    """Return the watchable that gets the round's last update."""
    return WATCHED[(events - 1) % len(WATCHED)]


def round_bytes(round_index: int, events: int) -> bytes:
    """Return one round: ``events`` watchable_update frames, the last carrying the marker."""
    out = bytearray()
    for index in range(events):
        path = WATCHED[index % len(WATCHED)]
        value = (
            round_marker(round_index)
            if index == events - 1
            else round_index * events + index + 0.5
        )
        update = {"id": IDS[path], "v": value, "t": 1000.0 * index, "d": "AAAAAA=="}
        out += frame({"cmd": "watchable_update", "reqid": None, "updates": [update]})
    return bytes(out)


def answer(request: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Return the answer to one request (None: no answer)."""
    reqid = request.get("reqid")
    cmd = request.get("cmd")
    if cmd == "get_server_status":
        return {
            "cmd": "inform_server_status",
            "reqid": reqid,
            "device_status": "connected_ready",
            "device_session_id": "bench-session",
            "loaded_sfd_firmware_id": "00000000000000000000000000000000",
            "datalogging_status": {
                "datalogging_state": "standby",
                "completion_ratio": None,
            },
            "device_comm_link": {
                "link_type": "dummy",
                "link_operational": True,
                "link_config": {},
                "demo_mode": False,
            },
        }
    if cmd == "get_device_info":
        return {
            "cmd": "response_get_device_info",
            "reqid": reqid,
            "available": True,
            "device_info": {"display_name": "Bench"},
        }
    if cmd == "get_loaded_sfd":
        return {
            "cmd": "response_get_loaded_sfd",
            "reqid": reqid,
            "sfd": {
                "firmware_id": "00000000000000000000000000000000",
                "metadata": {"project_name": "Bench"},
            },
        }
    if cmd == "get_watchable_list":
        content = {
            "var": [{"dtype": "float64", "path": path} for path in WATCHED],
            "alias": [],
            "rpv": [],
            "var_factory": [],
        }
        return {
            "cmd": "response_get_watchable_list",
            "reqid": reqid,
            "qty": {},
            "content": content,
            "done": True,
        }
    if cmd == "subscribe_watchable":
        subscribed = {
            path: {"id": IDS[path], "path": path}
            for path in request.get("watchables", [])
            if path in IDS
        }
        return {
            "cmd": "response_subscribe_watchable",
            "reqid": reqid,
            "subscribed": subscribed,
        }
    if cmd == "echo":
        return {
            "cmd": "response_echo",
            "reqid": reqid,
            "payload": request.get("payload"),
        }
    return {
        "cmd": "error",
        "reqid": reqid,
        "request_cmd": cmd,
        "msg": f"Unsupported command {cmd}",
    }


class _Pusher(OneClientServer):
    """The Scrutiny server of the rounds: the client that subscribed gets them."""

    def __init__(self, rounds: list[bytes]) -> None:
        super().__init__()
        self.rounds = rounds

    def converse(self, conn: socket.socket) -> None:
        """Greet, answer requests; a client that subscribed becomes the target of the rounds."""
        buffer = b""
        conn.sendall(
            frame(
                {
                    "cmd": "welcome",
                    "reqid": None,
                    "server_time_zero_timestamp": 1795236047.6,
                }
            )
        )
        for _ in range(MAX_READS):
            data = conn.recv(65536)
            if not data:
                break
            buffer += data
            while (match := _HEADER.search(buffer)) is not None:
                end = match.end() + int(match.group(1), 16) + 16
                if len(buffer) < end:
                    break
                request = json.loads(zlib.decompress(buffer[match.end() : end - 16]))
                buffer = buffer[end:]
                answers = answer(request)
                with self.lock:
                    for reply in (
                        answers
                        if isinstance(answers, list)
                        else [answers]
                        if answers
                        else []
                    ):
                        conn.sendall(frame(reply))
                    if request.get("cmd") == "subscribe_watchable":
                        self.target(conn)

    def push(self, round_index: int, data: bytes | None = None) -> int:
        """Send one round (or ``data``); return the bytes sent (0 when no client is there)."""
        return self.send(self.rounds[round_index] if data is None else data)


def main(argv: list[str] | None = None) -> int:
    """Serve the end-to-end plan until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args(argv)
    pusher = _Pusher([round_bytes(index, args.events) for index in range(args.rounds)])
    threading.Thread(target=pusher.accept_forever, daemon=True).start()
    say(f"port {pusher.port}")

    def answer(words: list[str]) -> list[str] | None:
        if words[0] == "go" and len(words) == 2 and words[1].isdigit():
            index = int(words[1])
            sent = pusher.push(index) if index < args.rounds else 0
            return [f"sent {index} {sent}"]
        if words[0] == "flood" and len(words) == 4 and words[1] in FLOODS:
            data = flood_bytes(words[1], min(int(words[2]), 100_000), float(words[3]))
            return [f"flooded {words[1]} {pusher.push(0, data)}"]
        return None

    serve_commands(answer, args.rounds * 2 + 100)
    pusher.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
