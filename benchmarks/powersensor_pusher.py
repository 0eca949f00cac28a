"""The plug of the end-to-end benchmark, run as its own process so its CPU is not counted.

``python -m benchmarks.powersensor_pusher --host 127.x.y.z --events N --rounds R`` binds
``host:49476`` (UDP, a loopback address), prints ``ready``, and serves the plug's subscription
protocol: a ``subscribe(N)`` makes the sender the one subscriber (answered at once with one report,
so the integration sees a live plug). On each ``go <round>`` line on stdin it sends that round's
datagrams to the subscriber, pausing briefly every ``BURST`` datagrams so the receiver's socket buffer
never overflows (the parent's CPU is what is measured, not the wire), then prints ``sent <round> <n>``.
On ``flood <kind> <count> <rate> <marker>`` it sends ``count`` datagrams of one of the loop-lag row's
inputs (``FLOODS``) at ``rate`` per second (0: as fast as the socket takes them), then, after a
pause, one plug report whose power is ``marker``, and prints ``flooded <kind> <n>``.
It ends on ``quit``, at the end of stdin or when the parent terminates it by its PID. Standard
library only: it imports no Home Assistant.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import socket
import sys
import threading
import time
from typing import Final

from benchmarks.commands import say, serve_commands
from benchmarks.powersensor_stream import (
    FLOODS,
    MAX_ROUNDS,
    datagram,
    e2e_round,
    flood_datagrams,
    plug_report,
)

PORT: Final = 49476
BURST: Final = 8
PAUSE: Final = 0.004
MAX_READS: Final = 1_000_000
SUBSCRIBE_WAIT: Final = 30.0
MAX_FLOOD: Final = 1_000_000
FLOOD_PAUSE: Final = 0.2
"""Seconds between a flood and its marker: the receiver's socket buffer drains meanwhile."""


class _Plug:
    def __init__(self, host: str) -> None:
        if ipaddress.IPv4Address(host) not in ipaddress.IPv4Network("127.0.0.0/8"):
            raise SystemExit(f"{host} is not a loopback address")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, PORT))
        self.subscriber: tuple[str, int] | None = None
        self.subscribed = threading.Event()

    def serve(self) -> None:
        rng = random.Random(1)
        for index in range(MAX_READS):
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:
                return
            if data.startswith(b"subscribe(0)"):
                self.subscriber = None
                self.subscribed.clear()
            elif data.startswith(b"subscribe("):
                self.subscriber = (peer[0], peer[1])
                self.subscribed.set()
                self.sock.sendto(datagram([plug_report(rng, -1 - index)]), peer)

    def push(self, datagrams: list[bytes]) -> int:
        if not self.subscribed.wait(SUBSCRIBE_WAIT) or self.subscriber is None:
            return 0
        for index, data in enumerate(datagrams):
            self.sock.sendto(data, self.subscriber)
            if index % BURST == BURST - 1:
                time.sleep(PAUSE)
        return len(datagrams)

    def flood(self, kind: str, count: int, rate: float, marker: float) -> int:
        """Send ``count`` datagrams of ``kind`` at ``rate``/s (0: unpaced), then the marker report."""
        if not self.subscribed.wait(SUBSCRIBE_WAIT) or self.subscriber is None:
            return 0
        sent = 0
        start = time.perf_counter()
        for index, data in enumerate(flood_datagrams(kind, count)):
            if rate > 0:
                delay = start + index / rate - time.perf_counter()
                if delay > 0.001:
                    time.sleep(delay)
            try:
                self.sock.sendto(data, self.subscriber)
            except OSError:
                continue  # the kernel refused this one (buffer full): as a real flood would
            sent += 1
        time.sleep(FLOOD_PAUSE)
        rng = random.Random(int(marker))
        self.sock.sendto(datagram([plug_report(rng, 0, power=marker)]), self.subscriber)
        return sent


def main(argv: list[str] | None = None) -> int:
    """Serve the rounds until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be 1..{MAX_ROUNDS}")
    rounds = [e2e_round(index, args.events) for index in range(args.rounds)]
    plug = _Plug(args.host)
    threading.Thread(target=plug.serve, daemon=True).start()
    say("ready")

    def answer(words: list[str]) -> list[str] | None:
        if words[0] == "go" and len(words) == 2 and words[1].isdigit():
            index = int(words[1])
            sent = plug.push(rounds[index]) if index < args.rounds else 0
            return [f"sent {index} {sent}"]
        if words[0] == "flood" and len(words) == 5 and words[1] in FLOODS:
            count = min(int(words[2]), MAX_FLOOD)
            sent = plug.flood(words[1], count, float(words[3]), float(words[4]))
            return [f"flooded {words[1]} {sent}"]
        return None

    serve_commands(answer, args.rounds * 2 + 100)
    plug.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
