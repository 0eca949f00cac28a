"""Config flow: menu, INDI step (tested connection, errors, duplicates), reconfigure and options."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from ipaddress import ip_address
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USB, SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.usb import UsbServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.config_flow import (
    InstrumentHubConfigFlow,
    InstrumentHubOptionsFlow,
)
from custom_components.instrument_hub.const import (
    CONF_BLOB_FOLDER,
    CONF_BLOB_KEEP,
    CONF_BLOB_MAX_MB,
    CONF_BLOBS_ENABLED,
    CONF_SOURCE_KIND,
    DOMAIN,
)
from custom_components.instrument_hub.kinds import KINDS
from custom_components.instrument_hub.kinds.indi import CONF_UNITS

from .fake_source import FAKE, FakeKind
from .helpers import SOURCE_INDI
from .peers import free_port


@pytest.fixture
def mock_setup_entry() -> Iterator[AsyncMock]:
    """Keep the flow tests about the flow: the entry is not set up."""
    with patch(
        "custom_components.instrument_hub.async_setup_entry", return_value=True
    ) as mock:
        yield mock


@pytest.fixture
async def listening_port(socket_enabled: None) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 for real: accept connections and close them."""

    async def accept(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _start_indi_step(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.MENU
    # The menu is the registry, INDI first (each kind adds its own option after it).
    assert result["menu_options"] == list(KINDS)
    assert next(iter(KINDS)) == SOURCE_INDI
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SOURCE_INDI}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == SOURCE_INDI
    return result["flow_id"]


async def test_indi_entry_created_after_a_working_connection(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """A reachable server becomes an entry named after its address."""
    flow_id = await _start_indi_step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: " 127.0.0.1 ", CONF_PORT: listening_port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"INDI server 127.0.0.1:{listening_port}"
    assert result["data"] == {
        CONF_SOURCE_KIND: SOURCE_INDI,
        CONF_HOST: "127.0.0.1",
        CONF_PORT: listening_port,
    }
    assert result["result"].unique_id == f"indi:127.0.0.1:{listening_port}"
    assert len(mock_setup_entry.mock_calls) == 1


@pytest.mark.usefixtures("socket_enabled")
async def test_indi_cannot_connect_then_recovers(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """A closed port shows cannot_connect; correcting the port creates the entry."""
    flow_id = await _start_indi_step(hass)
    closed_port = free_port()
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "127.0.0.1", CONF_PORT: closed_port}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "127.0.0.1", CONF_PORT: listening_port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_indi_empty_host_is_a_form_error(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A blank host is refused on the host field, without trying to connect."""
    flow_id = await _start_indi_step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "   ", CONF_PORT: 7624}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_HOST: "invalid_host"}


async def test_indi_duplicate_endpoint_aborts(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """The same host and port cannot be added twice (host compared case-insensitively)."""
    MockConfigEntry(
        domain=DOMAIN,
        unique_id="indi:observatory.local:7624",
        data={
            CONF_SOURCE_KIND: SOURCE_INDI,
            CONF_HOST: "observatory.local",
            CONF_PORT: 7624,
        },
    ).add_to_hass(hass)
    flow_id = await _start_indi_step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "Observatory.local", CONF_PORT: 7624}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


def _indi_entry(
    hass: HomeAssistant, port: int, host: str = "127.0.0.1"
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"INDI server {host}:{port}",
        unique_id=f"indi:{host}:{port}",
        data={CONF_SOURCE_KIND: SOURCE_INDI, CONF_HOST: host, CONF_PORT: port},
    )
    entry.add_to_hass(hass)
    return entry


@pytest.mark.usefixtures("socket_enabled")
async def test_reconfigure_changes_the_address(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """Reconfigure tests the new address, then updates data, unique id and title."""
    entry = _indi_entry(hass, free_port())
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == SOURCE_INDI  # the kind's own step, prefilled

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    )
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: listening_port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == listening_port
    assert entry.unique_id == f"indi:127.0.0.1:{listening_port}"
    assert entry.title == f"INDI server 127.0.0.1:{listening_port}"


async def test_reconfigure_same_address_is_accepted(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """Keeping the address (e.g. after fixing the server) is not a duplicate of itself."""
    entry = _indi_entry(hass, listening_port)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: listening_port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()


async def test_reconfigure_onto_another_entry_aborts(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Reconfiguring onto an address another entry already has aborts."""
    entry = _indi_entry(hass, 7624, host="a.local")
    _indi_entry(hass, 7624, host="b.local")
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "b.local", CONF_PORT: 7624}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_HOST] == "a.local"


async def test_options_defaults_validation_and_save(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Options show defaults, refuse a folder that leaves the config folder, and save."""
    entry = _indi_entry(hass, 7624)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["data_schema"] is not None
    schema_defaults = {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
    }
    assert schema_defaults == {
        CONF_BLOBS_ENABLED: True,
        CONF_BLOB_FOLDER: "instrument_hub",
        CONF_BLOB_MAX_MB: 50,
        CONF_BLOB_KEEP: 100,
        CONF_UNITS: "",
    }
    for bad_folder in ("../outside", "/etc", "a/../../b", "  "):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                CONF_BLOBS_ENABLED: True,
                CONF_BLOB_FOLDER: bad_folder,
                CONF_BLOB_MAX_MB: 5,
                CONF_BLOB_KEEP: 3,
            },
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {CONF_BLOB_FOLDER: "invalid_folder"}, bad_folder

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_BLOBS_ENABLED: False,
            CONF_BLOB_FOLDER: " indi/logs ",
            CONF_BLOB_MAX_MB: 5.0,
            CONF_BLOB_KEEP: 3.0,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {
        CONF_BLOBS_ENABLED: False,
        CONF_BLOB_FOLDER: "indi/logs",
        CONF_BLOB_MAX_MB: 5,
        CONF_BLOB_KEEP: 3,
        CONF_UNITS: "",
    }


async def test_options_form_is_the_kinds_own_step(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """An INDI entry's options (files, units) are its own step, with their own translations."""
    entry = _indi_entry(hass, 7624)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "indi"


async def test_unit_lines_are_checked_and_kept(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Unit lines that do not parse, name no device class or a unit it cannot have are refused."""
    entry = _indi_entry(hass, 7624)
    files = {
        CONF_BLOBS_ENABLED: True,
        CONF_BLOB_FOLDER: "instrument_hub",
        CONF_BLOB_MAX_MB: 50,
        CONF_BLOB_KEEP: 100,
    }
    result = await hass.config_entries.options.async_init(entry.entry_id)
    for lines, error in (
        ("Thermostat targetvector °C", "invalid_unit_line"),
        ("Thermostat / targetvector = °C, warmth", "invalid_device_class"),
        ("Thermostat / targetvector = m, temperature", "unit_not_for_device_class"),
    ):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**files, CONF_UNITS: lines}
        )
        assert result["errors"] == {CONF_UNITS: error}, lines
    units = "# mine\nThermostat / targetvector / target = °C, temperature\nCCD Simulator / CCD_GAIN ="
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**files, CONF_UNITS: f"  {units}\n"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_UNITS] == units


async def test_invalid_host_is_refused_before_connecting(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A host that cannot be one ('my server!') is an invalid host, not 'could not connect'."""
    flow_id = await _start_indi_step(hass)
    for bad in ("my server!", "-lead.example", "a..b", "x" * 64 + ".local"):
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_HOST: bad, CONF_PORT: 7624}
        )
        assert result["errors"] == {CONF_HOST: "invalid_host"}, bad


@pytest.mark.usefixtures("socket_enabled")
async def test_reconfigure_keeps_a_title_the_user_chose(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """A renamed entry keeps its name when its address changes; the own string confirms it."""
    entry = _indi_entry(hass, free_port())
    hass.config_entries.async_update_entry(entry, title="Roof observatory")
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: listening_port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    # Our own "The address was changed.", not Home Assistant's generic string.
    assert result.get("translation_domain") in (None, DOMAIN)
    assert entry.title == "Roof observatory"
    assert entry.data[CONF_PORT] == listening_port


@pytest.mark.usefixtures("socket_enabled")
async def test_reconfigure_of_an_entry_whose_data_no_longer_validates(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, listening_port: int
) -> None:
    """An entry saved with a host this version refuses can be repaired; its title is left alone."""
    entry = _indi_entry(hass, 7624, host="bad host")
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: listening_port}
    )
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    assert entry.title == "INDI server bad host:7624"
    assert entry.data[CONF_HOST] == "127.0.0.1"


