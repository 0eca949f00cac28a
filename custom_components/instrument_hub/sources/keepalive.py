"""TCP keepalive on a connection's socket: the kernel watches a peer host that vanished.

Keepalive costs the event loop nothing while the link is quiet (the kernel sends the probes); when
the peer stops answering them the socket fails and the reader sees the error. It cannot tell a
frozen server (its kernel still answers), which is why the sources also ask after a silence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final

_LOGGER = logging.getLogger(__name__)

KEEPALIVE_IDLE: Final = 30
"""Seconds of silence before the kernel's first keepalive probe."""
KEEPALIVE_INTERVAL: Final = 10
KEEPALIVE_COUNT: Final = 3
"""Unanswered probes after which the connection fails (a vanished host: about 60 s)."""


def enable_keepalive(
    transport: asyncio.BaseTransport | None,
    *,
    idle: int = KEEPALIVE_IDLE,
    interval: int = KEEPALIVE_INTERVAL,
    count: int = KEEPALIVE_COUNT,
) -> bool:
    """Turn on TCP keepalive where the platform has the options; tell whether it is on.

    A silent peer host is given up ``idle + interval * count`` seconds after the last byte.
    """
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", count),
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    except OSError as err:
        _LOGGER.debug("TCP keepalive not enabled: %s", err)
        return False
    return True
