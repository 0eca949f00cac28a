"""The Powersensor source against the plug emulator (in this process, on a private 127.x subnet).

No Home Assistant: the events the source emits are recorded and checked, with the emulator's own
record of what it sent (``state``) as the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
import json
import logging
import os
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.instrument_hub.events import (
    ChannelDefined,
    DeviceFound,
    DeviceLost,
    EventData,
    LinkDown,
    LinkUp,
    Message,
    Reading,
)
from custom_components.instrument_hub.sources.base import CannotConnect, UnknownTarget
from custom_components.instrument_hub.sources.powersensor import (
    PowersensorSettings,
    PowersensorSource,
)
from custom_components.instrument_hub.sources.powersensor.client import PlugLink
from custom_components.instrument_hub.sources.powersensor.protocol import (
    MAX_DATAGRAM,
    MAX_LINES,
    BadLine,
    Report,
    parse_datagram,
    parse_line,
)
from simulators.powersensor_plugs import PlugNetwork
from tests.powersensor_net import (
    HOUSE,
    PLUG_A,
    PLUG_B,
    SOLAR,
    WATER,
    Subnet,
    control,
    emulated_household,
)

from .conftest import EventRecorder

pytestmark = pytest.mark.usefixtures("loopback_only")

FAST = PowersensorSettings(
    plug_timeout=1.0, sensor_timeout=3.0, scan_seconds=0.5, backoff_min=0.2
)


@contextlib.asynccontextmanager
async def running(
    settings: PowersensorSettings,
    recorder: EventRecorder,
    *,
    on_state: Callable[[dict[str, str], bool], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[PowersensorSource]:
    """Start a source (stopped again whatever happens)."""
    kwargs: dict[str, Any] = {"on_state": on_state}
    if clock is not None:
        kwargs["clock"] = clock
    source = PowersensorSource(settings, **kwargs)
    await source.async_start(recorder)
    try:
        yield source
    finally:
        await source.async_stop()


def _has_hardware_id(mac: str, event: DeviceFound) -> bool:
    return event.hardware_id == mac


def _has_key(key: str, event: DeviceFound) -> bool:
    return event.device_key == key


def _scanning(subnet: Subnet, **changes: Any) -> PowersensorSettings:
    return replace(FAST, broadcast_addresses=(subnet.broadcast,), **changes)


def _key(recorder: EventRecorder, mac: str) -> str:
    return next(
        e.device_key for e in recorder.of_type(DeviceFound) if e.hardware_id == mac
    )


def _values_after(
    recorder: EventRecorder, mark: int, device_key: str
) -> dict[str, object]:
    """Return the last value of each channel of a device among the events after ``mark``."""
    values: dict[str, object] = {}
    for event in recorder.events[mark:]:
        if isinstance(event, Reading) and event.device_key == device_key:
            values[event.channel_key] = event.value
    return values


async def _after(
    recorder: EventRecorder,
    mark: int,
    predicate: Callable[[object], bool],
    count: int = 1,
) -> None:
    """Wait (bounded) until ``count`` events after position ``mark`` satisfy ``predicate``."""
    async with asyncio.timeout(5):
        while sum(1 for e in recorder.events[mark:] if predicate(e)) < count:
            recorder._new.clear()
            await recorder._new.wait()


def _is_reading(device_key: str, channel_key: str, event: object) -> bool:
    return (
        isinstance(event, Reading)
        and event.device_key == device_key
        and event.channel_key == channel_key
    )


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) for a counter no event announces (a duplicate, a skipped line)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)  # a poll inside the bounded wait, not a time wait


async def _readings_of(recorder: EventRecorder, device_key: str) -> int:
    """Wait for a new reading of a device from now; return the mark before it."""
    mark = len(recorder.events)
    await _after(
        recorder, mark, lambda e: isinstance(e, Reading) and e.device_key == device_key
    )
    return mark


# --------------------------------------------------------------------------------------------------
# Discovery and the devices


async def test_scan_finds_every_device_with_its_relay(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """A scan of the segment finds both plugs; sensors hang off their relay; household appears."""
    states: list[tuple[dict[str, str], bool]] = []
    async with (
        emulated_household(subnet) as network,
        running(
            _scanning(subnet),
            recorder,
            on_state=lambda plugs, solar: states.append((plugs, solar)),
        ) as source,
    ):
        for mac in (PLUG_A, PLUG_B, HOUSE, SOLAR, WATER):
            await recorder.wait_for(DeviceFound, partial(_has_hardware_id, mac))
        await recorder.wait_for(DeviceFound, lambda e: e.device_key == "household")
        found = {e.hardware_id: e for e in recorder.of_type(DeviceFound)}
        plug_a, plug_b = found[PLUG_A], found[PLUG_B]
        assert plug_a.name == "Powersensor plug 0487a4"
        assert plug_a.model == "Plug" and plug_a.manufacturer == "Powersensor"
        assert plug_a.connections == (("mac", PLUG_A),)
        assert found[HOUSE].via_device_key == plug_a.device_key
        assert found[SOLAR].via_device_key == plug_b.device_key
        assert found[WATER].via_device_key == plug_b.device_key
        assert found[HOUSE].model == "Sensor (house mains)"
        assert found[SOLAR].name == "Powersensor solar sensor 47d289"
        assert found[WATER].model == "Sensor (water)"
        assert recorder.of_type(LinkUp)
        assert states[-1] == ({PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b}, True)
        # Found events fire on the entry's own device.
        fired = [
            e.value
            for e in recorder.of_type(Reading)
            if e.device_key == "" and isinstance(e.value, EventData)
        ]
        assert {(f.event_type, f.attributes["mac"]) for f in fired} >= {
            ("device_found", mac) for mac in (PLUG_A, PLUG_B, HOUSE, SOLAR, WATER)
        }
        solar_found = next(f for f in fired if f.attributes["mac"] == SOLAR)
        assert solar_found.attributes == {
            "mac": SOLAR,
            "device_type": "sensor",
            "role": "solar",
            "name": "Powersensor solar sensor 47d289",
        }
        state = await control(network, "state")
        for plug in state["plugs"]:
            assert len(plug["subscribers"]) == 1
        assert await source.async_rescan() == 2


async def test_values_are_the_emulator_s(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """With the household held still, every value is the emulator's last report, converted."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder),
    ):
        await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == WATER)
        await control(network, "hold", on=True)
        keys = {mac: _key(recorder, mac) for mac in (PLUG_A, HOUSE, WATER)}
        mark = len(recorder.events)
        # Two reports of each device after the hold: the first may have left before it, the
        # second was made held (as is every later one, so the last values below are the held ones).
        for mac, channel in (
            (PLUG_A, "power"),
            (HOUSE, "power"),
            (WATER, "water_flow"),
        ):
            await _after(recorder, mark, partial(_is_reading, keys[mac], channel), 2)
        state = await control(network, "state")
        raw = {
            **{p["mac"]: p["last"] for p in state["plugs"]},
            **{s["mac"]: s["last"] for s in state["sensors"]},
        }
        plug = _values_after(recorder, mark, keys[PLUG_A])
        assert plug["power"] == round(raw[PLUG_A]["power"])
        assert plug["voltage"] == round(raw[PLUG_A]["voltage"], 3)
        assert plug["apparent_current"] == round(raw[PLUG_A]["current"], 3)
        assert plug["energy"] == round(raw[PLUG_A]["summation"]) / 3_600_000
        house = _values_after(recorder, mark, keys[HOUSE])
        assert house["power"] == raw[HOUSE]["power"]
        assert house["energy"] == raw[HOUSE]["summation"] / 3_600_000
        assert house["battery_voltage"] == raw[HOUSE]["batteryMicrovolt"] / 1e6
        assert house["average_rssi"] == round(raw[HOUSE]["rssi"], 1)
        assert house["sensor_role"] == "house_net"
        water = _values_after(recorder, mark, keys[WATER])
        assert water["water_flow"] == raw[WATER]["average_flow"]
        assert water["water_volume"] == raw[WATER]["summation_volume"]
        assert "power" not in water
        reset = next(
            e.last_reset
            for e in recorder.of_type(ChannelDefined)
            if e.device_key == keys[HOUSE] and e.channel_key == "energy"
        )
        assert reset == datetime.fromtimestamp(raw[HOUSE]["summation_start"], UTC)


