"""The Powersensor household in the config flow: scan, plug addresses, zeroconf, one entry, options.

Zeroconf is Home Assistant's own ``ZeroconfServiceInfo`` handed to the flow (the harness mocks
zeroconf; no multicast). Scans and probes talk to the emulator on the test's 127.x subnet.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_USER,
    SOURCE_ZEROCONF,
    ConfigFlowResult,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
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
    broadcast_addresses,
    default_broadcast_addresses,
)
from simulators.powersensor_plugs import PlugNetwork

from .powersensor_ha import POWERSENSOR, household_entry
from .powersensor_net import PLUG_A, PLUG_B, Subnet

pytestmark = pytest.mark.usefixtures("loopback_only", "ha_network", "quick_scans")


@pytest.fixture
def mock_setup_entry() -> Iterator[AsyncMock]:
    """Keep the flow tests about the flow: the entry is not set up."""
    with patch(
        "custom_components.instrument_hub.async_setup_entry", return_value=True
    ) as mock:
        yield mock


async def _form(hass: HomeAssistant) -> ConfigFlowResult:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert POWERSENSOR in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": POWERSENSOR}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == POWERSENSOR
    return result


def _defaults(result: ConfigFlowResult) -> dict[str, Any]:
    schema = result["data_schema"]
    assert schema is not None
    return {str(key): key.default() for key in schema.schema if callable(key.default)}


def _zeroconf(
    ip: str, mac: str | None = PLUG_A, kind: str = "_powersensor._udp.local."
) -> ZeroconfServiceInfo:
    properties = {"version": "1"} if mac is None else {"version": "1", "id": mac}
    return ZeroconfServiceInfo(
        ip_address=ip_address(ip),
        ip_addresses=[ip_address(ip)],
        hostname=f"Powersensor-gateway-{mac}-civet.local.",
        name=f"Powersensor-gateway-{mac}-civet.{kind}",
        port=49476,
        type=kind,
        properties=properties,
    )


async def test_scan_adds_the_household(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    mock_setup_entry: AsyncMock,
) -> None:
    """The form proposes Home Assistant's own broadcast address; the scan finds both plugs."""
    result = await _form(hass)
    assert _defaults(result)[CONF_BROADCAST] == [subnet.broadcast]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BROADCAST: [subnet.broadcast], CONF_PLUG_HOSTS: []}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == TITLE
    assert result["result"].unique_id == HOUSEHOLD_UNIQUE_ID
    assert result["data"] == {
        CONF_SOURCE_KIND: POWERSENSOR,
        CONF_BROADCAST: [subnet.broadcast],
        CONF_PLUG_HOSTS: [],
        CONF_PLUGS: {PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b},
        CONF_WITH_SOLAR: False,
    }
    assert len(mock_setup_entry.mock_calls) == 1


async def test_plug_addresses_only(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    mock_setup_entry: AsyncMock,
) -> None:
    """No scan: a plug address is listened to and its MAC learnt from its own report."""
    result = await _form(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BROADCAST: [], CONF_PLUG_HOSTS: [f" {subnet.plug_b} "]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PLUGS] == {PLUG_B: subnet.plug_b}
    assert result["data"][CONF_PLUG_HOSTS] == [subnet.plug_b]


