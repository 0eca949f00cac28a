"""Buttons: action channels, commands without a value (Abort, reset statistics, a Thing's action)."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity
from homeassistant.components.button.const import ButtonDeviceClass
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup, device_class_from_hint
from .events import ChannelDefined

# Presses of different buttons run at once (an Abort never waits behind a slow command).
PARALLEL_UPDATES = 0


class InstrumentButton(InstrumentHubEntity, ButtonEntity):
    """A command of a device; pressing it returns once the device confirmed it."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        self._attr_device_class = device_class_from_hint(
            ButtonDeviceClass, definition.device_class_hint
        )

    async def async_press(self) -> None:
        """Run the action; a refusal or a timeout raises a translated error."""
        await self.hub.async_press(self.device_key, self.channel_key)


async_setup_entry = channel_platform_setup(Platform.BUTTON, InstrumentButton)
