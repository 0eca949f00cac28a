"""The Energy dashboard takes the household and water sensors as they are (recorder running).

Home Assistant's own validation (``energy/validate``) is asked, after an export period (the house
mains sensor negative) and a meter reset, about grid import/export, solar and water configured from
this integration's sensors: it must report no issue at all.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
    get_start_time,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from simulators.powersensor_plugs import PlugNetwork

from .helpers import wait_for_entity, wait_until
from .powersensor_ha import household_entry, setup_household
from .powersensor_net import HOUSE, WATER, Subnet, control

pytestmark = pytest.mark.usefixtures("loopback_only", "ha_network")
HOUSEHOLD = "powersensor_household"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Any, enable_custom_integrations: None
) -> None:
    """Start the recorder before Home Assistant (the harness needs it first), then the integration."""


def _number(hass: HomeAssistant, entity_id: str) -> float | None:
    state = hass.states.get(entity_id)
    try:
        return float(state.state) if state is not None else None
    except ValueError:
        return None


async def test_energy_dashboard_validates_household_and_water(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    subnet: Subnet,
    household: PlugNetwork,
) -> None:
    """Grid import/export, solar and water from this integration: no validation issue."""
    assert await async_setup_component(hass, "energy", {})
    entry = household_entry(hass, subnet)
    await setup_household(hass, entry)
    ids = {
        key: await wait_for_entity(hass, "sensor", f"{HOUSEHOLD}:{key}")
        for key in (
            "grid_import_energy",
            "grid_export_energy",
            "solar_generation_energy",
        )
    }
    water = await wait_for_entity(hass, "sensor", f"{WATER}:water_volume")
    house_power = await wait_for_entity(hass, "sensor", f"{HOUSE}:power")

    # An export period: solar beyond consumption, the net house power negative, export counting up.
    await control(household, "export", on=True)
    await wait_until(hass, lambda: (_number(hass, house_power) or 0) < 0)
    # Several export windows, so the new cycle's first value (one window) is below the total.
    await wait_until(
        hass, lambda: (_number(hass, ids["grid_export_energy"]) or 0) > 0.0015
    )
    # A meter reset: the household view starts a new cycle from 0 (never negative).
    exported = _number(hass, ids["grid_export_energy"]) or 0
    await control(household, "reset", mac=HOUSE)
    await wait_until(
        hass, lambda: (_number(hass, ids["grid_export_energy"]) or exported) < exported
    )
    assert all((_number(hass, entity_id) or 0) >= 0 for entity_id in ids.values())

    do_adhoc_statistics(hass, start=get_start_time(dt_util.utcnow()))
    await async_wait_recording_done(hass)

    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "energy/save_prefs",
            "energy_sources": [
                {
                    "type": "grid",
                    "stat_energy_from": ids["grid_import_energy"],
                    "stat_energy_to": ids["grid_export_energy"],
                    "cost_adjustment_day": 0,
                },
                {"type": "solar", "stat_energy_from": ids["solar_generation_energy"]},
                {"type": "water", "stat_energy_from": water},
            ],
            "device_consumption": [],
        }
    )
    saved = await client.receive_json()
    assert saved["success"], saved
    await client.send_json_auto_id({"type": "energy/validate"})
    result = await client.receive_json()
    assert result["success"], result
    assert result["result"]["energy_sources"] == [[], [], []]
    assert result["result"]["device_consumption"] == []

    # The check has teeth: the net house meter (negative while exporting) as grid import is refused.
    net_energy = await wait_for_entity(hass, "sensor", f"{HOUSE}:energy")
    await client.send_json_auto_id(
        {
            "type": "energy/save_prefs",
            "energy_sources": [
                {
                    "type": "grid",
                    "stat_energy_from": net_energy,
                    "cost_adjustment_day": 0,
                }
            ],
        }
    )
    assert (await client.receive_json())["success"]
    await client.send_json_auto_id({"type": "energy/validate"})
    issues = (await client.receive_json())["result"]["energy_sources"][0]
    assert {issue["type"] for issue in issues} >= {"entity_negative_state"}
