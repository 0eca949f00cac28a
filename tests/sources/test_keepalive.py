"""TCP keepalive on a real loopback connection: the options the kernel is given, and where there is no socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from custom_components.instrument_hub.sources.hololinked.client import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
)
from custom_components.instrument_hub.sources.keepalive import enable_keepalive


async def test_the_kernel_gets_the_probe_timing(socket_enabled: None) -> None:
    """The probe timing of hololinked's streams (5 s idle, every 2 s, 3 probes); no socket, no keepalive."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert enable_keepalive(
            writer.transport,
            idle=KEEPALIVE_IDLE,
            interval=KEEPALIVE_INTERVAL,
            count=KEEPALIVE_COUNT,
        )
        sock = writer.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if not hasattr(socket, "TCP_KEEPIDLE"):
            pytest.skip("no TCP_KEEPIDLE on this platform")
        assert (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        ) == (5, 2, 3)
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert enable_keepalive(None) is False
