"""The INDI server of the end-to-end benchmark, run as its own process so its CPU is not counted.

``python -m benchmarks.indi_pusher --events N --rounds R`` pre-generates every round's bytes, listens
on 127.0.0.1 (a free port, printed as ``port <n>``), answers ``getProperties`` with the definitions,
and on each ``go <round>`` line on stdin sends that round's bytes with one ``sendall`` (as fast as the
socket takes them), then prints ``sent <round> <bytes>``. It ends on ``quit``, at the end of stdin or
when the parent terminates it by its PID. Standard library only: it imports no Home Assistant.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from typing import Final

from benchmarks.indi_stream import MAX_ROUNDS, e2e_definitions, e2e_round

MAX_CONNECTIONS: Final = 20
"""Connections served before the pusher stops accepting (the integration needs one)."""
MAX_READS: Final = 1_000_000
"""Reads served on one connection (the client only sends getProperties and a few requests)."""
CONNECT_WAIT: Final = 30.0
"""Seconds a ``go`` waits for a client to be connected and to have asked for the properties."""


class _Pusher:
    """The listening socket and the one client the rounds go to."""

    def __init__(self, rounds: list[bytes]) -> None:
        self.rounds = rounds
        self.definitions = e2e_definitions()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.client: socket.socket | None = None
        self.ready = threading.Event()

    @property
    def port(self) -> int:
        port: int = self.server.getsockname()[1]
        return port

    def accept_forever(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                conn, _address = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """Answer getProperties with the definitions; the client becomes the target of the rounds."""
        pending = b""
        try:
            for _ in range(MAX_READS):
                data = conn.recv(65536)
                if not data:
                    break
                pending = (pending + data)[-4096:]
                if b"<getProperties" in pending:
                    pending = b""
                    with self.lock:
                        conn.sendall(self.definitions)
                        self.client = conn
                    self.ready.set()
        except OSError:
            pass
        finally:
            with self.lock:
                if self.client is conn:
                    self.client = None
                    self.ready.clear()
            conn.close()

    def push(self, round_index: int) -> int:
        """Send one round; return the bytes sent (0 when no client is there)."""
        if not self.ready.wait(CONNECT_WAIT):
            return 0
        data = self.rounds[round_index]
        with self.lock:
            if self.client is None:
                return 0
            try:
                self.client.sendall(data)
            except OSError:
                return 0
        return len(data)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Serve the end-to-end plan until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be 1..{MAX_ROUNDS}")
    pusher = _Pusher([e2e_round(index, args.events) for index in range(args.rounds)])
    threading.Thread(target=pusher.accept_forever, daemon=True).start()
    _say(f"port {pusher.port}")
    for _ in range(args.rounds * 2 + 10):
        line = sys.stdin.readline()
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "go" and len(words) == 2 and words[1].isdigit():
            index = int(words[1])
            sent = pusher.push(index) if index < args.rounds else 0
            _say(f"sent {index} {sent}")
        else:
            _say(f"error {line.strip()!r}")
    pusher.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
