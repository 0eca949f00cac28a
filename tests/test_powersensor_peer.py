"""The plug emulator as its own process, seen through Home Assistant.

The three ways to add the household, a crash (SIGKILL) and a restart, a plug changing address, bad
lines mid-stream, unload.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
import json
import logging
import os
from pathlib import Path
import signal
import time

from homeassistant.config_entries import (
    SOURCE_USER,
    SOURCE_ZEROCONF,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlowResult,
)
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import pytest

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.kinds.powersensor import (
    CONF_BROADCAST,
    CONF_PLUG_HOSTS,
    CONF_PLUG_TIMEOUT,
    CONF_PLUGS,
    CONF_SENSOR_TIMEOUT,
)

from .helpers import (
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
    wait_until,
)
from .peers import PeerProcess
from .powersensor_ha import POWERSENSOR, QUICK_OPTIONS, entity_id_of
from .powersensor_net import HOUSE, PLUG_A, PLUG_B, SOLAR, WATER, ControlClient, Subnet
from .powersensor_peer import plug_emulator

pytestmark = [
    pytest.mark.peer,
    pytest.mark.usefixtures("loopback_only", "ha_network", "quick_scans"),
]
_LOGGER = logging.getLogger(__name__)
HOUSEHOLD = "powersensor_household"
MAIN_ENTITIES = (
    ("sensor", f"{PLUG_A}:power"),
    ("sensor", f"{PLUG_B}:power"),
    ("sensor", f"{HOUSE}:power"),
    ("sensor", f"{SOLAR}:energy"),
    ("sensor", f"{WATER}:water_volume"),
    ("sensor", f"{HOUSEHOLD}:grid_import_energy"),
)


@pytest.fixture
def emulator(
    socket_enabled: None, subnet: Subnet, tmp_path: Path
) -> Iterator[tuple[PeerProcess, ControlClient]]:
    """Run the emulator process on the test's subnet; its log goes to the test's tmp_path."""
    with plug_emulator(subnet, tmp_path) as running:
        yield running


async def _finish_flow(hass: HomeAssistant, result: ConfigFlowResult) -> str:
    """Check the entry was made and loaded, then give it the tests' short silence thresholds."""
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    entry = result["result"]
    assert isinstance(entry, ConfigEntry)
    assert entry.state is ConfigEntryState.LOADED
    hass.config_entries.async_update_entry(entry, options=QUICK_OPTIONS)
    assert await hass.config_entries.async_reload(entry.entry_id)
    return entry.entry_id


async def _user_flow(hass: HomeAssistant, user_input: dict[str, object]) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": POWERSENSOR}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input
    )
    return await _finish_flow(hass, result)


async def _main_entities(hass: HomeAssistant) -> list[str]:
    return [
        await wait_for_entity(hass, platform, uid) for platform, uid in MAIN_ENTITIES
    ]


def _registered(hass: HomeAssistant, entry_id: str) -> list[str]:
    return sorted(
        e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry_id)
    )


async def test_scan_setup_then_a_crash_and_a_restart(
    hass: HomeAssistant, subnet: Subnet, emulator: tuple[PeerProcess, ControlClient]
) -> None:
    """Added by a scan; SIGKILL: unavailable within the plug threshold; restart: back, same entities."""
    process, _control = emulator
    entry_id = await _user_flow(
        hass, {CONF_BROADCAST: [subnet.broadcast], CONF_PLUG_HOSTS: []}
    )
    entity_ids = await _main_entities(hass)
    connected = entity_id_of(hass, "binary_sensor", f"{entry_id}:_link")
    assert connected is not None and state_of(hass, connected) == STATE_ON
    registered = _registered(hass, entry_id)

    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    bound = (
        QUICK_OPTIONS[CONF_PLUG_TIMEOUT] + 1.0
    )  # the threshold plus the liveness check's period
    await wait_until(
        hass,
        lambda: all(state_of(hass, e) == STATE_UNAVAILABLE for e in entity_ids),
        timeout=bound,
    )
    unavailable_after = time.monotonic() - killed
    assert state_of(hass, connected) == STATE_OFF
    await hass.async_add_executor_job(process.stop)  # reaps the killed process
    assert not process.running

    restarted = time.monotonic()
    await hass.async_add_executor_job(process.restart)
    for entity_id in entity_ids:
        await wait_for_state(hass, entity_id, state_not(STATE_UNAVAILABLE), timeout=40)
    await wait_for_state(hass, connected, state_is(STATE_ON))
    back_after = time.monotonic() - restarted
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None and entry.state is ConfigEntryState.LOADED  # no reload
    assert _registered(hass, entry_id) == registered  # no duplicates
    _LOGGER.info(
        "Powersensor: unavailable %.0f ms after SIGKILL (threshold %.1f s); back %.1f s after the restart",
        unavailable_after * 1000,
        QUICK_OPTIONS[CONF_PLUG_TIMEOUT],
        back_after,
    )


