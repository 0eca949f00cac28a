"""Config flow: menu, INDI step (tested connection, errors, duplicates), reconfigure and options."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.const import (
    CONF_BLOB_FOLDER,
    CONF_BLOB_KEEP,
    CONF_BLOB_MAX_MB,
    CONF_BLOBS_ENABLED,
    CONF_SOURCE_KIND,
    DOMAIN,
)

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
    assert result["menu_options"] == [SOURCE_INDI]
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
    }
