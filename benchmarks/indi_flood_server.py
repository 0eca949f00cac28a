"""An INDI server that floods its client, run as its own process so its CPU is not counted.

``python -m benchmarks.indi_flood_server --payload KIND --count N`` builds the payload, listens on
127.0.0.1 (a free port, printed as ``port <n>``), answers the client's ``getProperties`` with
``DEFINITIONS`` (a number vector and a BLOB vector of device ``Flood``), and on each ``go`` line on
stdin sends the payload followed by ``END_MARKER`` with one ``sendall``, then prints ``sent <bytes>
<sha256>`` (of the BLOB's own bytes, for checking what was saved; ``-`` for the other payloads).
It ends on ``quit``, at the end of stdin or when the parent terminates it by its PID. Standard
library only: it imports no Home Assistant.

Payloads: ``unknown`` (N tiny unknown elements ``<x/>``), ``garbage`` (N bytes of ``<``), ``tiny`` (N
one-member ``setNumberVector`` of the known vector), ``malformed`` (N elements with a mismatched tag,
each an XML error), ``blob`` (one BLOB of N random bytes, base64 wrapped every 72 columns as indilib
sends it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import threading
from typing import Final

from benchmarks.commands import say, serve_commands
from benchmarks.one_client import GetPropertiesServer

DEVICE: Final = "Flood"
DEFINITIONS: Final = (
    f'<defNumberVector device="{DEVICE}" name="VALUE" label="Value" group="Main" state="Ok" perm="ro">'
    '<defNumber name="V" label="Value" format="%g" min="0" max="0" step="0">0</defNumber></defNumberVector>\n'
    f'<defBLOBVector device="{DEVICE}" name="CCD1" label="Image" group="Main" state="Idle" perm="ro">'
    '<defBLOB name="CCD1" label="Image"/></defBLOBVector>\n'
).encode()
END_MARKER: Final = f'<message device="{DEVICE}" message="end of flood"/>\n'.encode()
PAYLOADS: Final = ("unknown", "garbage", "tiny", "malformed", "blob")
_COLUMNS: Final = 72


def payload(kind: str, count: int) -> tuple[bytes, str]:
    """Return the flood of ``kind`` (``count`` elements, bytes or, for a BLOB, its size) and its digest."""
    if kind == "unknown":
        return b"<x/>" * count, "-"
    if kind == "garbage":
        return b"<" * count, "-"
    if kind == "tiny":
        data = b"".join(
            f'<setNumberVector device="{DEVICE}" name="VALUE"><oneNumber name="V">{i}</oneNumber>'
            "</setNumberVector>".encode()
            for i in range(count)
        )
        return data, "-"
    if kind == "malformed":
        bad = (
            f'<setNumberVector device="{DEVICE}" name="VALUE"><oneNumber name="V">1</oneText>'
            "</setNumberVector>"
        )
        return bad.encode() * count, "-"
    if kind == "blob":
        raw = os.urandom(count)
        text = base64.b64encode(raw)
        lines = b"\n".join(
            text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS)
        )
        blob = (
            f'<setBLOBVector device="{DEVICE}" name="CCD1" state="Ok"><oneBLOB name="CCD1" '
            f'size="{count}" format=".fits" enclen="{len(text)}">\n'.encode()
            + lines
            + b"\n</oneBLOB></setBLOBVector>\n"
        )
        return blob, hashlib.sha256(raw).hexdigest()
    raise ValueError(f"unknown payload {kind!r}")


def main(argv: list[str] | None = None) -> int:
    """Serve one client until told to quit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payload", choices=PAYLOADS, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    data, digest = payload(args.payload, args.count)
    data += END_MARKER
    server = GetPropertiesServer(DEFINITIONS)
    threading.Thread(target=server.accept_forever, daemon=True).start()
    say(f"port {server.port}")
    serve_commands(
        lambda words: [f"sent {server.send(data)} {digest}"]
        if words[0] == "go"
        else None,
        20,
    )
    server.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
