"""The INDI server kind: host and port, received files, units per property, and the set_property action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.components.number import NumberDeviceClass
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.components.sensor.const import DEVICE_CLASS_UNITS
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
from homeassistant.helpers import config_validation as cv, selector
import probatio

from ..blob_store import FileStoreSettings, spool_folder
from ..const import ATTR_CONFIG_ENTRY_ID
from ..hub import InstrumentHubConfigEntry
from ..sources.indi import IndiSource
from ..sources.indi.commands import FINISH_TIMEOUT_MAX
from ..sources.indi.mapping import UnitOverrides
from ..sources.indi.overrides import OverrideSyntaxError, parse_unit_overrides
from .base import Endpoint, FlowFormError, KindAction, OptionsForm, TaskFactory
from .files import (
    FILE_OPTION_DEFAULTS,
    FILE_OPTIONS_SCHEMA,
    file_store_settings,
    max_file_bytes,
    validate_file_options,
)
from .network import TcpServerKind, async_check_reachable

DEFAULT_PORT: Final = 7624

SERVICE_SET_PROPERTY: Final = "set_property"
ATTR_DEVICE: Final = "device"
ATTR_PROPERTY: Final = "property"
ATTR_VALUES: Final = "values"
ATTR_TIMEOUT: Final = "timeout"

CONF_UNITS: Final = "units"
"""Option: the user's units per property, one line each (see sources/indi/overrides.py)."""

SET_PROPERTY_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_DEVICE): cv.string,
        probatio.Required(ATTR_PROPERTY): cv.string,
        probatio.Required(ATTR_VALUES): probatio.All(
            probatio.Schema({cv.string: probatio.Any(bool, int, float, str)}),
            probatio.Length(min=1),
        ),
        # Given: wait until the device finished (not only accepted) the command, this many seconds.
        probatio.Optional(ATTR_TIMEOUT): probatio.All(
            probatio.Coerce(float),
            probatio.Range(min=0.1, max=FINISH_TIMEOUT_MAX),
        ),
    }
)

OPTIONS_SCHEMA: Final = FILE_OPTIONS_SCHEMA.extend(
    {
        probatio.Optional(CONF_UNITS): selector.TextSelector(
            selector.TextSelectorConfig(multiline=True)
        ),
    }
)
_DEVICE_CLASSES: Final = frozenset(c.value for c in SensorDeviceClass) & frozenset(
    c.value for c in NumberDeviceClass
)
"""Device classes a property may get: those of both sensors and numbers (it may be either)."""


def _validate_units(text: str) -> UnitOverrides:
    """Parse the unit lines and check each device class and its unit as Home Assistant would."""
    try:
        overrides = parse_unit_overrides(text)
    except OverrideSyntaxError:
        raise FlowFormError({CONF_UNITS: "invalid_unit_line"}) from None
    for override in overrides.values():
        device_class = override.device_class
        if device_class is None:
            continue
        if device_class not in _DEVICE_CLASSES:
            raise FlowFormError({CONF_UNITS: "invalid_device_class"})
        units = DEVICE_CLASS_UNITS.get(SensorDeviceClass(device_class))
        if units is not None and override.unit not in units:
            raise FlowFormError({CONF_UNITS: "unit_not_for_device_class"})
    return overrides


def _validate_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the options to store: the file options and the unit lines (checked, kept as written)."""
    options = validate_file_options(user_input)
    units = str(user_input.get(CONF_UNITS) or "").strip()
    _validate_units(units)
    return {**options, CONF_UNITS: units}


OPTIONS_FORM: Final = OptionsForm(
    step_id="indi",
    schema=OPTIONS_SCHEMA,
    defaults={**FILE_OPTION_DEFAULTS, CONF_UNITS: ""},
    validate=_validate_options,
)


def unit_overrides(entry: ConfigEntry) -> UnitOverrides:
    """Return the entry's unit lines as overrides (they were checked when saved; a bad one is ignored)."""
    try:
        return parse_unit_overrides(str(entry.options.get(CONF_UNITS, "")))
    except OverrideSyntaxError:
        return {}


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
    timeout: float | None = call.data.get(ATTR_TIMEOUT)
    result = await hub.async_command(
        source.vector_lane(device, name),
        lambda: source.async_set_property(device, name, values, timeout=timeout),
        f"set_property {device} {name}",
    )
    return {
        "state": result.state,
        "message": result.message,
        "values": dict(result.values),
    }


class IndiKind(TcpServerKind):
    """An INDI server (indiserver, indipyserver): every device and property it defines."""

    name = "indi"
    entry_model = "INDI server"
    default_port = DEFAULT_PORT
    actions = (
        KindAction(
            SERVICE_SET_PROPERTY,
            SET_PROPERTY_SCHEMA,
            _async_set_property,
            returns_response=True,
        ),
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
        """Build the INDI client; files are only asked for when the entry saves them.

        They are then written, as they arrive, into the file store's spool folder, from where the hub
        moves each finished file into place.
        """
        settings = self.file_settings(hass, entry)
        return IndiSource(
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            enable_blobs=settings is not None,
            max_blob_bytes=max_file_bytes(entry),
            spool_folder=spool_folder(settings.folder) if settings else None,
            task_factory=task_factory,
            unit_overrides=unit_overrides(entry),
        )

    def file_settings(
        self, hass: HomeAssistant, entry: ConfigEntry
    ) -> FileStoreSettings | None:
        """Return where BLOBs are saved, as the file options say."""
        return file_store_settings(hass, entry)

    def options_form(self, entry: ConfigEntry) -> OptionsForm:
        """Return the file options and the units per property."""
        return OPTIONS_FORM