async def test_a_plug_address_given_by_hand_learns_its_plug(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Without any scan, a plug address is followed; its MAC comes from its own reports."""
    async with (
        emulated_household(subnet),
        running(replace(FAST, plug_hosts=(subnet.plug_b,)), recorder) as source,
    ):
        await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_B)
        solar = await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == SOLAR)
        assert solar.via_device_key == _key(recorder, PLUG_B)
        assert not [e for e in recorder.of_type(DeviceFound) if e.hardware_id == PLUG_A]
        assert source.diagnostics()["plugs"] == {PLUG_B: subnet.plug_b}
        assert await source.async_rescan() == 0  # nothing to scan


async def test_nothing_answers(subnet: Subnet, recorder: EventRecorder) -> None:
    """No plug streams in time: CannotConnect, and nothing is left open."""
    source = PowersensorSource(
        replace(
            FAST,
            broadcast_addresses=(subnet.broadcast,),
            plug_hosts=(subnet.plug_a,),
            start_timeout=0.5,
        )
    )
    with pytest.raises(CannotConnect):
        await source.async_start(recorder)
    assert source.diagnostics()["links"] == []
    with pytest.raises(CannotConnect):
        await PowersensorSource(PowersensorSettings()).async_start(recorder)


# --------------------------------------------------------------------------------------------------
# Liveness


async def test_a_silent_plug_is_lost_with_its_sensors_and_comes_back(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Plug A silent: it, its house sensor and the household go; link down when B goes too; all back."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder),
    ):
        await recorder.wait_for(DeviceFound, lambda e: e.device_key == "household")
        plug_a, house = _key(recorder, PLUG_A), _key(recorder, HOUSE)
        await control(network, "silence", plug=PLUG_A)
        lost = await recorder.wait_for(DeviceLost, lambda e: e.device_key == plug_a)
        assert lost.reason.startswith("silent for")
        house_lost = await recorder.wait_for(
            DeviceLost, lambda e: e.device_key == house
        )
        assert "is gone" in house_lost.reason
        await recorder.wait_for(DeviceLost, lambda e: e.device_key == "household")
        assert not recorder.of_type(LinkDown)  # plug B still streams
        await control(network, "silence", plug=PLUG_B)
        down = await recorder.wait_for(LinkDown)
        assert "no Powersensor plug" in down.reason
        await control(network, "resume", plug=PLUG_A)
        await control(network, "resume", plug=PLUG_B)
        await recorder.wait_for(LinkUp, count=2)
        for key in (plug_a, house, "household"):
            await recorder.wait_for(DeviceFound, partial(_has_key, key), count=2)
        lost_events = [
            e.value.attributes["mac"]
            for e in recorder.of_type(Reading)
            if isinstance(e.value, EventData) and e.value.event_type == "device_lost"
        ]
        assert PLUG_A in lost_events and HOUSE in lost_events


async def test_back_after_a_silence_longer_than_the_library_s_expiry(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """A plug silent for more than 5 minutes (by the source's clock) comes back by itself."""
    skew = {"s": 0.0}

    def clock() -> float:
        return asyncio.get_running_loop().time() + skew["s"]

    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet, plug_timeout=2.0), recorder, clock=clock),
    ):
        plug_a = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
        ).device_key
        await control(network, "silence", plug=PLUG_A)
        skew["s"] = 301.0  # six minutes have passed for the source
        lost = await recorder.wait_for(DeviceLost, lambda e: e.device_key == plug_a)
        assert int(lost.reason.split()[2]) > 300
        await control(network, "resume", plug=PLUG_A)
        await recorder.wait_for(DeviceFound, lambda e: e.device_key == plug_a, count=2)


