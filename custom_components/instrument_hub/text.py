"""Texts: writable text channels, confirmed by the device."""

from __future__ import annotations

from homeassistant.components.text import TextEntity
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup
from .hub import ChannelState

# Writes to different channels run at once; the hub keeps those that must be in order in order.
PARALLEL_UPDATES = 0
MAX_STATE_LENGTH = 255


class InstrumentText(InstrumentHubEntity, TextEntity):
    """A text setting of a device (an object name, a note)."""

    _attr_native_max = MAX_STATE_LENGTH

    def _apply_value(self, channel: ChannelState) -> None:
        value = channel.value
        self._attr_native_value = (
            None if value is None else str(value)[:MAX_STATE_LENGTH]
        )

    async def async_set_value(self, value: str) -> None:
        """Send the text; the state changes when the device confirms it."""
        await self.hub.async_write(self.device_key, self.channel_key, value)


async_setup_entry = channel_platform_setup(Platform.TEXT, InstrumentText)
