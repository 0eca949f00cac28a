"""The INDI server of the end-to-end benchmark, run as its own process so its CPU is not counted.

``python -m benchmarks.indi_pusher --events N --rounds R`` pre-generates every round's bytes, listens
on 127.0.0.1 (a free port, printed as ``port <n>``), answers ``getProperties`` with the definitions,
and on each ``go <round>`` line on stdin sends that round's bytes with one ``sendall`` (as fast as the
socket takes them), then prints ``sent <round> <bytes>``. It ends on ``quit``, at the end of stdin or
when the parent terminates it by its PID. Standard library only: it imports no Home Assistant.
"""

from __future__ import annotations

import argparse
import sys
import threading

from benchmarks.commands import say, serve_commands
from benchmarks.indi_stream import MAX_ROUNDS, e2e_definitions, e2e_round
from benchmarks.one_client import GetPropertiesServer


class _Pusher(GetPropertiesServer):
    """The INDI server of the rounds: the client that asked for the properties gets them."""

    def __init__(self, rounds: list[bytes]) -> None:
        super().__init__(e2e_definitions())
        self.rounds = rounds

    def push(self, round_index: int) -> int:
        """Send one round; return the bytes sent (0 when no client is there)."""
        return self.send(self.rounds[round_index])


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
    say(f"port {pusher.port}")

    def answer(words: list[str]) -> list[str] | None:
        if words[0] == "go" and len(words) == 2 and words[1].isdigit():
            index = int(words[1])
            sent = pusher.push(index) if index < args.rounds else 0
            return [f"sent {index} {sent}"]
        return None

    serve_commands(answer, args.rounds * 2 + 10)
    pusher.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
