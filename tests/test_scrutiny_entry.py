"""Scrutiny entries against the scripted server: the flow, the options, entities, actions, diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.instrument_hub.const import CONF_SOURCE_KIND, DOMAIN
from custom_components.instrument_hub.diagnostics import (
    async_get_config_entry_diagnostics,
)

from .fake_scrutiny import FakeScrutinyServer
from .helpers import state_is, state_of, wait_for_entity, wait_for_state

ENTRY_ID = "01JSCRUTINYENTRY000000000A"
OPTIONS = {
    "watchables": [
        "/Sine Wave",
        "/static/main.cpp/counter",
        "/static/main.cpp/counter_enable",
        "/Mode",
        "/rpv/x2000",
    ],
    "writable": [
        "/static/main.cpp/counter",
        "/static/main.cpp/counter_enable",
        "/Mode",
    ],
    "update_rate": 5.0,
}


async def _flow(hass: HomeAssistant, port: int) -> dict[str, object]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "scrutiny"}
    )
    assert result["step_id"] == "scrutiny"
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: port}
        )
    )


def _schema(result: Any) -> Any:
    """Return the fields of a form's schema."""
    assert result["data_schema"] is not None
    return result["data_schema"].schema


def _entry(
    hass: HomeAssistant, port: int, options: dict[str, object] | None = None
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="Scrutiny server 127.0.0.1",
        unique_id=f"scrutiny:127.0.0.1:{port}",
        data={CONF_SOURCE_KIND: "scrutiny", CONF_HOST: "127.0.0.1", CONF_PORT: port},
        options=options if options is not None else OPTIONS,
    )
    entry.add_to_hass(hass)
    return entry


async def _loaded(
    hass: HomeAssistant,
    server: FakeScrutinyServer,
    options: dict[str, object] | None = None,
) -> MockConfigEntry:
    entry = _entry(hass, server.port, options)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    await wait_for_entity(hass, "sensor", f"{ENTRY_ID}:target:w./Sine Wave")
    await entry.runtime_data.async_flush()
    await hass.async_block_till_done()
    return entry


async def test_flow_creates_the_entry(
    hass: HomeAssistant, scrutiny_server: FakeScrutinyServer
) -> None:
    """Flow creates the entry."""
    result = await _flow(hass, scrutiny_server.port)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Scrutiny server 127.0.0.1:{scrutiny_server.port}"
    # The success dialog says what the server reported.
    assert result["description"] == "scrutiny"
    assert result["description_placeholders"] == {
        "device": "EmulatedDevice",
        "firmware": "Scrutiny Demo Device 0.16.0",
        "datalogger": "standby",
        "watchables": "6",
    }
    assert scrutiny_server.requests_of("get_server_status")
    again = await _flow(hass, scrutiny_server.port)
    assert (
        again["type"] is FlowResultType.ABORT
        and again["reason"] == "already_configured"
    )
    await hass.async_block_till_done()


async def test_flow_errors(hass: HomeAssistant, socket_enabled: None) -> None:
    """Flow errors."""
    not_scrutiny = FakeScrutinyServer(welcome=False)
    await not_scrutiny.start()
    try:
        with patch(
            "custom_components.instrument_hub.sources.scrutiny.client.WELCOME_TIMEOUT",
            0.2,
        ):
            result = await _flow(hass, not_scrutiny.port)
        assert result["errors"] == {"base": "not_scrutiny"}
        hass.config_entries.flow.async_abort(str(result["flow_id"]))
        port = not_scrutiny.port
    finally:
        await not_scrutiny.close()
    result = await _flow(hass, port)
    assert result["errors"] == {"base": "cannot_connect"}
    hass.config_entries.flow.async_abort(str(result["flow_id"]))

    # A server that welcomes but refuses the status request is no Scrutiny server either.
    odd = FakeScrutinyServer()
    del odd.handlers["get_server_status"]
    await odd.start()
    try:
        result = await _flow(hass, odd.port)
        assert result["errors"] == {"base": "not_scrutiny"}
    finally:
        await odd.close()