async def test_form_errors(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    mock_setup_entry: AsyncMock,
) -> None:
    """Bad addresses, nothing to talk to, nothing answering, a silent plug address; then it works."""
    flow_id = (await _form(hass))["flow_id"]
    for user_input, errors in (
        (
            {CONF_BROADCAST: ["300.1.1.1"], CONF_PLUG_HOSTS: []},
            {CONF_BROADCAST: "invalid_address"},
        ),
        (
            {CONF_BROADCAST: [], CONF_PLUG_HOSTS: ["::1"]},
            {CONF_PLUG_HOSTS: "invalid_address"},
        ),
        (
            {CONF_BROADCAST: [], CONF_PLUG_HOSTS: ["plug.local"]},
            {CONF_PLUG_HOSTS: "invalid_address"},
        ),
        ({CONF_BROADCAST: [], CONF_PLUG_HOSTS: []}, {"base": "no_addresses"}),
        (
            {CONF_BROADCAST: [subnet.host(200)], CONF_PLUG_HOSTS: []},
            {"base": "no_plugs_found"},
        ),
        (
            {CONF_BROADCAST: [subnet.broadcast], CONF_PLUG_HOSTS: [subnet.host(99)]},
            {CONF_PLUG_HOSTS: "plug_not_answering"},
        ),
    ):
        result = await hass.config_entries.flow.async_configure(flow_id, user_input)
        assert result["type"] is FlowResultType.FORM, user_input
        assert result["errors"] == errors, user_input
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BROADCAST: [f"{subnet.broadcast}, {subnet.broadcast}"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_BROADCAST] == [subnet.broadcast]


