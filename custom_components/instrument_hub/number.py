"""Numbers: writable numeric channels; a new value is confirmed by the device before it shows."""

from __future__ import annotations

from homeassistant.components.number import NumberDeviceClass, NumberEntity, NumberMode
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup, device_class_from_hint
from .events import ChannelDefined
from .hub import ChannelState, valid_number

# Writes to different channels run at once; the hub keeps those that must be in order in order.
PARALLEL_UPDATES = 0
# A channel without a declared range still needs bounds in Home Assistant: wide ones, in a box.
UNBOUNDED = 1e15


class InstrumentNumber(InstrumentHubEntity, NumberEntity):
    """A setting of a device (a target, an exposure time)."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        ranged = definition.minimum is not None and definition.maximum is not None
        self._attr_native_min_value = (
            definition.minimum if definition.minimum is not None else -UNBOUNDED
        )
        self._attr_native_max_value = (
            definition.maximum if definition.maximum is not None else UNBOUNDED
        )
        self._attr_mode = NumberMode.AUTO if ranged else NumberMode.BOX
        if definition.step is not None:
            self._attr_native_step = definition.step
        elif definition.precision is not None:
            self._attr_native_step = 10.0**-definition.precision
        self._attr_native_unit_of_measurement = definition.unit
        self._attr_device_class = device_class_from_hint(
            NumberDeviceClass, definition.device_class_hint
        )

    def _apply_value(self, channel: ChannelState) -> None:
        self._attr_native_value = valid_number(channel.value)

    async def async_set_native_value(self, value: float) -> None:
        """Send the value; the state changes when the device confirms it."""
        await self.hub.async_write(self.device_key, self.channel_key, value)


async_setup_entry = channel_platform_setup(Platform.NUMBER, InstrumentNumber)