async def test_options_list_the_servers_watchables(
    hass: HomeAssistant, scrutiny_server: FakeScrutinyServer
) -> None:
    """Options list the servers watchables."""
    entry = await _loaded(
        hass, scrutiny_server, {"watchables": ["/Sine Wave", "/old/one"]}
    )
    result = await hass.config_entries.options.async_init(entry.entry_id)
    options = _schema(result)["watchables"].config["options"]
    labels = {option["value"]: option["label"] for option in options}
    assert labels["/Sine Wave"] == "/Sine Wave (alias, float32)"
    assert labels["/old/one"] == "/old/one (not listed now)"
    assert len(labels) == len(FakeScrutinyServer.all_paths()) + 1
    form = {
        "watchables": ["/Sine Wave"],
        "writable": ["/Mode"],
        "update_rate": 2,
        "blobs_enabled": True,
        "blob_folder": "instrument_hub",
        "blob_max_mb": 50,
        "blob_keep": 100,
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], form)
    assert result["errors"] == {"writable": "writable_not_watched"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**form, "writable": [], "blob_folder": "../out"}
    )
    assert result["errors"] == {"blob_folder": "invalid_folder"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**form, "writable": []}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["watchables"] == ["/Sine Wave"]
    await hass.async_block_till_done()


async def test_options_of_an_entry_not_loaded(hass: HomeAssistant) -> None:
    """Options of an entry not loaded."""
    entry = _entry(hass, 1, {"watchables": ["/a"], "writable": ["/a"]})
    result = await hass.config_entries.options.async_init(entry.entry_id)
    options = _schema(result)["watchables"].config["options"]
    assert [option["value"] for option in options] == ["/a"]


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize(
    "platform",
    [
        Platform.SENSOR,
        Platform.NUMBER,
        Platform.SWITCH,
        Platform.SELECT,
        Platform.EVENT,
    ],
)
async def test_entities(
    hass: HomeAssistant,
    scrutiny_server: FakeScrutinyServer,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Pin the entity set of a server with its demo target and five watchables, platform by platform."""
    with patch("custom_components.instrument_hub.PLATFORMS", [platform]):
        entry = _entry(hass, scrutiny_server.port)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await wait_for_entity(
            hass,
            "sensor" if platform is Platform.SENSOR else str(platform),
            _probe(platform),
        )
        await entry.runtime_data.async_flush()
        await hass.async_block_till_done()
        if platform in (Platform.SENSOR, Platform.EVENT):
            # Their states depend on timing (event times, queue rates sampled every 10 s): pin the
            # registry entries, which is what a user's automations and dashboards hold on to.
            entries = sorted(
                er.async_entries_for_config_entry(entity_registry, entry.entry_id),
                key=lambda found: found.entity_id,
            )
            assert entries == snapshot
        else:
            await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


def _probe(platform: Platform) -> str:
    """Return the unique id of an entity of the platform that exists once the target is known."""
    return {
        Platform.SENSOR: f"{ENTRY_ID}:target:w./Sine Wave",
        Platform.NUMBER: f"{ENTRY_ID}:target:w./static/main%2Ecpp/counter",
        Platform.SWITCH: f"{ENTRY_ID}:target:w./static/main%2Ecpp/counter_enable",
        Platform.SELECT: f"{ENTRY_ID}:target:w./Mode",
        Platform.EVENT: f"{ENTRY_ID}:target:datalogger.export",
    }[platform]


async def test_writes_actions_and_availability(
    hass: HomeAssistant, scrutiny_server: FakeScrutinyServer, tmp_path: Path
) -> None:
    """Writes actions and availability."""
    hass.config.config_dir = str(tmp_path)
    entry = await _loaded(hass, scrutiny_server)
    registry = er.async_get(hass)

    def entity(platform: str, channel: str) -> str:
        found = registry.async_get_entity_id(
            platform, DOMAIN, f"{ENTRY_ID}:target:{channel}"
        )
        assert found is not None
        return found

    counter = entity("number", "w./static/main%2Ecpp/counter")
    mode = entity("select", "w./Mode")
    enable = entity("switch", "w./static/main%2Ecpp/counter_enable")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": counter, "value": 3.5}, blocking=True
    )
    assert state_of(hass, counter) == "3.5"
    await hass.services.async_call(
        "select", "select_option", {"entity_id": mode, "option": "run"}, blocking=True
    )
    assert state_of(hass, mode) == "run"
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": enable}, blocking=True
    )
    assert state_of(hass, enable) == "on"

    response = await hass.services.async_call(
        DOMAIN,
        "write_variable",
        {
            "config_entry_id": ENTRY_ID,
            "path": "/static/main.cpp/counter_enable",
            "value": "off",
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response == {
        "path": "/static/main.cpp/counter_enable",
        "success": True,
        "value": False,
        "completed_at": response["completed_at"],
    }
    assert state_of(hass, enable) == "off"
    with pytest.raises(ServiceValidationError) as invalid:
        await hass.services.async_call(
            DOMAIN,
            "write_variable",
            {
                "config_entry_id": ENTRY_ID,
                "path": "/static/main.cpp/counter",
                "value": "lots",
            },
            blocking=True,
            return_response=True,
        )
    assert invalid.value.translation_key == "invalid_value"
    scrutiny_server.write_success = False
    with pytest.raises(HomeAssistantError) as refused:
        await hass.services.async_call(
            "number", "set_value", {"entity_id": counter, "value": 1}, blocking=True
        )
    assert refused.value.translation_key == "command_rejected"
    assert "read-only" in str(refused.value)
    assert state_of(hass, counter) == "3.5"

    # Export: the newest acquisition as CSV through the file store.
    scrutiny_server.handlers["list_datalogging_acquisitions"] = lambda _req: {
        "cmd": "response_list_datalogging_acquisitions",
        "acquisitions": [{"reference_id": "r1"}],
    }
    scrutiny_server.handlers["read_datalogging_acquisition_content"] = lambda _req: {
        "cmd": "response_read_datalogging_acquisition_content",
        "xdata": {"name": "Time (ms)", "data": [0, 1]},
        "signals": [{"name": "sine", "data": [0.5, 0.25]}],
    }
    saved = await hass.services.async_call(
        DOMAIN,
        "save_acquisition",
        {"config_entry_id": ENTRY_ID},
        blocking=True,
        return_response=True,
    )
    assert saved is not None and saved["reference_id"] == "r1"
    assert Path(str(saved["path"])).read_text() == "Time (ms),sine\n0,0.5\n1,0.25\n"
    assert Path(str(saved["path"])).is_relative_to(tmp_path / "instrument_hub")

    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert diagnostics["hub"]["source"]["host"] == "**REDACTED**"
    assert diagnostics["hub"]["source"]["status"]["session_id"]
    assert diagnostics["hub"]["source"]["catalog_size"] == 6

    # The link goes: every entity unavailable; back: the same entities, no reload.
    sine = entity("sensor", "w./Sine Wave")
    await scrutiny_server.drop()
    await wait_for_state(hass, sine, state_is(STATE_UNAVAILABLE))
    await wait_for_state(
        hass, sine, lambda s: s is not None and s.state != STATE_UNAVAILABLE, timeout=10
    )
    assert entry.state is ConfigEntryState.LOADED


async def test_saving_disabled_fails_the_export(
    hass: HomeAssistant, scrutiny_server: FakeScrutinyServer
) -> None:
    """Saving disabled fails the export."""
    await _loaded(hass, scrutiny_server, {**OPTIONS, "blobs_enabled": False})
    scrutiny_server.handlers["read_datalogging_acquisition_content"] = lambda _req: {
        "cmd": "response_read_datalogging_acquisition_content",
        "xdata": {"data": [0]},
        "signals": [],
    }
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN,
            "save_acquisition",
            {"config_entry_id": ENTRY_ID, "reference_id": "r1"},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "not_saved"