async def test_a_bug_in_a_probe_is_not_taken_for_a_silent_plug(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """Only a plug that does not answer is a form error; anything else is raised (and reported)."""
    flow_id = (await _form(hass))["flow_id"]
    with (
        patch(
            "custom_components.instrument_hub.kinds.powersensor.probe_plug",
            side_effect=RuntimeError("bug"),
        ),
        pytest.raises(RuntimeError, match="bug"),
    ):
        await hass.config_entries.flow.async_configure(
            flow_id, {CONF_BROADCAST: [], CONF_PLUG_HOSTS: [subnet.plug_a]}
        )


async def test_one_household_only(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """A second household from the menu aborts before any scan."""
    household_entry(hass, subnet)
    result = await _form(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BROADCAST: [subnet.broadcast]}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_zeroconf_offers_the_household(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    mock_setup_entry: AsyncMock,
) -> None:
    """An announced plug: confirm, then the household with every plug the scan found."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf(subnet.plug_a)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {
        "name": "Powersensor plug 0487a4",
        "host": subnet.plug_a,
    }
    progress = hass.config_entries.flow.async_progress()
    assert progress[0]["context"]["title_placeholders"] == {
        "name": "Powersensor plug 0487a4"
    }
    assert progress[0]["context"]["confirm_only"] is True
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PLUGS] == {PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b}
    assert result["data"][CONF_BROADCAST] == [subnet.broadcast]
    assert result["result"].unique_id == HOUSEHOLD_UNIQUE_ID


async def test_zeroconf_confirm_when_the_plug_went_quiet(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """The announced plug no longer answers when confirmed: the form says so."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf(subnet.plug_a)
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "plug_not_answering"}


async def test_zeroconf_for_a_known_household_follows_the_plug(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """A known household: the plug's new address (or a new plug) joins the entry; no second entry."""
    entry = household_entry(hass, subnet, plugs={PLUG_A: subnet.plug_a})
    for announced, expected in (
        (_zeroconf(subnet.host(40)), {PLUG_A: subnet.host(40)}),
        (
            _zeroconf(subnet.plug_b, PLUG_B),
            {PLUG_A: subnet.host(40), PLUG_B: subnet.plug_b},
        ),
        (
            _zeroconf(subnet.plug_b, PLUG_B),
            {PLUG_A: subnet.host(40), PLUG_B: subnet.plug_b},
        ),
    ):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_ZEROCONF}, data=announced
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "already_configured"
        assert entry.data[CONF_PLUGS] == expected
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert not mock_setup_entry.mock_calls  # followed without a reload


async def test_zeroconf_for_an_ignored_household(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """The user ignored the household: announcements stay ignored, nothing is recorded."""
    ignored = MockConfigEntry(
        domain=DOMAIN, source=SOURCE_IGNORE, unique_id=HOUSEHOLD_UNIQUE_ID, data={}
    )
    ignored.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf(subnet.plug_a)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert dict(ignored.data) == {}


@pytest.mark.parametrize(
    "announcement",
    [
        _zeroconf("127.0.0.11", mac=None),  # firmware before 8129: no id
        _zeroconf("127.0.0.11", mac="not-a-mac"),
        ZeroconfServiceInfo(
            ip_address=ip_address("::1"),
            ip_addresses=[ip_address("::1")],
            hostname="x.local.",
            name="x._powersensor._udp.local.",
            port=49476,
            type="_powersensor._udp.local.",
            properties={"id": PLUG_A},
        ),
    ],
)
async def test_zeroconf_without_a_usable_plug_aborts(
    hass: HomeAssistant, announcement: ZeroconfServiceInfo, mock_setup_entry: AsyncMock
) -> None:
    """No MAC in the TXT record, or no IPv4 address: not a plug this integration can use."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=announcement
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_powersensor_plug"


async def test_zeroconf_of_another_service_is_not_ours(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Only _powersensor._udp.local. announcements reach the Powersensor kind."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_ZEROCONF},
        data=_zeroconf("127.0.0.11", kind="_powersensor._tcp.local."),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_supported"


async def test_reconfigure_keeps_what_was_learnt(
    hass: HomeAssistant,
    subnet: Subnet,
    household: PlugNetwork,
    mock_setup_entry: AsyncMock,
) -> None:
    """Reconfigure to plug addresses only: the known plugs and 'solar seen' stay."""
    entry = household_entry(
        hass, subnet, plugs={PLUG_A: subnet.plug_a}, with_solar=True
    )
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == POWERSENSOR
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BROADCAST: [], CONF_PLUG_HOSTS: [subnet.plug_b]}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    assert entry.data[CONF_BROADCAST] == []
    assert entry.data[CONF_PLUG_HOSTS] == [subnet.plug_b]
    assert entry.data[CONF_PLUGS] == {PLUG_A: subnet.plug_a, PLUG_B: subnet.plug_b}
    assert entry.data[CONF_WITH_SOLAR] is True
    assert entry.title == TITLE


async def test_options_are_the_silence_thresholds(
    hass: HomeAssistant, subnet: Subnet, mock_setup_entry: AsyncMock
) -> None:
    """Options: how long plugs and sensors may stay silent (defaults 15 s and 120 s)."""
    entry = household_entry(hass, subnet, options={})
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == POWERSENSOR
    assert _defaults(result) == {}
    schema = result["data_schema"]
    assert schema is not None
    suggested = {str(key): key.description["suggested_value"] for key in schema.schema}
    assert suggested == {CONF_PLUG_TIMEOUT: 15.0, CONF_SENSOR_TIMEOUT: 120.0}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_PLUG_TIMEOUT: 30, CONF_SENSOR_TIMEOUT: 300}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_PLUG_TIMEOUT: 30.0, CONF_SENSOR_TIMEOUT: 300.0}


async def test_broadcast_addresses_from_the_network_settings(
    hass: HomeAssistant,
) -> None:
    """Enabled adapters give their IPv4 broadcast address; disabled and point-to-point ones none."""
    adapters: list[Any] = [
        {"enabled": True, "ipv4": [{"address": "127.9.8.1", "network_prefix": 24}]},
        {"enabled": True, "ipv4": [{"address": "127.9.8.7", "network_prefix": 24}]},
        {"enabled": True, "ipv4": [{"address": "127.5.0.1", "network_prefix": 16}]},
        {"enabled": True, "ipv4": [{"address": "127.6.0.1", "network_prefix": 31}]},
        {"enabled": False, "ipv4": [{"address": "127.7.0.1", "network_prefix": 24}]},
    ]
    assert broadcast_addresses(adapters) == ["127.9.8.255", "127.5.255.255"]
    with patch(
        "homeassistant.components.network.async_get_loaded_adapters",
        side_effect=KeyError("network"),
    ):
        assert default_broadcast_addresses() == []
    with patch(
        "custom_components.instrument_hub.kinds.powersensor.async_get_hass_or_none",
        return_value=None,
    ):
        assert default_broadcast_addresses() == []
