"""The library's defects the reference note documents, each shown on the library's own class, then not in ours.

powersensor-local 2.4.0 is used for what it does well (``translate_raw_message``,
``VirtualHousehold``); its transport and liveness are replaced. Each test runs one scenario twice:
first against the library's class, asserting the defect really happens (so the test notices the day
a new release fixes it), then against this integration's code, asserting it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
import errno
from functools import partial
import os
from pathlib import Path
import socket
from typing import Any
from unittest.mock import patch

from powersensor_local import PlugListenerUdp, PowersensorLegacyDevices, devices
from powersensor_local.legacy_discovery import LegacyDiscovery
import pytest

from custom_components.instrument_hub.events import DeviceFound, DeviceLost, Reading
from custom_components.instrument_hub.sources.powersensor import (
    PowersensorSettings,
    PowersensorSource,
)
from custom_components.instrument_hub.sources.powersensor.client import PlugLink, scan
from custom_components.instrument_hub.sources.powersensor.protocol import (
    PORT,
    BadLine,
    Report,
)
from tests.powersensor_net import PLUG_A, Subnet, control, emulated_household

from .conftest import EventRecorder

pytestmark = pytest.mark.usefixtures("loopback_only")

RAW_PLUG_LINE = (
    b'{"type": "instant_power", "device": "plug", "mac": "246f280487a4", "role": "appliance",'
    b' "starttime": 1772164754.1, "duration": 1.0, "power": 12.0, "unit": "W"}'
)


def _udp_sockets_to(host: str, port: int) -> int:
    """Count this process's UDP sockets connected to host:port (from /proc: exact, not a guess)."""
    remote = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
    inodes: set[str] = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote:
            inodes.add(fields[9])
    own = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            own += 1
    return own


def _sockets_are(host: str, count: int) -> bool:
    return _udp_sockets_to(host, PORT) == count


async def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded, polling the loop) until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)  # a poll inside the bounded wait, not a time wait


# --------------------------------------------------------------------------------------------------
# 1. A device silent for longer than the expiry never comes back on the same instance


async def test_expired_devices_come_back(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Library: after device_lost, a plug streaming again delivers nothing, rescan or not. Ours: back."""
    async with emulated_household(subnet) as network:
        library_events: list[dict[str, Any]] = []
        library = PowersensorLegacyDevices(bcast_addr=subnet.broadcast)

        async def on_event(event: dict[str, Any]) -> None:
            library_events.append(dict(event))
            if event["event"] == "device_found":
                library.subscribe(str(event["mac"]))

        def plug_a_data() -> int:
            return sum(
                1
                for event in library_events
                if event["event"] == "average_power" and event["mac"] == PLUG_A
            )

        with (
            patch.object(devices, "EXPIRY_TIMEOUT_S", 1.0),
            patch.object(devices, "EXPIRY_CHECK_INTERVAL_S", 0.2),
        ):
            assert await library.start(on_event) == 2
            await _wait_until(lambda: plug_a_data() > 0)
            await control(network, "silence", plug=PLUG_A)
            await _wait_until(
                lambda: {"event": "device_lost", "mac": PLUG_A} in library_events
            )
            await control(network, "resume", plug=PLUG_A)
            before = plug_a_data()
            await library.rescan()  # 2 s; the plug streams and answers meanwhile
            await asyncio.sleep(1.0)  # (observation window: nothing must arrive)
            assert plug_a_data() == before, "the library delivered data after expiry"
            found_a = [
                event
                for event in library_events
                if event["event"] == "device_found" and event["mac"] == PLUG_A
            ]
            assert len(found_a) == 1, "the library announced the plug again"
            await library.stop()

        source = PowersensorSource(
            PowersensorSettings(
                broadcast_addresses=(subnet.broadcast,),
                plug_timeout=1.0,
                sensor_timeout=1.0,
                scan_seconds=0.5,
            )
        )
        await source.async_start(recorder)
        try:
            found = await recorder.wait_for(
                DeviceFound, lambda e: e.hardware_id == PLUG_A
            )
            await control(network, "silence", plug=PLUG_A)
            await recorder.wait_for(
                DeviceLost, lambda e: e.device_key == found.device_key
            )
            await control(network, "resume", plug=PLUG_A)
            await recorder.wait_for(
                DeviceFound, lambda e: e.device_key == found.device_key, count=2
            )
            seen = len(recorder.events)
            async with asyncio.timeout(5):
                while not any(
                    isinstance(e, Reading) and e.device_key == found.device_key
                    for e in recorder.events[seen:]
                ):
                    await asyncio.sleep(0.05)  # a poll inside the bounded wait
        finally:
            await source.async_stop()


# --------------------------------------------------------------------------------------------------
# 2. Sockets leak when the plug's address takes datagrams but never answers


async def test_no_socket_leaks_towards_a_silent_plug(subnet: Subnet) -> None:
    """Library: every retry opens another socket and disconnect() closes only the last. Ours: one."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(
        (subnet.plug_a, PORT)
    )  # takes datagrams (no ICMP back), answers nothing
    try:
        listener = PlugListenerUdp(subnet.plug_a)
        listener.connect()
        await _wait_until(lambda: _udp_sockets_to(subnet.plug_a, PORT) == 1)
        for expected in (2, 3):  # its retry timer firing (after 4 s, then 6 s more)
            assert listener._reconnect is not None
            listener._reconnect.cancel()
            listener._retry()
            await _wait_until(partial(_sockets_are, subnet.plug_a, expected))
        assert _udp_sockets_to(subnet.plug_a, PORT) == 3
        await listener.disconnect()
        # The socket it closes goes on a later turn of the loop: wait (bounded) for that.
        await _wait_until(lambda: _udp_sockets_to(subnet.plug_a, PORT) < 3)
        assert _udp_sockets_to(subnet.plug_a, PORT) == 2, (
            "the library's sockets did not leak"
        )

        link = PlugLink(
            subnet.plug_b,
            on_reports=lambda _link, _reports: None,
            on_bad_line=lambda _link, _line: None,
            backoff_min=0.05,
            backoff_max=0.1,
        )
        silent_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent_b.bind((subnet.plug_b, PORT))
        try:
            await link.open()
            await _wait_until(lambda: link.subscribes_sent >= 6)
            assert link.sockets_opened == 1
            assert _udp_sockets_to(subnet.plug_b, PORT) == 1
            await link.close()
            assert _udp_sockets_to(subnet.plug_b, PORT) == 0
        finally:
            silent_b.close()
    finally:
        silent.close()