async def test_a_sensor_moving_to_another_plug_is_re_linked(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """The solar sensor moves from plug B to plug A: the same device, its relay updated."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder),
    ):
        solar = await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == SOLAR)
        plug_a = _key(recorder, PLUG_A)
        await control(network, "move", sensor=SOLAR, plug=PLUG_A)
        moved = await recorder.wait_for(
            DeviceFound, lambda e: e.hardware_id == SOLAR and e.via_device_key == plug_a
        )
        assert moved.device_key == solar.device_key
        assert not [
            e for e in recorder.of_type(DeviceLost) if e.device_key == solar.device_key
        ]


async def test_a_report_relayed_twice_counts_once(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Plug B is in range of the house sensor too: each report counts once; when A goes, B keeps it."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet, sensor_timeout=5.0), recorder) as source,
    ):
        house = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == HOUSE)
        ).device_key
        plug_a, plug_b = _key(recorder, PLUG_A), _key(recorder, PLUG_B)
        await control(network, "also", sensor=HOUSE, plug=PLUG_B)
        # The first report through both plugs: from now on every window comes twice.
        await _until(lambda: source.diagnostics()["devices"][house]["duplicates"] >= 1)
        mark = len(recorder.events)
        # Kept: an observation window (about two sensor windows are counted), not a wait.
        await asyncio.sleep(2.1)
        powers = [
            e
            for e in recorder.events[mark:]
            if isinstance(e, Reading)
            and e.device_key == house
            and e.channel_key == "power"
        ]
        assert 1 <= len(powers) <= 3  # one per window, not two
        assert source.diagnostics()["devices"][house]["duplicates"] >= 2
        assert source.diagnostics()["devices"][house]["via"] == plug_a
        await control(network, "silence", plug=PLUG_A)
        await recorder.wait_for(DeviceLost, lambda e: e.device_key == plug_a)
        moved = await recorder.wait_for(
            DeviceFound, lambda e: e.device_key == house and e.via_device_key == plug_b
        )
        assert moved.hardware_id == HOUSE
        assert not [e for e in recorder.of_type(DeviceLost) if e.device_key == house]
        assert source.diagnostics()["counters"]["relinks"] >= 1


async def test_a_silent_sensor_is_lost_and_the_household_with_solar(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """The solar sensor's battery goes flat: it is lost after its threshold, the household too."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet, sensor_timeout=1.5), recorder),
    ):
        await recorder.wait_for(DeviceFound, lambda e: e.device_key == "household")
        solar = _key(recorder, SOLAR)
        await control(network, "silence", sensor=SOLAR)
        lost = await recorder.wait_for(DeviceLost, lambda e: e.device_key == solar)
        assert lost.reason.startswith("silent for")
        household = await recorder.wait_for(
            DeviceLost, lambda e: e.device_key == "household"
        )
        assert household.reason == "the solar sensor is gone"
        assert not [
            e
            for e in recorder.of_type(DeviceLost)
            if e.device_key == _key(recorder, PLUG_B)
        ]
        await control(network, "resume", sensor=SOLAR)
        await recorder.wait_for(
            DeviceFound, lambda e: e.device_key == "household", count=2
        )


