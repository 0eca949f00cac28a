"""Instrument Hub: local devices and lab instruments that push their data into Home Assistant."""

from __future__ import annotations

from pathlib import Path

from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_BLOB_FOLDER,
    CONF_BLOB_KEEP,
    CONF_BLOB_MAX_MB,
    CONF_BLOBS_ENABLED,
    DEFAULT_BLOB_FOLDER,
    DEFAULT_BLOB_KEEP,
    DEFAULT_BLOB_MAX_MB,
    DEFAULT_BLOBS_ENABLED,
    DOMAIN,
    HUB_DEVICE_KEY,
)
from .hub import BlobSettings, Hub, InstrumentHubConfigEntry
from .services import async_setup_services
from .sources.base import CannotConnect
from .sources.indi import IndiSource

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
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


def _blob_settings(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> BlobSettings | None:
    options = entry.options
    if not options.get(CONF_BLOBS_ENABLED, DEFAULT_BLOBS_ENABLED):
        return None
    return BlobSettings(
        folder=Path(
            hass.config.path(options.get(CONF_BLOB_FOLDER, DEFAULT_BLOB_FOLDER))
        ),
        max_bytes=int(options.get(CONF_BLOB_MAX_MB, DEFAULT_BLOB_MAX_MB)) * 1024 * 1024,
        keep=int(options.get(CONF_BLOB_KEEP, DEFAULT_BLOB_KEEP)),
    )


async def async_setup_entry(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> bool:
    """Connect to the endpoint, then let the platforms add entities as devices define channels."""
    blob_settings = _blob_settings(hass, entry)
    source = IndiSource(
        entry.data[CONF_HOST],
        entry.data[CONF_PORT],
        enable_blobs=blob_settings is not None,
        max_blob_bytes=blob_settings.max_bytes
        if blob_settings
        else DEFAULT_BLOB_MAX_MB * 1024 * 1024,
        task_factory=lambda coro, name: entry.async_create_background_task(
            hass, coro, name
        ),
    )
    hub = Hub(hass, entry, source, model="INDI server", blob_settings=blob_settings)
    entry.runtime_data = hub
    hub.async_register_hub_device()
    try:
        await hub.async_start()
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
    """Let the user remove a device that is gone; a present device (or the hub itself) stays."""
    hub: Hub = entry.runtime_data
    for device_key, device in hub.devices.items():
        if (DOMAIN, hub.device_identifier(device_key)) in device_entry.identifiers:
            return device_key != HUB_DEVICE_KEY and not (device.present and hub.link_up)
    return True
