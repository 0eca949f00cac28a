"""The per-plug UDP link, the scan and the probe, on their edges (closing while opening, errors)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
from unittest.mock import patch

import pytest

from custom_components.instrument_hub.sources.powersensor.client import (
    PlugLink,
    ProbeFailed,
    probe_plug,
    scan,
)
from custom_components.instrument_hub.sources.powersensor.protocol import (
    PORT,
    BadLine,
    Report,
)
from tests.powersensor_net import PLUG_A, PLUG_B, Subnet, control, emulated_household

pytestmark = pytest.mark.usefixtures("loopback_only")


def _link(
    host: str, reports: list[Report] | None = None, *, backoff_min: float = 2.0
) -> PlugLink:
    def on_reports(_link: PlugLink, batch: list[Report]) -> None:
        if reports is not None:
            reports.extend(batch)

    return PlugLink(
        host,
        on_reports=on_reports,
        on_bad_line=lambda _link, _line: None,
        backoff_min=backoff_min,
    )


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)  # a poll inside the bounded wait, not a time wait


async def test_closing_while_opening_closes_the_new_socket(subnet: Subnet) -> None:
    """close() during open(): the socket made meanwhile is closed at once, nothing stays open."""
    link = _link(subnet.plug_a)
    opening = asyncio.create_task(link.open())
    await asyncio.sleep(0)
    await link.close()
    await opening
    assert not link.is_open
    await link.open()  # a closed link stays closed
    assert not link.is_open
    link.renew()
    link.nudge()
    assert link.subscribes_sent == 0
    await _link(subnet.plug_b).close()  # never opened: nothing to do


async def test_a_lost_socket_is_opened_again(subnet: Subnet) -> None:
    """The socket going away under the link (not by close) is replaced after back-off."""
    async with emulated_household(subnet):
        reports: list[Report] = []
        link = _link(subnet.plug_a, reports, backoff_min=0.05)
        await link.open()
        await _until(lambda: bool(reports))
        transport = link._transport
        assert transport is not None
        transport.abort()
        await _until(lambda: link.sockets_opened == 2 and link.is_open)
        reports.clear()
        await _until(lambda: bool(reports))
        await link.close()
        assert link.stats()["sockets_opened"] == 2


async def test_send_errors_are_counted_not_raised(subnet: Subnet) -> None:
    """A subscribe the system refuses to send is counted; the link keeps trying."""
    link = _link(subnet.plug_a, backoff_min=0.05)
    await link.open()
    transport = link._transport
    assert transport is not None
    with patch.object(transport, "sendto", side_effect=OSError(101, "unreachable")):
        link.renew()
    assert link.socket_errors == 1
    link.error_received(ConnectionRefusedError())
    assert link.socket_errors == 2
    await link.close()


async def test_protocol_lines_in_the_stream(subnet: Subnet) -> None:
    """Discovery answers and unknown subscription notices in a stream are consumed quietly."""
    reports: list[Report] = []
    bad: list[BadLine] = []
    link = PlugLink(
        subnet.plug_a,
        on_reports=lambda _link, batch: reports.extend(batch),
        on_bad_line=lambda _link, line: bad.append(line),
    )
    link.datagram_received(
        b'{"type": "discovery", "ip": "127.0.0.11", "mac": "246f280487a4"}\n'
        b'{"type": "subscription", "subtype": "granted"}\n',
        (subnet.plug_a, PORT),
    )
    assert reports == [] and bad == [] and link.subscribes_sent == 0


async def test_scan_with_nothing_to_scan_and_a_refused_send(
    subnet: Subnet, caplog: pytest.LogCaptureFixture
) -> None:
    """No address: no socket at all. An address the system refuses: one warning, the scan goes on."""
    assert await scan([]) == {}
    caplog.set_level(logging.WARNING)
    assert await scan([subnet.broadcast], port=0, seconds=0.2, interval=0.1) == {}
    refused = [
        r
        for r in caplog.records
        if "Cannot send the Powersensor discovery" in r.getMessage()
    ]
    assert len(refused) == 1


async def test_probe_waits_for_the_plug_s_own_report(subnet: Subnet) -> None:
    """A probe answers with the plug's MAC (not a relayed sensor's); nothing there: ProbeFailed."""
    async with emulated_household(subnet) as network:
        assert await probe_plug(subnet.plug_b, timeout=2) == PLUG_B
        await control(network, "silence", plug=PLUG_A)
        with pytest.raises(ProbeFailed):
            await probe_plug(subnet.plug_a, timeout=0.3)