async def test_zeroconf_setup_and_a_plug_changing_address(
    hass: HomeAssistant,
    subnet: Subnet,
    emulator: tuple[PeerProcess, ControlClient],
    device_registry: dr.DeviceRegistry,
) -> None:
    """Added from an announcement; the plug moves and announces its new address: followed, one device."""
    _process, control = emulator

    def announcement(ip: str) -> ZeroconfServiceInfo:
        return ZeroconfServiceInfo(
            ip_address=ip_address(ip),
            ip_addresses=[ip_address(ip)],
            hostname=f"Powersensor-gateway-{PLUG_A}-civet.local.",
            name=f"Powersensor-gateway-{PLUG_A}-civet._powersensor._udp.local.",
            port=49476,
            type="_powersensor._udp.local.",
            properties={"version": "1", "id": PLUG_A},
        )

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=announcement(subnet.plug_a)
    )
    assert result["step_id"] == "zeroconf_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    entry_id = await _finish_flow(hass, result)
    plug_a_power = (await _main_entities(hass))[0]
    devices = len(dr.async_entries_for_config_entry(device_registry, entry_id))

    new_ip = subnet.host(77)
    await control("address", plug=PLUG_A, ip=new_ip)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=announcement(new_ip)
    )
    assert result["reason"] == "already_configured"
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    assert entry.data[CONF_PLUGS][PLUG_A] == new_ip
    state = (await control("state"))["plugs"]
    moved = next(p for p in state if p["mac"] == PLUG_A)
    assert moved["ip"] == new_ip
    first = hass.states.get(plug_a_power)
    assert first is not None
    await wait_for_state(hass, plug_a_power, state_not(first.state), timeout=10)
    assert state_of(hass, plug_a_power) != STATE_UNAVAILABLE
    assert len(dr.async_entries_for_config_entry(device_registry, entry_id)) == devices
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert entry.state is ConfigEntryState.LOADED


async def test_plug_addresses_and_bad_lines_mid_stream(
    hass: HomeAssistant,
    subnet: Subnet,
    emulator: tuple[PeerProcess, ControlClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Added by plug addresses; malformed lines mid-stream: one warning, values keep coming; unload clean."""
    _process, control = emulator
    fds = len(os.listdir("/proc/self/fd"))
    entry_id = await _user_flow(
        hass, {CONF_BROADCAST: [], CONF_PLUG_HOSTS: [subnet.plug_a, subnet.plug_b]}
    )
    plug_a_power = (await _main_entities(hass))[0]
    last = json.dumps((await control("state"))["plugs"][0]["last"]).encode()
    for junk in (
        last[:60],
        b"\xff\xfe",
        b'{"mac": "246f280487a4"}',
        b"[]",
        b"x" * 60000,
    ):
        await control("inject", plug=PLUG_A, hex=(junk + b"\n" + last).hex())
    before = hass.states.get(plug_a_power)
    assert before is not None
    await wait_for_state(hass, plug_a_power, state_not(before.state), timeout=10)
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "Skipped a line" in r.getMessage()
    ]
    assert len(warnings) == 1
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    diagnostics = entry.runtime_data.source.diagnostics()
    assert diagnostics["counters"]["bad_lines"] >= 4

    assert await hass.config_entries.async_unload(entry_id)
    await hass.async_block_till_done()
    assert len(os.listdir("/proc/self/fd")) == fds
    state = await control("state")
    assert all(plug["subscribers"] == [] for plug in state["plugs"])
    assert all(plug["counters"]["unsubscribes"] >= 1 for plug in state["plugs"])
    assert entry.options[CONF_SENSOR_TIMEOUT] == QUICK_OPTIONS[CONF_SENSOR_TIMEOUT]
