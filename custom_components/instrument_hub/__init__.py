"""Instrument Hub: local devices and lab instruments that push their data into Home Assistant."""

from __future__ import annotations

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.typing import ConfigType

from .const import CONF_SOURCE_KIND, DOMAIN
from .hub import Hub, InstrumentHubConfigEntry
from .kinds import find_kind
from .services import async_setup_services
from .sources.base import AuthenticationFailed, CannotConnect

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's actions (once, whatever the entries)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> bool:
    """Connect to the endpoint, then let the platforms add entities as devices define channels."""
    kind = find_kind(entry)
    if kind is None:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="unknown_kind",
            translation_placeholders={"kind": str(entry.data.get(CONF_SOURCE_KIND))},
        )
    source = kind.create_source(
        hass,
        entry,
        lambda coro, name: entry.async_create_background_task(hass, coro, name),
    )
    hub = Hub(
        hass,
        entry,
        source,
        model=kind.entry_model,
        file_settings=kind.file_settings(hass, entry),
    )
    entry.runtime_data = hub
    hub.async_register_hub_device()
    try:
        await hub.async_start()
    except AuthenticationFailed as err:
        # Home Assistant starts the kind's reauthentication for this.
        await hub.async_stop()
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN,
            translation_key="invalid_auth",
            translation_placeholders=err.placeholders,
        ) from err
    except CannotConnect as err:
        await hub.async_stop()
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders=err.placeholders,
        ) from err

    async def _async_stop_on_shutdown(_event: Event) -> None:
        await hub.async_stop()

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_stop_on_shutdown)
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> bool:
    """Remove the entities, then stop the source: no task, timer or socket stays behind."""
    unload_ok = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unload_ok:
        await entry.runtime_data.async_stop()
    return unload_ok


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry, device_entry: DeviceEntry
) -> bool:
    """Let the user remove a device that is gone; a present device (or the endpoint) stays."""
    return entry.runtime_data.can_remove_device(device_entry.id)