async def test_menu_lists_every_registered_kind(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """The menu is the registry: a kind added there is offered, in order."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["menu_options"] == list(KINDS)
    assert next(iter(KINDS)) == SOURCE_INDI
    assert list(KINDS)[-1] == FAKE


async def _fake_step(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": FAKE}
    )
    assert result["step_id"] == FAKE
    return result["flow_id"]


async def test_a_kind_that_learns_its_unique_id_from_the_endpoint(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """Errors of the check show on the form; a unique id known only after the check still dedupes."""
    flow_id = await _fake_step(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_HOST: " "})
    assert result["errors"] == {CONF_HOST: "invalid_host"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "down"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "later"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "fake:learned"
    assert result["data"] == {CONF_SOURCE_KIND: FAKE, CONF_HOST: "later"}

    flow_id = await _fake_step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "later"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_what_the_check_found_shows_when_the_entry_is_created(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """An endpoint that tells what it found gets the kind's create_entry description with it."""
    flow_id = await _fake_step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: "chatty"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["description"] == FAKE
    assert result["description_placeholders"] == {"what": "a fake device"}


async def test_a_kind_step_beyond_its_form(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """A step a kind declares (a discovery or credentials step) is found by its step id."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": "fake_second"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Second"


async def test_unknown_steps_are_not_attributes() -> None:
    """Only the registry's steps exist: anything else is a plain AttributeError (hasattr works)."""
    flow = InstrumentHubConfigFlow()
    assert hasattr(flow, f"async_step_{SOURCE_INDI}")
    assert not hasattr(flow, "async_step_nothing")
    assert not hasattr(flow, "nothing_at_all")
    options = InstrumentHubOptionsFlow()
    assert not hasattr(options, "nothing_at_all")


async def test_options_only_for_kinds_that_have_them(
    hass: HomeAssistant, fake_kind: FakeKind
) -> None:
    """A kind without options (or an entry of an unknown kind) offers no options flow."""
    fake = MockConfigEntry(domain=DOMAIN, data={CONF_SOURCE_KIND: FAKE, CONF_HOST: "x"})
    unknown = MockConfigEntry(domain=DOMAIN, data={CONF_SOURCE_KIND: "teleporter"})
    indi = _indi_entry(hass, 7624)
    supports = InstrumentHubConfigFlow.async_supports_options_flow
    assert (supports(fake), supports(unknown), supports(indi)) == (False, False, True)


def _zeroconf(ip: str) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address(ip),
        ip_addresses=[ip_address(ip)],
        hostname="fake.local.",
        name="fake._fake._udp.local.",
        port=49476,
        type="_fake._udp.local.",
        properties={},
    )


async def test_discovery_goes_to_the_kind_that_declares_it(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """A zeroconf announcement reaches the kind with a zeroconf step; a known endpoint aborts."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf("127.0.0.5")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "fake:127.0.0.5"
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf("127.0.0.5")
    )
    assert result["reason"] == "already_configured"


class _PickyKind(FakeKind):
    """A kind with a zeroconf step that accepts no announcement."""

    name = "picky"

    def accepts_discovery(self, source: str, discovery_info: object) -> bool:
        """Refuse every discovery."""
        return False


async def test_discovery_a_kind_does_not_accept_goes_on(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """Two kinds declare a zeroconf step: the first does not accept the announcement, the next gets it."""
    with patch.dict(KINDS, {"picky": _PickyKind(), FAKE: fake_kind}, clear=True):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf("127.0.0.6")
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["result"].unique_id == "fake:127.0.0.6"
        with patch.object(FakeKind, "accepts_discovery", return_value=False):
            result = await hass.config_entries.flow.async_init(
                DOMAIN, context={"source": SOURCE_ZEROCONF}, data=_zeroconf("127.0.0.7")
            )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_supported"


async def test_discovery_no_kind_declares_is_refused(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A USB device no kind knows is not offered."""
    only_indi = {SOURCE_INDI: KINDS[SOURCE_INDI]}
    with patch.dict(KINDS, only_indi, clear=True):
        result = await _usb_flow_nobody_declares(hass)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_supported"


async def _usb_flow_nobody_declares(hass: HomeAssistant) -> Any:
    return await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_USB},
        data=UsbServiceInfo(
            device="/dev/ttyUSB9",
            vid="1234",
            pid="5678",
            serial_number=None,
            manufacturer=None,
            description=None,
        ),
    )


