"""The integration's actions."""

from __future__ import annotations

from typing import cast

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
import probatio

from .const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DEVICE,
    ATTR_PROPERTY,
    ATTR_VALUES,
    DOMAIN,
    SERVICE_SET_PROPERTY,
)
from .hub import InstrumentHubConfigEntry

SET_PROPERTY_SCHEMA = probatio.Schema(
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


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions of the integration."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_SET_PROPERTY,
        _async_set_property,
        schema=SET_PROPERTY_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


def _loaded_entry(hass: HomeAssistant, entry_id: str) -> InstrumentHubConfigEntry:
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"title": entry.title},
        )
    return cast("InstrumentHubConfigEntry", entry)


async def _async_set_property(call: ServiceCall) -> ServiceResponse:
    """Write a property the entities do not cover; respond with the device's answer."""
    entry = _loaded_entry(call.hass, call.data[ATTR_CONFIG_ENTRY_ID])
    result = await entry.runtime_data.async_set_property(
        call.data[ATTR_DEVICE], call.data[ATTR_PROPERTY], call.data[ATTR_VALUES]
    )
    return {
        "state": result.state,
        "message": result.message,
        "values": dict(result.values),
    }
