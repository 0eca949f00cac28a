"""Home Assistant side of the Powersensor tests: network settings on the test's subnet, entries, states.

``ha_network`` makes Home Assistant's own network settings (the network integration's adapters,
which the test harness fakes as 10.10.10.10/24) a loopback adapter on the test's subnet, so the
broadcast address the integration derives from them is the emulator's stand-in ``.255`` and no
default can ever point outside loopback. ``quick_scans`` shortens the 2 s scans of the flow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Final
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.const import CONF_SOURCE_KIND, DOMAIN
from custom_components.instrument_hub.kinds.powersensor import (
    CONF_BROADCAST,
    CONF_PLUG_HOSTS,
    CONF_PLUG_TIMEOUT,
    CONF_PLUGS,
    CONF_SENSOR_TIMEOUT,
    CONF_WITH_SOLAR,
    HOUSEHOLD_UNIQUE_ID,
    TITLE,
)
from simulators.powersensor_plugs import PlugNetwork

from .powersensor_net import PLUG_A, PLUG_B, Subnet, emulated_household

POWERSENSOR: Final = "powersensor"
QUICK_OPTIONS: Final = {CONF_PLUG_TIMEOUT: 1.5, CONF_SENSOR_TIMEOUT: 4.0}
"""Silence thresholds for tests: the emulator's plugs report every 0.2 s, its sensors every 1 s."""
HOUSEHOLD_ENTRY_ID: Final = "01JPOWERSENSORHOUSEHOLD0AA"
"""A fixed entry id: the entry device's entities have unique ids with it (stable snapshots)."""


@pytest.fixture
def ha_network(subnet: Subnet) -> Iterator[dict[str, Any]]:
    """Make Home Assistant's network settings one loopback adapter on the test's subnet."""
    adapter = subnet.adapter()
    with (
        patch(
            "homeassistant.components.network.async_get_loaded_adapters",
            return_value=[adapter],
        ),
        patch(
            "homeassistant.components.network.async_get_adapters",
            AsyncMock(return_value=[adapter]),
        ),
    ):
        yield adapter


@pytest.fixture
def quick_scans() -> Iterator[None]:
    """Scan for 0.4 s instead of the vendor's 2 s, probe a plug for 1.5 s instead of 3 s."""
    with (
        patch("custom_components.instrument_hub.kinds.powersensor.SCAN_SECONDS", 0.4),
        patch("custom_components.instrument_hub.kinds.powersensor.PROBE_SECONDS", 1.5),
    ):
        yield


@pytest.fixture
async def household(
    loopback_only: list[str], subnet: Subnet
) -> AsyncIterator[PlugNetwork]:
    """Run the emulated household in this process (plugs every 0.2 s, sensors every 1 s)."""
    async with emulated_household(subnet) as network:
        yield network


@pytest.fixture
async def held_household(
    loopback_only: list[str], subnet: Subnet
) -> AsyncIterator[PlugNetwork]:
    """Run the emulated household with every value held from the start (deterministic states)."""
    async with emulated_household(subnet, hold=True) as network:
        yield network


def household_entry(
    hass: HomeAssistant,
    subnet: Subnet,
    *,
    plugs: dict[str, str] | None = None,
    hosts: list[str] | None = None,
    broadcast: bool = True,
    options: dict[str, Any] | None = None,
    with_solar: bool = False,
) -> MockConfigEntry:
    """Add (not set up) the household entry the flow would have made."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=HOUSEHOLD_ENTRY_ID,
        title=TITLE,
        unique_id=HOUSEHOLD_UNIQUE_ID,
        data={
            CONF_SOURCE_KIND: POWERSENSOR,
            CONF_BROADCAST: [subnet.broadcast] if broadcast else [],
            CONF_PLUG_HOSTS: hosts or [],
            CONF_PLUGS: {PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b}
            if plugs is None
            else plugs,
            CONF_WITH_SOLAR: with_solar,
        },
        options=QUICK_OPTIONS if options is None else options,
    )
    entry.add_to_hass(hass)
    return entry


async def setup_household(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Set the entry up; it must load."""
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED


def entity_id_of(hass: HomeAssistant, platform: str, unique_id: str) -> str | None:
    """Return the entity id registered for a unique id (None if there is none)."""
    return er.async_get(hass).async_get_entity_id(platform, DOMAIN, unique_id)