async def test_reauth_goes_to_the_entry_kind(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """Reauthentication runs the entry's kind's own step; a kind without one aborts."""
    fake = MockConfigEntry(domain=DOMAIN, data={CONF_SOURCE_KIND: FAKE, CONF_HOST: "x"})
    fake.add_to_hass(hass)
    result = await fake.start_reauth_flow(hass)
    assert result["reason"] == "reauth_successful"
    indi = _indi_entry(hass, 7624)
    result = await indi.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_supported"


async def test_a_kind_form_built_with_io(
    hass: HomeAssistant, fake_kind: FakeKind, mock_setup_entry: AsyncMock
) -> None:
    """A kind whose form needs I/O (a list of serial ports) builds it in async_schema."""

    async def with_choices(
        _hass: HomeAssistant, values: Mapping[str, Any]
    ) -> probatio.Schema:
        return probatio.Schema(
            {probatio.Required(CONF_HOST): probatio.In(["alpha", "beta"])}
        )

    with patch.object(fake_kind, "async_schema", side_effect=with_choices):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": FAKE}
        )
        assert result["type"] is FlowResultType.FORM
        schema = result["data_schema"]
        assert schema is not None
        with pytest.raises(probatio.Invalid):
            schema({CONF_HOST: "gamma"})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "beta"}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_SOURCE_KIND: FAKE, CONF_HOST: "beta"}
