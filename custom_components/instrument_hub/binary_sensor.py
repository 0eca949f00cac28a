"""Binary sensors: read-only on/off channels, and the hub's connectivity."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import InstrumentHubEntity, async_setup_channel_platform
from .events import ChannelDefined
from .hub import ChannelState, InstrumentHubConfigEntry

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: InstrumentHubConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add binary sensors for read-only boolean channels."""
    async_setup_channel_platform(
        entry, Platform.BINARY_SENSOR, async_add_entities, InstrumentBinarySensor
    )


class InstrumentBinarySensor(InstrumentHubEntity, BinarySensorEntity):
    """An on/off state pushed by a device."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        hint = definition.device_class_hint
        try:
            self._attr_device_class = BinarySensorDeviceClass(hint) if hint else None
        except ValueError:
            self._attr_device_class = None

    def _apply_value(self, channel: ChannelState) -> None:
        self._attr_is_on = None if channel.value is None else bool(channel.value)
