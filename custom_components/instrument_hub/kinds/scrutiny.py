"""The Scrutiny server kind: host and port, the watchables to show, and the write/export actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv, selector
import probatio

from ..blob_store import FileStoreSettings
from ..const import ATTR_CONFIG_ENTRY_ID, DOMAIN
from ..hub import InstrumentHubConfigEntry
from ..sources.base import CannotConnect, CommandResult, SourceError
from ..sources.scrutiny import ScrutinySource
from ..sources.scrutiny.client import NotScrutiny, ScrutinyConnection
from ..sources.scrutiny.mapping import ACQUISITION_FILE, TARGET
from ..sources.scrutiny.messages import (
    DeviceInfo,
    FirmwareInfo,
    ServerStatus,
    Watchable,
)
from .base import Endpoint, FlowFormError, KindAction, OptionsForm, TaskFactory
from .files import (
    FILE_OPTION_DEFAULTS,
    FILE_OPTIONS_SCHEMA,
    file_store_settings,
    validate_file_options,
)
from .network import TcpServerKind

DEFAULT_PORT: Final = 8765
CONF_WATCHABLES: Final = "watchables"
CONF_WRITABLE: Final = "writable"
CONF_UPDATE_RATE: Final = "update_rate"
DEFAULT_UPDATE_RATE: Final = 2.0
CHECK_TIMEOUT: Final = 10.0

SERVICE_WRITE_VARIABLE: Final = "write_variable"
SERVICE_SAVE_ACQUISITION: Final = "save_acquisition"
ATTR_PATH: Final = "path"
ATTR_VALUE: Final = "value"
ATTR_REFERENCE_ID: Final = "reference_id"

WRITE_VARIABLE_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_PATH): cv.string,
        probatio.Required(ATTR_VALUE): probatio.Any(bool, int, float, str),
    }
)
SAVE_ACQUISITION_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Optional(ATTR_REFERENCE_ID): cv.string,
    }
)


def _source(entry: InstrumentHubConfigEntry) -> ScrutinySource:
    source = entry.runtime_data.source
    assert isinstance(source, ScrutinySource)
    return source


def _parse_value(value: bool | float | str) -> bool | float | str:
    """Return a value given as text as the number or boolean it spells (an enum's name stays)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("true", "on"):
        return True
    if text.lower() in ("false", "off"):
        return False
    try:
        return float(text)
    except ValueError:
        return text


async def _async_write_variable(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Write a watchable by its path and respond with the server's completion."""
    hub = entry.runtime_data
    source = _source(entry)
    path: str = call.data[ATTR_PATH]
    value = _parse_value(call.data[ATTR_VALUE])
    completions = []

    async def write() -> CommandResult:
        completion = await source.async_write_path(path, value)
        completions.append(completion)
        return CommandResult("ok", None, {path: completion.value})

    await hub.async_command(("watchable", path), write, f"write_variable {path}")
    completion = completions[0]
    return {
        "path": completion.path,
        "success": completion.success,
        "value": completion.value
        if isinstance(completion.value, bool | int | float | str)
        else None,
        "completed_at": completion.completed_at.isoformat()
        if completion.completed_at
        else None,
    }


async def _async_save_acquisition(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Fetch a datalogging acquisition, save it as CSV through the file store; respond with the path."""
    hub = entry.runtime_data
    source = _source(entry)
    requested: str | None = call.data.get(ATTR_REFERENCE_ID)
    references: list[str] = []

    async def export() -> CommandResult:
        references.append(await source.async_export_acquisition(requested))
        return CommandResult("ok")

    # One export at a time, so the file the channel reports afterwards is this export's.
    async with source.export_lock:
        await hub.async_command(("acquisition",), export, "save_acquisition")
        channel = hub.devices[TARGET].channels[ACQUISITION_FILE]
        assert channel.last_event is not None
        attributes = channel.last_event[1]
    if attributes.get("path") is None:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="not_saved",
            translation_placeholders={"reason": str(attributes.get("reason"))},
        )
    return {
        "reference_id": references[0],
        "path": attributes["path"],
        "size": attributes["size"],
    }


async def _async_found(connection: ScrutinyConnection) -> dict[str, str]:
    """Return what the server reports: its target, the target's firmware, the datalogger, watchables."""
    status = ServerStatus.from_message(await connection.request("get_server_status"))
    device = "none connected"
    firmware = "none loaded"
    if status.session_id is not None:
        info = DeviceInfo.from_message(await connection.request("get_device_info"))
        device = (info.display_name if info else None) or "connected"
    if status.firmware_id is not None:
        sfd = FirmwareInfo.from_message(await connection.request("get_loaded_sfd"))
        firmware = sfd.title if sfd else status.firmware_id
    count = await connection.request("get_watchable_count")
    quantities = count.get("qty")
    total = (
        sum(value for value in quantities.values() if isinstance(value, int))
        if isinstance(quantities, dict)
        else 0
    )
    return {
        "device": device,
        "firmware": firmware,
        "datalogger": status.datalogging_state.replace("_", " "),
        "watchables": str(total),
    }


def _watchable_options(
    catalog: Mapping[str, Watchable], chosen: list[str]
) -> list[selector.SelectOptionDict]:
    """Return every watchable the server lists (and the chosen ones it no longer lists), labelled."""
    options = [
        selector.SelectOptionDict(
            value=path, label=f"{path} ({watchable.type.value}, {watchable.dtype})"
        )
        for path, watchable in sorted(catalog.items())
    ]
    options += [
        selector.SelectOptionDict(value=path, label=f"{path} (not listed now)")
        for path in chosen
        if path not in catalog
    ]
    return options


def _validate_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    watched = list(dict.fromkeys(user_input.get(CONF_WATCHABLES) or []))
    writable = list(dict.fromkeys(user_input.get(CONF_WRITABLE) or []))
    if not set(writable) <= set(watched):
        raise FlowFormError({CONF_WRITABLE: "writable_not_watched"})
    return {
        CONF_WATCHABLES: watched,
        CONF_WRITABLE: writable,
        CONF_UPDATE_RATE: float(user_input[CONF_UPDATE_RATE]),
        **validate_file_options(user_input),
    }


class ScrutinyKind(TcpServerKind):
    """A Scrutiny debugger server (scrutinydebugger) and the embedded target it talks to."""

    name = "scrutiny"
    entry_model = "Scrutiny server"
    default_port = DEFAULT_PORT
    actions = (
        KindAction(
            SERVICE_WRITE_VARIABLE,
            WRITE_VARIABLE_SCHEMA,
            _async_write_variable,
            returns_response=True,
        ),
        KindAction(
            SERVICE_SAVE_ACQUISITION,
            SAVE_ACQUISITION_SCHEMA,
            _async_save_acquisition,
            returns_response=True,
        ),
    )

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Connect, wait for the welcome and read the server's status."""
        connection = ScrutinyConnection(
            endpoint.data[CONF_HOST],
            endpoint.data[CONF_PORT],
            on_push=lambda _message: None,
            on_link=lambda _up, _reason: None,
            connect_timeout=CHECK_TIMEOUT,
        )
        try:
            await connection.connect()
            connection.start()
            found = await _async_found(connection)
        except NotScrutiny as err:
            raise FlowFormError({"base": "not_scrutiny"}) from err
        except CannotConnect as err:
            raise FlowFormError({"base": "cannot_connect"}) from err
        except SourceError as err:
            raise FlowFormError({"base": "not_scrutiny"}) from err
        finally:
            await connection.close()
        return Endpoint(endpoint.unique_id, endpoint.title, endpoint.data, found)

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> ScrutinySource:
        """Build the client with the watchables the options chose."""
        options = entry.options
        return ScrutinySource(
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            watched=options.get(CONF_WATCHABLES, []),
            writable=options.get(CONF_WRITABLE, []),
            update_rate=float(options.get(CONF_UPDATE_RATE, DEFAULT_UPDATE_RATE)),
            task_factory=task_factory,
        )

    def file_settings(
        self, hass: HomeAssistant, entry: ConfigEntry
    ) -> FileStoreSettings | None:
        """Return where acquisition exports are saved, as the file options say."""
        return file_store_settings(hass, entry)

    def options_form(self, entry: ConfigEntry) -> OptionsForm:
        """Return the watchables (listed by the running server), the update rate and the file options."""
        catalog: Mapping[str, Watchable] = {}
        if entry.state is ConfigEntryState.LOADED:
            source = getattr(entry.runtime_data, "source", None)
            if isinstance(source, ScrutinySource):
                catalog = source.catalog
        chosen = [
            *entry.options.get(CONF_WATCHABLES, []),
            *entry.options.get(CONF_WRITABLE, []),
        ]
        options = _watchable_options(catalog, list(dict.fromkeys(chosen)))
        picker = selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=options,
                multiple=True,
                mode=selector.SelectSelectorMode.DROPDOWN,
                sort=True,
            )
        )
        schema = probatio.Schema(
            {
                probatio.Optional(CONF_WATCHABLES): picker,
                probatio.Optional(CONF_WRITABLE): picker,
                probatio.Required(CONF_UPDATE_RATE): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=0.1,
                        max=100,
                        step=0.1,
                        unit_of_measurement="Hz",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        ).extend(FILE_OPTIONS_SCHEMA.schema)
        return OptionsForm(
            step_id="scrutiny_options",
            schema=schema,
            defaults={
                CONF_WATCHABLES: [],
                CONF_WRITABLE: [],
                CONF_UPDATE_RATE: DEFAULT_UPDATE_RATE,
                **FILE_OPTION_DEFAULTS,
            },
            validate=_validate_options,
        )
