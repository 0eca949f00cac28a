"""The integration's actions: registered once, each dispatched to the kind of the entry it names."""

from __future__ import annotations

from functools import partial
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

from .const import ATTR_CONFIG_ENTRY_ID, DOMAIN
from .hub import InstrumentHubConfigEntry
from .kinds import all_actions, kind_of


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register every action some kind offers."""
    for name, action in all_actions().items():
        hass.services.async_register(
            DOMAIN,
            name,
            partial(_async_dispatch, name),
            schema=action.schema,
            supports_response=SupportsResponse.OPTIONAL
            if action.returns_response
            else SupportsResponse.NONE,
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


async def _async_dispatch(name: str, call: ServiceCall) -> ServiceResponse:
    """Run the action of the named entry's kind; an entry of a kind without it is refused."""
    entry = _loaded_entry(call.hass, call.data[ATTR_CONFIG_ENTRY_ID])
    action = next((a for a in kind_of(entry).actions if a.name == name), None)
    if action is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="not_supported",
            translation_placeholders={"action": name, "title": entry.title},
        )
    return await action.handler(call, entry)
