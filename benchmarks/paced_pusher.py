"""A paced INDI server for the latency, overload and idle rows, run as its own process.

``python -m benchmarks.paced_pusher`` listens on 127.0.0.1 only (a free port, printed as
``port <n>``) and answers every ``getProperties`` with the definitions of one device (``Pacer``) with
``CHANNELS`` read-only number vectors of one member each. Nothing else is sent until a command on
stdin asks for it, so an entry connected to it is idle.

``go <first> <rate> <milliseconds>`` sends ``rate × milliseconds / 1000`` ``setNumberVector``
elements, paced on CLOCK_MONOTONIC: at most one batch per ``TICK_NS`` (1 ms), each holding the
elements due by then (1 at 1,000/s, about 10 at 10,000/s), with one ``sendall`` per batch. Element
``i`` carries the sequence number ``first + i`` as its value and goes to channel
``(first + i) % CHANNELS``, so the parent knows which value it sees and when it was sent without
asking. If the socket does not take the bytes as fast as they are due (the client reads too
slowly), the next batch holds everything due since (at most ``MAX_BATCH`` elements): the offered
rate stays the schedule, the backlog stays in the socket buffers and here, and ``behind_max`` says
how late (after its slot on the 1 ms grid) any batch left. The answer is ``sent <count> <elapsed_ns> <behind_max_ns> <batches>``,
then ``times <lines>`` and that many lines of ``<offset>:<monotonic_ns>`` pairs: the offset (from
``first``) of each batch's first element and the CLOCK_MONOTONIC time just before its ``sendall``
(``time.monotonic_ns`` is the same clock in every process of a Linux host).

It ends on ``quit``, at the end of stdin or when the parent terminates it by its PID. Standard
library only: it imports no Home Assistant.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Final

from benchmarks.commands import say, serve_commands
from benchmarks.one_client import CONNECT_WAIT, GetPropertiesServer

DEVICE: Final = "Pacer"
CHANNELS: Final = 4
MEMBER: Final = "value"
TICK_NS: Final = 1_000_000
"""At most one batch per millisecond: the elements due by then travel together."""
MAX_BATCH: Final = 2000
"""Elements in one sendall when catching up after the socket held the sender back."""
MAX_RATE: Final = 100_000
MAX_MILLISECONDS: Final = 60_000
MAX_COMMANDS: Final = 1000
PAIRS_PER_LINE: Final = 1000
"""Batch times per answer line (each line stays far below a 64 KiB stream-reader limit)."""


def vector_name(channel: int) -> str:
    """Return the name of the number vector of one channel."""
    return f"channel{channel}"


def channel_of(sequence: int) -> int:
    """Return the channel a sequence number is sent to."""
    return sequence % CHANNELS


def definitions() -> bytes:
    """Return the answer to getProperties: one read-only number vector per channel, value 0."""
    return "".join(
        f'<defNumberVector device="{DEVICE}" name="{vector_name(channel)}" '
        f'label="Channel {channel}" group="Values" state="Ok" perm="ro" '
        f'timestamp="2026-11-21T04:40:38"><defNumber name="{MEMBER}" label="Value" '
        f'format="%.0f" min="0" max="0" step="0">0</defNumber></defNumberVector>\n'
        for channel in range(CHANNELS)
    ).encode()


def element(sequence: int, stamp: str) -> bytes:
    """Return the set element that carries one sequence number."""
    return (
        f'<setNumberVector device="{DEVICE}" name="{vector_name(channel_of(sequence))}" '
        f'state="Ok" timestamp="{stamp}"><oneNumber name="{MEMBER}">{sequence}</oneNumber>'
        "</setNumberVector>\n"
    ).encode()


class _Server(GetPropertiesServer):
    """The INDI server of the paced runs: the client that asked for the properties gets them."""

    def __init__(self) -> None:
        super().__init__(definitions())

    def paced(
        self, first: int, rate: int, milliseconds: int
    ) -> tuple[int, int, int, list[tuple[int, int]]]:
        """Send one paced run; return (sent, elapsed ns, worst lateness ns, batch times)."""
        count = rate * milliseconds // 1000
        if not self.ready.wait(CONNECT_WAIT) or count < 1:
            return 0, 0, 0, []
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        elements = [element(first + offset, stamp) for offset in range(count)]
        times: list[tuple[int, int]] = []
        behind_max = 0
        sent = 0
        start = time.monotonic_ns()
        # Bounded: every pass sends at least one element or sleeps until the next batch may leave.
        for _ in range(4 * count + 10):
            if sent >= count:
                break
            # Element `sent` is due at start + sent / rate; batches leave on a 1 ms grid.
            next_due = -(-sent * 1_000_000_000 // rate)
            leave = start + -(-next_due // TICK_NS) * TICK_NS
            now = time.monotonic_ns()
            if now < leave:
                time.sleep((leave - now) / 1e9)
                continue
            due = min(count, (now - start) * rate // 1_000_000_000 + 1)
            batch = max(1, min(due - sent, MAX_BATCH))
            behind_max = max(behind_max, now - leave)
            times.append((sent, now))
            with self.lock:
                client = self.client
                if client is None:
                    break
                try:
                    client.sendall(b"".join(elements[sent : sent + batch]))
                except OSError:
                    break
            sent += batch
        return sent, time.monotonic_ns() - start, behind_max, times


def _go(server: _Server, words: list[str]) -> list[str] | None:
    if words[0] != "go":
        return None
    if len(words) != 4 or not all(word.isdigit() for word in words[1:]):
        return [f"error {' '.join(words)!r}"]
    first, rate, milliseconds = (int(word) for word in words[1:])
    if not (1 <= rate <= MAX_RATE and 1 <= milliseconds <= MAX_MILLISECONDS):
        return [f"error rate 1..{MAX_RATE}, milliseconds 1..{MAX_MILLISECONDS}"]
    sent, elapsed, behind, times = server.paced(first, rate, milliseconds)
    lines = [
        times[index : index + PAIRS_PER_LINE]
        for index in range(0, len(times), PAIRS_PER_LINE)
    ]
    return [
        f"sent {sent} {elapsed} {behind} {len(times)}",
        f"times {len(lines)}",
        *(" ".join(f"{offset}:{stamp}" for offset, stamp in pairs) for pairs in lines),
    ]


def main(argv: list[str] | None = None) -> int:
    """Serve the definitions and paced runs until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    server = _Server()
    threading.Thread(target=server.accept_forever, daemon=True).start()
    say(f"port {server.port}")
    serve_commands(lambda words: _go(server, words), MAX_COMMANDS)
    server.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