# --------------------------------------------------------------------------------------------------
# 3. A connect error ends the retries for good


def _failing_once(
    real: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    calls = {"n": 0}

    async def create_datagram_endpoint(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return await real(*args, **kwargs)

    return create_datagram_endpoint


async def test_a_connect_error_does_not_end_the_retries(subnet: Subnet) -> None:
    """Library: the connect task dies with the error and nothing retries. Ours: retried, streaming."""
    loop = asyncio.get_running_loop()
    async with emulated_household(subnet) as network:
        listener = PlugListenerUdp(subnet.plug_a)
        tasks: list[asyncio.Task[None]] = []
        original_task = listener._task

        def keep(coro: Coroutine[Any, Any, None]) -> None:
            original_task(coro)
            tasks.append(next(iter(listener._tasks)))

        with (
            patch.object(listener, "_task", keep),
            patch.object(
                loop,
                "create_datagram_endpoint",
                _failing_once(loop.create_datagram_endpoint),
            ),
        ):
            listener.connect()
            await asyncio.wait(tasks, timeout=5)
        assert isinstance(tasks[0].exception(), OSError)
        assert (
            listener._reconnect is None and listener._transport is None
        )  # no retry exists
        await listener.disconnect()

        reports: list[Report] = []
        link = PlugLink(
            subnet.plug_a,
            on_reports=lambda _link, batch: reports.extend(batch),
            on_bad_line=lambda _link, _line: None,
            backoff_min=0.05,
        )
        with patch.object(
            loop,
            "create_datagram_endpoint",
            _failing_once(loop.create_datagram_endpoint),
        ):
            await link.open()
            assert not link.is_open
            await _wait_until(lambda: bool(reports))
        assert link.sockets_opened == 1
        await link.close()
        state = (await control(network, "state"))["plugs"][0]
        assert state["counters"]["subscribes"] >= 1


# --------------------------------------------------------------------------------------------------
# 4. A JSON line without "type" raises out of the datagram handler and loses the rest


async def test_a_line_without_type_costs_only_itself() -> None:
    """Library: KeyError from datagram_received, the good line after it is lost. Ours: delivered."""
    data = b'{"mac": "246f280487a4", "power": 5}\n' + RAW_PLUG_LINE + b"\n"
    listener = PlugListenerUdp("127.0.0.1")
    messages: list[object] = []

    async def on_message(_name: str, message: object) -> None:
        messages.append(message)

    listener.subscribe("message", on_message)
    with pytest.raises(KeyError):
        listener.datagram_received(data, ("127.0.0.1", PORT))
    assert messages == [] and not listener._tasks
    await listener.disconnect()  # its inactivity timer

    reports: list[Report] = []
    bad: list[BadLine] = []
    link = PlugLink(
        "127.0.0.1",
        on_reports=lambda _link, batch: reports.extend(batch),
        on_bad_line=lambda _link, line: bad.append(line),
    )
    link.datagram_received(data, ("127.0.0.1", PORT))
    assert [report.message["power"] for report in reports] == [12.0]
    assert [line.reason for line in bad] == ["no message type"]


# --------------------------------------------------------------------------------------------------
# Found while replacing the scan: the library's LegacyDiscovery


async def test_a_cancelled_scan_closes_its_socket(subnet: Subnet) -> None:
    """Library: cancelling scan() (an unload during setup) leaves its socket open. Ours: closed."""
    loop = asyncio.get_running_loop()
    real = loop.create_datagram_endpoint
    opened: list[asyncio.BaseTransport] = []

    async def recording(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await real(*args, **kwargs)
        opened.append(transport)
        return transport, protocol

    with patch.object(loop, "create_datagram_endpoint", recording):
        library = asyncio.create_task(LegacyDiscovery(subnet.broadcast).scan())
        await _wait_until(lambda: len(opened) == 1)
        library.cancel()
        with pytest.raises(asyncio.CancelledError):
            await library
        await asyncio.sleep(0)
        assert not opened[0].is_closing(), "the library's scan closed its socket"
        opened[0].close()  # the test leaves nothing behind

        ours = asyncio.create_task(scan([subnet.broadcast]))
        await _wait_until(lambda: len(opened) == 2)
        ours.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ours
        assert opened[1].is_closing()


def test_a_scan_answer_in_a_wrong_encoding_is_ignored() -> None:
    """Library: a non-UTF-8 datagram raises out of its datagram handler. Ours: ignored."""
    with pytest.raises(UnicodeDecodeError):
        LegacyDiscovery("127.0.0.1").datagram_received(b"\xff\xfe", ("127.0.0.1", PORT))
    from custom_components.instrument_hub.sources.powersensor.protocol import (  # noqa: PLC0415
        parse_discovery_datagram,
    )

    assert parse_discovery_datagram(b"\xff\xfe") == []
