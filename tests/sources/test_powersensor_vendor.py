"""The vendor's own client and this integration's source, side by side on the same emulated household.

``PowersensorLegacyDevices(bcast_addr=<the segment's 127.x address>)`` is the reference: it must
find the same plugs and sensors as the source, with the same values (the emulator holds them
still, so both read the same reports), and the vendor's ``VirtualHousehold`` fed from the vendor's
own events must give the household figures the source shows.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from powersensor_local import PowersensorLegacyDevices, VirtualHousehold
import pytest

from custom_components.instrument_hub.events import DeviceFound, Reading
from custom_components.instrument_hub.sources.powersensor import (
    PowersensorSettings,
    PowersensorSource,
)
from tests.powersensor_net import (
    HOUSE,
    PLUG_A,
    PLUG_B,
    SOLAR,
    WATER,
    Subnet,
    emulated_household,
)

from .conftest import EventRecorder

pytestmark = pytest.mark.usefixtures("loopback_only")
HOUSEHOLD = "powersensor_household"
HOUSEHOLD_FIGURES = {
    "from_grid": "grid_import_power",
    "to_grid": "grid_export_power",
    "home_usage": "home_consumption_power",
    "solar_generation": "solar_generation_power",
}
"""The vendor household's figures and the source's household channels they match."""


def _keys_of(recorder: EventRecorder, hardware_id: str) -> set[str]:
    return {
        e.device_key
        for e in recorder.of_type(DeviceFound)
        if e.hardware_id == hardware_id
    }


def _is_device(mac: str, event: DeviceFound) -> bool:
    return event.hardware_id == mac


MACS = {
    PLUG_A: "plug",
    PLUG_B: "plug",
    HOUSE: "sensor",
    SOLAR: "sensor",
    WATER: "sensor",
}


async def test_the_vendor_client_sees_what_the_source_sees(
    subnet: Subnet, recorder: EventRecorder
) -> None:
    """Same devices (MAC and type), same values, same household figures."""
    async with emulated_household(subnet, hold=True):
        vendor_events: list[dict[str, Any]] = []
        household_events: dict[str, dict[str, Any]] = {}
        vendor_household = VirtualHousehold(with_solar=True)
        household_updates: list[str] = []

        async def on_household(name: str, payload: dict[str, Any]) -> None:
            household_events[name] = payload
            household_updates.append(name)

        for name in HOUSEHOLD_FIGURES:
            vendor_household.subscribe(name, on_household)
        vendor = PowersensorLegacyDevices(bcast_addr=subnet.broadcast)

        async def on_event(event: dict[str, Any]) -> None:
            vendor_events.append(dict(event))
            if event["event"] == "device_found":
                vendor.subscribe(str(event["mac"]))
            elif event["event"] == "average_power":
                await vendor_household.process_average_power_event(dict(event))

        source = PowersensorSource(
            PowersensorSettings(
                broadcast_addresses=(subnet.broadcast,), with_solar=True
            )
        )
        assert await vendor.start(on_event) == 2
        await source.async_start(recorder)
        try:
            for mac in MACS:
                await recorder.wait_for(DeviceFound, partial(_is_device, mac))
            async with asyncio.timeout(10):
                while len(household_events) < 4 or not {
                    e["mac"] for e in vendor_events if e["event"] == "battery_level"
                } >= {HOUSE, SOLAR, WATER}:
                    await asyncio.sleep(0.1)  # a poll inside the bounded wait
            # One more sensor window for both: every household figure again, on each side.
            our_mark, their_mark = len(recorder.events), len(household_updates)
            async with asyncio.timeout(10):
                while not (
                    set(household_updates[their_mark:]) >= set(HOUSEHOLD_FIGURES)
                    and {
                        e.channel_key
                        for e in recorder.events[our_mark:]
                        if isinstance(e, Reading)
                        and e.device_key in _keys_of(recorder, HOUSEHOLD)
                    }
                    >= set(HOUSEHOLD_FIGURES.values())
                ):
                    await asyncio.sleep(0.1)  # a poll inside the bounded wait
        finally:
            await vendor.stop()
            await source.async_stop()

    found = {
        e["mac"]: e["device_type"]
        for e in vendor_events
        if e["event"] == "device_found"
    }
    assert found == MACS
    ours = {e.hardware_id: e for e in recorder.of_type(DeviceFound)}
    assert {
        mac: ("plug" if ours[mac].model == "Plug" else "sensor") for mac in MACS
    } == MACS

    keys = {e.device_key: e.hardware_id for e in ours.values()}
    values: dict[tuple[str | None, str], object] = {}
    for reading in recorder.of_type(Reading):
        values[
            (keys.get(reading.device_key, reading.device_key), reading.channel_key)
        ] = reading.value
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for event in vendor_events:
        if "mac" in event and event["event"] not in (
            "device_found",
            "now_relaying_for",
        ):
            last[(str(event["mac"]), str(event["event"]))] = event

    for mac in MACS:
        if (power := last.get((mac, "average_power"))) is not None:
            assert values[(mac, "power")] == power["watts"], mac
        if (energy := last.get((mac, "summation_energy"))) is not None:
            assert values[(mac, "energy")] == energy["summation_joules"] / 3_600_000, (
                mac
            )
    for mac in (HOUSE, SOLAR, WATER):
        assert values[(mac, "battery_voltage")] == last[(mac, "battery_level")]["volts"]
        assert (
            values[(mac, "average_rssi")]
            == last[(mac, "radio_signal_quality")]["average_rssi"]
        )
    plug = last[(PLUG_A, "average_power_components")]
    assert values[(PLUG_A, "voltage")] == plug["volts"]
    assert values[(PLUG_A, "reactive_current")] == plug["reactive_current"]
    assert (
        values[(WATER, "water_flow")]
        == last[(WATER, "average_flow")]["litres_per_minute"]
    )
    assert (
        values[(WATER, "water_volume")]
        == last[(WATER, "summation_volume")]["summation_litres"]
    )
    assert (PLUG_A, "water_flow") not in values and (WATER, "power") not in values

    assert (
        values[(HOUSEHOLD, "grid_import_power")]
        == household_events["from_grid"]["watts"]
    )
    assert (
        values[(HOUSEHOLD, "grid_export_power")] == household_events["to_grid"]["watts"]
    )
    assert (
        values[(HOUSEHOLD, "home_consumption_power")]
        == household_events["home_usage"]["watts"]
    )
    assert (
        values[(HOUSEHOLD, "solar_generation_power")]
        == household_events["solar_generation"]["watts"]
    )
