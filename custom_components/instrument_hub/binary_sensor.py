"""Binary sensors: read-only on/off channels, and the hub's connectivity."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorEntity
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import Platform

from .entity import InstrumentHubEntity, channel_platform_setup, device_class_from_hint
from .events import ChannelDefined
from .hub import ChannelState

PARALLEL_UPDATES = 0


class InstrumentBinarySensor(InstrumentHubEntity, BinarySensorEntity):
    """An on/off state pushed by a device."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        self._attr_device_class = device_class_from_hint(
            BinarySensorDeviceClass, definition.device_class_hint
        )

    def _apply_value(self, channel: ChannelState) -> None:
        self._attr_is_on = None if channel.value is None else bool(channel.value)


async_setup_entry = channel_platform_setup(
    Platform.BINARY_SENSOR, InstrumentBinarySensor
)
