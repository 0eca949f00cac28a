"""Buttons: action channels, commands without a value (Abort, reset statistics, a Thing's action)."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity
from homeassistant.components.button.const import ButtonDeviceClass
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import InstrumentHubEntity, async_setup_channel_platform
from .events import ChannelDefined
from .hub import InstrumentHubConfigEntry

# Presses of different buttons run at once (an Abort never waits behind a slow command).
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: InstrumentHubConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add buttons for action channels."""
    async_setup_channel_platform(
        entry, Platform.BUTTON, async_add_entities, InstrumentButton
    )


class InstrumentButton(InstrumentHubEntity, ButtonEntity):
    """A command of a device; pressing it returns once the device confirmed it."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        hint = definition.device_class_hint
        try:
            self._attr_device_class = ButtonDeviceClass(hint) if hint else None
        except ValueError:
            self._attr_device_class = None

    async def async_press(self) -> None:
        """Run the action; a refusal or a timeout raises a translated error."""
        await self.hub.async_press(self.device_key, self.channel_key)