async def test_odd_reports_in_the_stream(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """A role change re-announces the sensor; a plug with water fields and a BLE device are ignored."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder) as source,
    ):
        house = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == HOUSE)
        ).device_key
        state = await control(network, "state")
        report = dict(state["sensors"][0]["last"])
        report.update(role="appliance", starttime=report["starttime"] + 7)
        odd = [
            report,
            {
                **state["plugs"][0]["last"],
                "unit": "L",
                "average_flow": 3.0,
                "summation_volume": 1.0,
            },
            {
                "type": "auxiliary",
                "device": "ble_sensor",
                "mac": "aabbccddeeff",
                "subtype": "instant",
            },
        ]
        await control(
            network,
            "inject",
            plug=PLUG_A,
            hex="".join(json.dumps(line) + "\n" for line in odd).encode().hex(),
        )
        renamed = await recorder.wait_for(
            DeviceFound,
            lambda e: e.device_key == house and e.model == "Sensor (appliance)",
        )
        assert renamed.name == "Powersensor appliance sensor 47d1f5"
        # The rest of the injected datagram has been read once its ignored report is counted.
        await _until(lambda: source.diagnostics()["counters"]["ignored_reports"] >= 1)
        assert source.diagnostics()["counters"]["ignored_reports"] == 1
        assert not [
            e
            for e in recorder.of_type(ChannelDefined)
            if e.device_key == _key(recorder, PLUG_A) and e.channel_key == "water_flow"
        ]


async def test_a_plug_with_a_new_address_is_followed(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Plug A moves to another address (DHCP): a scan finds it there; same device, address kept."""
    states: list[dict[str, str]] = []
    async with (
        emulated_household(subnet) as network,
        running(
            _scanning(subnet, plug_timeout=1.0, lost_scan_min=0.2),
            recorder,
            on_state=lambda plugs, _solar: states.append(plugs),
        ) as source,
    ):
        plug_a = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
        ).device_key
        await control(network, "address", plug=PLUG_A, ip=subnet.host(21))
        await recorder.wait_for(DeviceLost, lambda e: e.device_key == plug_a)
        await recorder.wait_for(DeviceFound, lambda e: e.device_key == plug_a, count=2)
        assert states[-1][PLUG_A] == subnet.host(21)
        hosts = sorted(link["host"] for link in source.diagnostics()["links"])
        assert hosts == sorted([subnet.host(21), subnet.plug_b])


