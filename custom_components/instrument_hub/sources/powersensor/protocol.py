r"""The Powersensor plug API on the wire: UDP port 49476, ASCII commands, newline-separated JSON.

Client -> plug: ``discover()\n`` (to a broadcast address or a plug), ``subscribe(<lease s>)\n``
(``subscribe(0)`` ends the subscription). Plug -> client: datagrams of one or more JSON objects,
one per line. Lines of type ``subscription`` (subtypes ``warning``: renew now, ``expiry``: the
subscription ended) and ``discovery`` (an answer to ``discover()``, with ``ip`` and ``mac``) are the
protocol's own; every other object is a report for ``translate_raw_message``.

Each datagram stands alone: a plug never splits a line across datagrams, so a line that does not
parse is skipped on its own (with a reason) while the other lines of the datagram are delivered.
Lines are decoded one by one, so one line in a wrong encoding costs only itself. No Home Assistant
imports.
"""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import json
import re
from typing import Any, Final

from .. import json_wire

PORT: Final = 49476
"""The plug API port (UDP and TCP); every client reaches every plug on it."""
DISCOVER: Final = b"discover()\n"
LEASE_SECONDS: Final = 60
"""The subscription lease the vendor's client asks for; renewed on the plug's warning."""
MAX_DATAGRAM: Final = 65507
"""The largest UDP payload over IPv4; anything longer cannot be one datagram."""
MAX_LINE: Final = 16 * 1024
"""The longest line taken as a report (real ones are about 450 bytes)."""
MAX_LINES: Final = 128
"""The most lines taken from one datagram (a plug's carries its own report and its sensors'): the
rest is skipped as one bad line, so one datagram's work stays bounded whatever it holds."""
EXCERPT_BYTES: Final = 80

_MAC: Final = re.compile(r"[0-9a-f]{12}")

SUBSCRIPTION: Final = "subscription"
DISCOVERY: Final = "discovery"
WARNING: Final = "warning"
EXPIRY: Final = "expiry"


def subscribe(lease: int) -> bytes:
    """Return the command that subscribes for ``lease`` seconds (0 ends the subscription)."""
    return f"subscribe({int(lease)})\n".encode("ascii")


def normalize_mac(value: object) -> str | None:
    """Return a MAC in the plugs' own spelling (12 lowercase hex digits), None if it is not one."""
    if not isinstance(value, str):
        return None
    mac = value.strip().lower().replace(":", "").replace("-", "")
    return mac if _MAC.fullmatch(mac) else None


def ipv4_address(value: object) -> str | None:
    """Return an IPv4 address in dotted form, None for anything else (the plug API is IPv4 only)."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        return None


@dataclass(slots=True)  # one per message: not frozen, as events.Reading
class Report:
    """A plug's or a relayed sensor's message, for ``translate_raw_message``."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SubscriptionNotice:
    """The plug's word on the subscription: ``warning`` (renew now) or ``expiry`` (it ended)."""

    subtype: str


@dataclass(frozen=True, slots=True)
class DiscoveryAnswer:
    """A plug answering ``discover()``: where it is and who it is."""

    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be used, with why (for the log) and its beginning."""

    reason: str
    excerpt: bytes


type Line = Report | SubscriptionNotice | DiscoveryAnswer | BadLine


def parse_datagram(data: bytes) -> list[Line]:
    """Split one datagram into its lines and parse each (blank lines are skipped).

    At most ``MAX_LINES`` lines are parsed; what follows them is one BadLine.
    """
    if len(data) > MAX_DATAGRAM:
        return [
            BadLine(f"oversized datagram ({len(data)} bytes)", data[:EXCERPT_BYTES])
        ]
    lines: list[Line] = []
    # filter() skips blank lines without a Python step each (a datagram of 64 KiB of newlines).
    for raw in filter(bytes.strip, data.splitlines()):
        if len(lines) == MAX_LINES:
            lines.append(
                BadLine(
                    f"more than {MAX_LINES} lines in one datagram (the rest skipped)",
                    raw[:EXCERPT_BYTES],
                )
            )
            break
        lines.append(parse_line(raw))
    return lines


def parse_line(raw: bytes) -> Line:
    """Parse one line of a datagram."""
    if len(raw) > MAX_LINE:
        return BadLine(f"oversized line ({len(raw)} bytes)", raw[:EXCERPT_BYTES])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadLine("not UTF-8", raw[:EXCERPT_BYTES])
    try:
        message = json_wire.loads(text)
    except json.JSONDecodeError as err:  # truncated and malformed lines alike
        # (MAX_LINE keeps nesting far below what would raise RecursionError)
        return BadLine(f"not JSON ({err.msg})", raw[:EXCERPT_BYTES])
    if not isinstance(message, dict):
        return BadLine("not a JSON object", raw[:EXCERPT_BYTES])
    kind = message.get("type")
    if not isinstance(kind, str):
        return BadLine("no message type", raw[:EXCERPT_BYTES])
    if kind == SUBSCRIPTION:
        subtype = message.get("subtype")
        if not isinstance(subtype, str):
            return BadLine("subscription notice without subtype", raw[:EXCERPT_BYTES])
        return SubscriptionNotice(subtype)
    if kind == DISCOVERY:
        answer = discovery_answer(message)
        return answer or BadLine("discovery answer without ip/mac", raw[:EXCERPT_BYTES])
    return Report(message)


def discovery_answer(message: object) -> DiscoveryAnswer | None:
    """Return the plug a discovery answer names (JSON with ``ip`` and ``mac``, as the vendor reads it)."""
    if not isinstance(message, dict):
        return None
    ip = ipv4_address(message.get("ip"))
    mac = normalize_mac(message.get("mac"))
    if ip is None or mac is None:
        return None
    return DiscoveryAnswer(ip, mac)


def parse_discovery_datagram(data: bytes) -> list[DiscoveryAnswer]:
    """Return the plugs a datagram received by a scan names (anything else is ignored)."""
    if len(data) > MAX_DATAGRAM:
        return []
    answers: list[DiscoveryAnswer] = []
    for raw in data.splitlines():
        try:
            message = json.loads(raw.decode("utf-8"))
        except ValueError:
            # UnicodeDecodeError is a ValueError too: a stray datagram, not a plug's answer.
            continue
        if (answer := discovery_answer(message)) is not None:
            answers.append(answer)
    return answers
