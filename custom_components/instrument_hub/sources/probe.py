"""Connection test used by the config flow before an entry is created (no Home Assistant imports)."""

from __future__ import annotations

import asyncio
import contextlib

from .base import CannotConnect


async def tcp_probe(host: str, port: int, timeout: float = 5.0) -> None:
    """Open and close one TCP connection; raise CannotConnect when the endpoint does not accept it."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as err:
        raise CannotConnect(f"{host}:{port}: {err or 'timed out'}") from err
    writer.close()
    # The peer may already have closed its side; the probe succeeded either way.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