async def test_an_announced_plug_is_subscribed_at_once(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """A zeroconf announcement with a new address moves the plug there without waiting for a scan.

    The same announcement twice in a row (or a scan finding it meanwhile) opens one socket, not two.
    """
    fds = len(os.listdir("/proc/self/fd"))
    async with emulated_household(subnet) as network:
        emulator_fds = len(os.listdir("/proc/self/fd"))
        async with running(
            replace(
                FAST, plug_hosts=(subnet.plug_b,), known_plugs={PLUG_A: subnet.plug_a}
            ),
            recorder,
        ) as source:
            plug_a = (
                await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
            ).device_key
            await control(network, "address", plug=PLUG_A, ip=subnet.host(31))
            source.plug_announced("24:6F:28:04:87:A4", subnet.host(31))
            source.plug_announced(PLUG_A, subnet.host(31))
            source.plug_announced("not a mac", subnet.host(32))
            await _after(
                recorder,
                0,
                lambda e: isinstance(e, Reading)
                and e.device_key == plug_a
                and source.diagnostics()["plugs"].get(PLUG_A) == subnet.host(31),
            )
            links = source.diagnostics()["links"]
            assert sorted(link["host"] for link in links) == sorted(
                [subnet.host(31), subnet.plug_b]
            )
            assert all(link["sockets_opened"] == 1 for link in links)
        assert len(os.listdir("/proc/self/fd")) == emulator_fds
    assert len(os.listdir("/proc/self/fd")) == fds


# --------------------------------------------------------------------------------------------------
# The subscription protocol


async def test_warning_and_expiry_renew_the_subscription(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """subscribe(60) on start, again on a warning and after an expiry; subscribe(0) on stop."""
    # Silence never renews here: the renewal after silence waits backoff_min (5 s, not FAST's 0.2 s,
    # which a loaded machine's scheduling gap between two datagrams can exceed), so every subscribe
    # counted is the answer to a warning or an expiry.
    settings = replace(
        FAST, plug_hosts=(subnet.plug_a,), plug_timeout=5.0, backoff_min=5.0
    )
    async with emulated_household(subnet) as network:
        async with running(settings, recorder):
            plug_a = (
                await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
            ).device_key

            async def subscribes() -> int:
                state = await control(network, "state")
                return int(state["plugs"][0]["counters"]["subscribes"])

            async def subscribes_reach(count: int) -> int:
                """Re-read the plug's counter after each new reading (bounded), up to ``count``."""
                for _ in range(50):
                    if (seen := await subscribes()) >= count:
                        return seen
                    await recorder.wait_for(
                        Reading, count=len(recorder.of_type(Reading)) + 1
                    )
                return await subscribes()

            first = await subscribes()
            assert first >= 1
            await control(network, "warn", plug=PLUG_A)
            await _readings_of(recorder, plug_a)
            assert await subscribes() == first + 1
            await control(network, "expire", plug=PLUG_A)
            assert await subscribes_reach(first + 2) == first + 2
            assert (await control(network, "state"))["plugs"][0]["subscribers"]
            await _readings_of(recorder, plug_a)
        state = (await control(network, "state"))["plugs"][0]
        assert state["subscribers"] == []
        assert state["counters"]["unsubscribes"] == 1


async def test_a_start_failing_half_way_closes_the_links_it_opened(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """The second plug's link fails to open (cancelled, a bug): the first one is unsubscribed and closed.

    Without it, the first plug's socket and silence timer outlived the failed start (the harness
    reports the lingering timer).
    """
    opened = PlugLink.open

    async def open_or_fail(link: PlugLink) -> None:
        if link.host == subnet.plug_b:
            raise RuntimeError("cannot open")
        await opened(link)

    settings = replace(FAST, plug_hosts=(subnet.plug_a, subnet.plug_b))
    async with emulated_household(subnet) as network:
        source = PowersensorSource(settings)
        with (
            patch.object(PlugLink, "open", open_or_fail),
            pytest.raises(RuntimeError, match="cannot open"),
        ):
            await source.async_start(recorder)
        # Bounded poll: the last datagrams are on their way over loopback.
        for _ in range(100):
            state = (await control(network, "state"))["plugs"][0]
            if state["counters"]["unsubscribes"]:
                break
            await asyncio.sleep(0.01)
        assert state["counters"]["subscribes"] >= 1
        assert state["subscribers"] == []
        assert state["counters"]["unsubscribes"] == 1
        assert source.diagnostics()["links"] == []


async def test_a_rebooted_plug_is_subscribed_again(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """A plug that forgot its subscriptions goes quiet; the source subscribes again after ~0.2 s."""
    async with (
        emulated_household(subnet) as network,
        running(replace(FAST, plug_hosts=(subnet.plug_a,), plug_timeout=5.0), recorder),
    ):
        plug_a = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
        ).device_key
        await control(network, "reboot", plug=PLUG_A)
        await _readings_of(recorder, plug_a)
        assert not recorder.of_type(DeviceLost)


# --------------------------------------------------------------------------------------------------
# Bad input in a real stream


async def test_malformed_lines_mid_stream_are_logged_once_and_skipped(
    subnet: Subnet, recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Truncated, non-UTF-8, oversized and typeless lines: one warning, the stream goes on."""
    caplog.set_level(logging.DEBUG)
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder) as source,
    ):
        plug_a = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == PLUG_A)
        ).device_key
        good = json.dumps(
            (await control(network, "state"))["plugs"][0]["last"]
        ).encode()
        for junk in (
            good[:50],
            b"\xff\xfe\xfd",
            b'{"type": "instant_power", "pad": "' + b"x" * 20000 + b'"}',
            b'{"mac": "246f280487a4"}',
            b'{"type": "instant_power", "device": "sensor", "mac": "bcddc247d1f5"}',
            b'{"type": "instant_power", "device": "plug", "mac": "nope", "starttime": 1, "duration": 1, "unit": "I"}',
        ):
            await control(
                network, "inject", plug=PLUG_A, hex=(junk + b"\n" + good + b"\n").hex()
            )
        await _readings_of(recorder, plug_a)

        def skipped() -> int:
            counters = source.diagnostics()["counters"]
            return int(counters["bad_lines"]) + int(counters["untranslatable"])

        await _until(lambda: skipped() >= 6)  # every injected datagram has been read
        counters = source.diagnostics()["counters"]
        assert counters["bad_lines"] == 4
        assert counters["untranslatable"] == 2
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "Skipped a line" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "not JSON" in warnings[0].getMessage()
    assert sum("Skipped a line" in r.getMessage() for r in caplog.records) == 6


async def test_uncalibrated_and_invalid_samples_show_no_power(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Unit U: power unknown and one message; unit I: that window's power unknown."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder),
    ):
        house = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == HOUSE)
        ).device_key
        await control(network, "uncalibrated", sensor=HOUSE, on=True)
        await recorder.wait_for(Message, lambda e: e.device_key == house)
        mark = await _readings_of(recorder, house)
        await _readings_of(recorder, house)
        assert _values_after(recorder, mark, house)["power"] is None
        await control(network, "uncalibrated", sensor=HOUSE, on=False)
        await _after(
            recorder,
            mark,
            lambda e: isinstance(e, Reading)
            and e.device_key == house
            and e.channel_key == "power"
            and e.value is not None,
        )
        mark = len(recorder.events)
        await control(network, "invalid", sensor=HOUSE)
        await _after(
            recorder,
            mark,
            lambda e: isinstance(e, Reading)
            and e.device_key == house
            and e.channel_key == "power"
            and e.value is None,
        )
        assert len([e for e in recorder.of_type(Message) if e.device_key == house]) == 1


async def test_a_meter_reset_redefines_the_channel_with_its_reset_time(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """summation_start moves: the net energy channel is defined again with the new last_reset."""
    async with (
        emulated_household(subnet) as network,
        running(_scanning(subnet), recorder),
    ):
        house = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == HOUSE)
        ).device_key
        await control(network, "reset", mac=HOUSE)
        redefined = await recorder.wait_for(
            ChannelDefined,
            lambda e: e.device_key == house and e.channel_key == "energy",
            count=2,
        )
        assert redefined.last_reset is not None
        assert redefined.last_reset > datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_disabled_device_gets_no_readings(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Unsubscribed at the source: no readings until it is enabled again (it stays followed)."""
    async with (
        emulated_household(subnet),
        running(_scanning(subnet), recorder) as source,
    ):
        water = (
            await recorder.wait_for(DeviceFound, lambda e: e.hardware_id == WATER)
        ).device_key
        source.set_device_enabled(WATER, False)
        source.set_device_enabled("powersensor_household", False)
        mark = len(recorder.events)
        await _readings_of(recorder, _key(recorder, SOLAR))
        await _readings_of(recorder, _key(recorder, SOLAR))
        assert _values_after(recorder, mark, water) == {}
        assert _values_after(recorder, mark, "household") == {}
        source.set_device_enabled(WATER, True)
        await _readings_of(recorder, water)
        assert source.diagnostics()["devices"][water]["muted"] is False
        with pytest.raises(UnknownTarget):
            await source.async_write(water, "water_flow", 1)


async def test_stop_leaves_no_socket_and_no_task(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """After stop: every plug unsubscribed, the fd count back where it was, no task of ours running."""
    fds = len(os.listdir("/proc/self/fd"))
    async with emulated_household(subnet) as network:
        during = 0
        async with running(_scanning(subnet), recorder) as source:
            await recorder.wait_for(DeviceFound, lambda e: e.device_key == "household")
            await source.async_rescan()
            during = len(os.listdir("/proc/self/fd"))
        state = await control(network, "state")
        assert all(plug["subscribers"] == [] for plug in state["plugs"])
    await asyncio.sleep(0)
    assert during > fds
    assert len(os.listdir("/proc/self/fd")) == fds
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not any(name.startswith("Powersensor") for name in names)


def test_emulator_refuses_other_addresses() -> None:
    """The emulator itself never binds or sends outside 127.0.0.0/8."""
    with pytest.raises(ValueError, match="loopback"):
        PlugNetwork(broadcast="192.168.1.255")
    with pytest.raises(ValueError, match="loopback"):
        PlugNetwork(((PLUG_A, "10.0.0.5"),))


# --------------------------------------------------------------------------------------------------
# Edges without a network


async def test_edges(recorder: EventRecorder, caplog: pytest.LogCaptureFixture) -> None:
    """A failing sink or handler is logged; stopped means quiet."""
    source = PowersensorSource(PowersensorSettings())
    link = PlugLink(
        "127.0.0.1", on_reports=lambda _l, _r: None, on_bad_line=lambda _l, _b: None
    )

    def broken(_event: object) -> None:
        raise RuntimeError("sink broke")

    source._sink = broken
    source._emit(LinkUp())
    assert "Event sink failed" in caplog.text

    with patch(
        "custom_components.instrument_hub.sources.powersensor.source.scan",
        side_effect=OSError(99, "cannot assign"),
    ):
        assert await source.async_rescan() == 0
    assert "Powersensor discovery failed" in caplog.text

    with patch.object(source, "_handle_report", side_effect=RuntimeError("bug")):
        source._on_reports(link, [Report({"type": "instant_power"})])
    assert "Error while handling a Powersensor report" in caplog.text

    await source.async_stop()
    source.plug_announced(PLUG_A, "127.0.0.11")  # stopped: ignored
    await source._place_plug(PLUG_A, "127.0.0.11", persist=True)
    source._scan_for_missing()
    await source._on_household("from_grid", {"watts": 5})
    assert source.diagnostics()["links"] == []
    assert not source._tasks


# --------------------------------------------------------------------------------------------------
# Cost: bounded work per datagram, no periodic wake-up, no task per report


def test_a_datagram_of_many_lines_parses_at_most_max_lines() -> None:
    """A datagram stuffed with tiny lines costs at most MAX_LINES parses (the rest is one bad line)."""
    line = b'{"type":"instant_power","device":"plug","mac":"246f280487a4"}\n'
    data = line * (MAX_DATAGRAM // len(line))
    with patch(
        "custom_components.instrument_hub.sources.powersensor.protocol.parse_line",
        wraps=parse_line,
    ) as parsed:
        lines = parse_datagram(data)
    assert parsed.call_count == MAX_LINES
    assert len(lines) == MAX_LINES + 1
    last = lines[-1]
    assert isinstance(last, BadLine)
    assert "the rest skipped" in last.reason
    blank = parse_datagram(b"\n" * MAX_DATAGRAM)
    assert blank == []


async def test_reports_are_handled_in_the_read_callback_without_a_task(
    recorder: EventRecorder,
) -> None:
    """A datagram's readings are emitted before datagram_received returns: no queue, no task."""
    source = PowersensorSource(PowersensorSettings())
    source._sink = recorder
    link = source._new_link("127.0.0.1", None)
    tasks = len(asyncio.all_tasks())
    report = json.dumps(_plug_report(power=42.0)).encode()
    link.datagram_received(report + b"\n", ("127.0.0.1", 49476))
    assert [e.value for e in recorder.of_type(Reading) if e.channel_key == "power"] == [
        42.0
    ]
    assert len(asyncio.all_tasks()) == tasks
    await source.async_stop()


def _plug_report(*, power: float) -> dict[str, Any]:
    """Return a plug's own report of ``power`` W (components fixed), as the plug sends it."""
    return {
        "type": "instant_power",
        "device": "plug",
        "mac": PLUG_A,
        "unit": "W",
        "starttime": 1.0,
        "duration": 1.0,
        "power": power,
        "current": 0.2,
        "active_current": 0.1,
        "reactive_current": 0.1,
        "voltage": 230.0,
    }


def _liveness_timer(source: PowersensorSource) -> asyncio.TimerHandle | None:
    return source._liveness


async def test_liveness_sleeps_until_the_next_deadline(recorder: EventRecorder) -> None:
    """While plugs stream, the one liveness timer waits for the earliest deadline, not a second."""
    now = {"t": 1000.0}
    source = PowersensorSource(
        PowersensorSettings(plug_timeout=15.0), clock=lambda: now["t"]
    )
    source._sink = recorder
    link = source._new_link("127.0.0.1", None)
    report = _plug_report(power=1.0)
    loop = asyncio.get_running_loop()
    link.datagram_received(json.dumps(report).encode(), ("127.0.0.1", 49476))
    timer = source._liveness
    assert timer is not None
    assert 14.9 < timer.when() - loop.time() <= 15.1
    for second in range(1, 10):
        now["t"] = 1000.0 + second
        report["starttime"] = 1.0 + second
        link.datagram_received(json.dumps(report).encode(), ("127.0.0.1", 49476))
        assert source._liveness is timer  # reports never re-arm or add timers
    # Fired early (the plug kept talking): one check, then the timer moves to the new deadline.
    now["t"] = 1015.1
    timer.cancel()
    source._check_liveness()
    assert source.diagnostics()["counters"]["liveness_checks"] == 1
    assert source._liveness is not None
    assert 8.8 < source._liveness.when() - loop.time() <= 9.1
    assert not recorder.of_type(DeviceLost)
    # Silent past its deadline: lost, and nothing is present, so no timer is left at all.
    now["t"] = 1030.0
    source._liveness.cancel()
    source._check_liveness()
    assert recorder.of_type(DeviceLost)
    assert not source.diagnostics()["devices"]["plug-1"]["present"]
    assert _liveness_timer(source) is None
    await source.async_stop()


async def test_a_household_step_that_waits_is_dropped_and_reported(
    recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A household step that waits is dropped and logged; the report's readings are out anyway."""
    source = PowersensorSource(PowersensorSettings())
    source._sink = recorder
    link = source._new_link("127.0.0.1", PLUG_A)

    async def waits(_event: object) -> None:
        await asyncio.sleep(0)

    house = {
        "type": "instant_power",
        "device": "sensor",
        "mac": HOUSE,
        "role": "house-net",
        "unit": "w",
        "starttime": 100,
        "duration": 30,
        "power": 500,
        "summation": 10,
        "summation_start": 1,
        "batteryMicrovolt": 3800000,
        "rssi": -80.0,
        "raw_rssi": -80,
    }
    with patch.object(source._household, "process_average_power_event", waits):
        link.datagram_received(json.dumps(house).encode(), ("127.0.0.1", 49476))
    assert "household view waited" in caplog.text
    assert any(e.channel_key == "power" for e in recorder.of_type(Reading))
    await source.async_stop()
