"""The INDI server kind: host and port, received files, and the raw set_property action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
from homeassistant.helpers import config_validation as cv
import probatio

from ..blob_store import FileStoreSettings
from ..const import ATTR_CONFIG_ENTRY_ID
from ..hub import InstrumentHubConfigEntry
from ..sources.indi import IndiSource
from .base import Endpoint, KindAction, OptionsForm, SourceKind, TaskFactory
from .files import FILE_OPTIONS_FORM, file_store_settings, max_file_bytes
from .network import async_check_reachable, host_and_port, host_port_schema

DEFAULT_PORT: Final = 7624

SERVICE_SET_PROPERTY: Final = "set_property"
ATTR_DEVICE: Final = "device"
ATTR_PROPERTY: Final = "property"
ATTR_VALUES: Final = "values"

SET_PROPERTY_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_DEVICE): cv.string,
        probatio.Required(ATTR_PROPERTY): cv.string,
        probatio.Required(ATTR_VALUES): probatio.All(
            probatio.Schema({cv.string: probatio.Any(bool, int, float, str)}),
            probatio.Length(min=1),
        ),
    }
)


async def _async_set_property(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Write a property (vector) the entities do not cover; respond with the device's answer."""
    hub = entry.runtime_data
    source = hub.source
    assert isinstance(source, IndiSource)
    device: str = call.data[ATTR_DEVICE]
    name: str = call.data[ATTR_PROPERTY]
    values: Mapping[str, object] = call.data[ATTR_VALUES]
    result = await hub.async_command(
        source.vector_lane(device, name),
        lambda: source.async_set_property(device, name, values),
        f"set_property {device} {name}",
    )
    return {
        "state": result.state,
        "message": result.message,
        "values": dict(result.values),
    }


class IndiKind(SourceKind):
    """An INDI server (indiserver, indipyserver): every device and property it defines."""

    name = "indi"
    entry_model = "INDI server"
    redact: ClassVar[frozenset[str]] = frozenset({CONF_HOST, "host"})
    actions = (
        KindAction(
            SERVICE_SET_PROPERTY,
            SET_PROPERTY_SCHEMA,
            _async_set_property,
            returns_response=True,
        ),
    )

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the host/port form."""
        return host_port_schema(DEFAULT_PORT)

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Describe the server: unique id and title from host and port."""
        host, port = host_and_port(user_input)
        return Endpoint(
            unique_id=f"{self.name}:{host.lower()}:{port}",
            title=f"INDI server {host}:{port}",
            data={CONF_HOST: host, CONF_PORT: port},
        )

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Check that the server accepts a connection."""
        await async_check_reachable(endpoint.data[CONF_HOST], endpoint.data[CONF_PORT])
        return endpoint

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> IndiSource:
        """Build the INDI client; files are only asked for when the entry saves them."""
        return IndiSource(
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            enable_blobs=self.file_settings(hass, entry) is not None,
            max_blob_bytes=max_file_bytes(entry),
            task_factory=task_factory,
        )

    def file_settings(
        self, hass: HomeAssistant, entry: ConfigEntry
    ) -> FileStoreSettings | None:
        """Return where BLOBs are saved, as the file options say."""
        return file_store_settings(hass, entry)

    def options_form(self, entry: ConfigEntry) -> OptionsForm:
        """Return the file options."""
        return FILE_OPTIONS_FORM
