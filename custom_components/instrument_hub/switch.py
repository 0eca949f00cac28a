"""Switches: writable on/off channels, confirmed by the device."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup
from .hub import ChannelState

# Writes to different channels run at once; the hub keeps those that must be in order in order.
PARALLEL_UPDATES = 0


class InstrumentSwitch(InstrumentHubEntity, SwitchEntity):
    """An on/off control of a device."""

    def _apply_value(self, channel: ChannelState) -> None:
        self._attr_is_on = None if channel.value is None else bool(channel.value)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn on; the state changes when the device confirms it."""
        await self.hub.async_write(self.device_key, self.channel_key, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn off; the state changes when the device confirms it."""
        await self.hub.async_write(self.device_key, self.channel_key, False)


async_setup_entry = channel_platform_setup(Platform.SWITCH, InstrumentSwitch)
