"""Selects: writable one-of-many channels, confirmed by the device."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup
from .events import ChannelDefined
from .hub import ChannelState

# Writes to different channels run at once; the hub keeps those that must be in order in order.
PARALLEL_UPDATES = 0


class InstrumentSelect(InstrumentHubEntity, SelectEntity):
    """A choice among a device's options (a mode, a filter)."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        self._attr_options = list(definition.options)

    def _apply_value(self, channel: ChannelState) -> None:
        value = channel.value
        self._attr_current_option = (
            value if isinstance(value, str) and value in self._attr_options else None
        )

    async def async_select_option(self, option: str) -> None:
        """Choose an option; the state changes when the device confirms it."""
        await self.hub.async_write(self.device_key, self.channel_key, option)


async_setup_entry = channel_platform_setup(Platform.SELECT, InstrumentSelect)
