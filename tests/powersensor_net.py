"""Loopback-only UDP for the Powersensor tests: a private 127.x subnet per test, nothing sent elsewhere.

Each test gets its own /24 inside 127.0.0.0/8 (Linux routes all of it to loopback), so the emulated
plugs (``.11``, ``.12``) and the segment's stand-in broadcast address (``.255``) never collide with
another test or a running ``scripts/develop``. ``loopback_only`` lets sockets connect to any 127.x
address (the harness allows 127.0.0.1 only) and refuses - and reports - every datagram sent to an
address outside 127.0.0.0/8, so "nothing leaves loopback" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from dataclasses import dataclass
import errno
import ipaddress
import json
import random
import socket
from typing import Any, Final

import pytest
import pytest_socket

from simulators.powersensor_plugs import PlugNetwork

LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")
PLUG_A: Final = "246f280487a4"
PLUG_B: Final = "a4cf1276fc70"
HOUSE: Final = "bcddc247d1f5"
SOLAR: Final = "bcddc247d289"
WATER: Final = "bcddc247d338"


@dataclass(frozen=True, slots=True)
class Subnet:
    """A /24 of loopback addresses for one test."""

    prefix: str

    def host(self, last: int) -> str:
        """Return ``<prefix>.<last>``."""
        return f"{self.prefix}.{last}"

    @property
    def plug_a(self) -> str:
        """The first plug's address."""
        return self.host(11)

    @property
    def plug_b(self) -> str:
        """The second plug's address."""
        return self.host(12)

    @property
    def broadcast(self) -> str:
        """The segment's stand-in broadcast address (a plain loopback address)."""
        return self.host(255)

    def adapter(self) -> dict[str, Any]:
        """Return a Home Assistant network adapter on this subnet (its broadcast is ``.255``)."""
        return {
            "auto": True,
            "default": True,
            "enabled": True,
            "index": 1,
            "ipv4": [{"address": self.host(1), "network_prefix": 24}],
            "ipv6": [],
            "name": "lo",
        }


def new_subnet() -> Subnet:
    """Return a random 127.a.b.0/24 (never 127.0.0.0/24, which other tests and tools use)."""
    return Subnet(f"127.{random.randint(1, 254)}.{random.randint(1, 254)}")


def _is_loopback(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host)) in LOOPBACK
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only_sockets() -> Iterator[list[str]]:
    """Allow connects to all of 127.0.0.0/8; refuse and record datagrams sent anywhere else."""
    violations: list[str] = []
    original = socket.socket.sendto

    def guarded_sendto(sock: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1]
        host = address[0] if isinstance(address, tuple) else address
        if sock.family == socket.AF_INET and not _is_loopback(host):
            violations.append(str(host))
            raise OSError(
                errno.EPERM, f"the tests send nothing outside 127.0.0.0/8 ({host})"
            )
        return original(sock, data, *args)

    pytest_socket.socket_allow_hosts(["127.0.0.0/8"])
    socket.socket.sendto = guarded_sendto  # type: ignore[assignment,method-assign]
    try:
        yield violations
    finally:
        socket.socket.sendto = original  # type: ignore[method-assign]
        pytest_socket.socket_allow_hosts(["127.0.0.1"])


@pytest.fixture
def loopback_only(socket_enabled: None) -> Iterator[list[str]]:
    """Sockets on, loopback only; the test fails if anything was sent outside 127.0.0.0/8."""
    with loopback_only_sockets() as violations:
        yield violations
    assert not violations, f"datagrams were sent outside loopback: {violations}"


@pytest.fixture
def subnet() -> Subnet:
    """Return a private loopback /24 for this test."""
    return new_subnet()


@contextlib.asynccontextmanager
async def emulated_household(
    subnet: Subnet,
    *,
    plug_interval: float = 0.2,
    sensor_interval: int = 1,
    hold: bool = False,
) -> AsyncIterator[PlugNetwork]:
    """Run the plug emulator in this process: plugs A, B on ``.11``/``.12``, the segment on ``.255``."""
    network = PlugNetwork(
        ((PLUG_A, subnet.plug_a), (PLUG_B, subnet.plug_b)),
        (
            (HOUSE, "house-net", PLUG_A),
            (SOLAR, "solar", PLUG_B),
            (WATER, "water", PLUG_B),
        ),
        broadcast=subnet.broadcast,
        plug_interval=plug_interval,
        sensor_interval=sensor_interval,
        hold=hold,
    )
    await network.start()
    try:
        yield network
    finally:
        await network.close()


async def control(network: PlugNetwork, cmd: str, **arguments: Any) -> dict[str, Any]:
    """Run an emulator command in-process; fail the test if the emulator refuses it."""
    response = await network.command({"cmd": cmd, **arguments})
    assert response["ok"], response
    return response


class ControlClient:
    """The emulator's JSON-lines control port, for an emulator running as a separate process."""

    def __init__(self, host: str, port: int) -> None:
        """Remember where the control port is; each command opens its own connection."""
        self.host = host
        self.port = port

    async def __call__(self, cmd: str, **arguments: Any) -> dict[str, Any]:
        """Send one command and return the emulator's answer (bounded wait)."""
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(json.dumps({"cmd": cmd, **arguments}).encode() + b"\n")
                await writer.drain()
                response: dict[str, Any] = json.loads(await reader.readline())
            finally:
                writer.close()
                await writer.wait_closed()
        assert response["ok"], response
        return response
