"""Sensors: read-only numeric, enum and text channels."""

from __future__ import annotations

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import LAST_MESSAGE_CHANNEL
from .entity import (
    InstrumentHubEntity,
    async_setup_channel_platform,
    device_class_from_hint,
)
from .events import ChannelDefined, ChannelKind, StateClass
from .hub import ChannelState, Hub, InstrumentHubConfigEntry, valid_number
from .queue_sensor import QUEUE_SENSORS, QueueSensor

PARALLEL_UPDATES = 0
MAX_STATE_LENGTH = 255


async def async_setup_entry(
    hass: HomeAssistant,
    entry: InstrumentHubConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add sensors for read-only numeric, enum and text channels, and the event queue's figures."""
    async_setup_channel_platform(entry, Platform.SENSOR, async_add_entities, _create)
    async_add_entities(
        QueueSensor(entry.runtime_data, description) for description in QUEUE_SENSORS
    )


def _create(hub: Hub, device_key: str, channel_key: str) -> SensorEntity:
    kind = hub.channel(device_key, channel_key).definition.kind
    if kind is ChannelKind.NUMERIC:
        return InstrumentNumericSensor(hub, device_key, channel_key)
    if kind is ChannelKind.ENUM:
        return InstrumentEnumSensor(hub, device_key, channel_key)
    if channel_key == LAST_MESSAGE_CHANNEL:
        return LastMessageSensor(hub, device_key, channel_key)
    return InstrumentTextSensor(hub, device_key, channel_key)


class InstrumentNumericSensor(InstrumentHubEntity, SensorEntity):
    """A measurement or a meter pushed by a device (None and NaN show as unknown)."""

    def _apply_definition(self, definition: ChannelDefined) -> None:
        self._attr_device_class = device_class_from_hint(
            SensorDeviceClass, definition.device_class_hint
        )
        self._attr_native_unit_of_measurement = definition.unit
        self._attr_suggested_display_precision = definition.precision
        self._attr_state_class = (
            SensorStateClass(definition.state_class.value)
            if definition.state_class is not None
            else None
        )
        self._attr_last_reset = (
            definition.last_reset
            if definition.state_class is StateClass.TOTAL
            else None
        )

    def _apply_value(self, channel: ChannelState) -> None:
        self._attr_native_value = valid_number(channel.value)


class InstrumentEnumSensor(InstrumentHubEntity, SensorEntity):
    """A read-only state from a fixed list (an INDI light, a read-only selection)."""

    _attr_device_class = SensorDeviceClass.ENUM

    def _apply_definition(self, definition: ChannelDefined) -> None:
        self._attr_options = list(definition.options)

    def _apply_value(self, channel: ChannelState) -> None:
        value = channel.value
        # A value outside the declared options would be rejected by Home Assistant: show unknown.
        self._attr_native_value = (
            value
            if isinstance(value, str) and value in (self._attr_options or ())
            else None
        )


class InstrumentTextSensor(InstrumentHubEntity, SensorEntity):
    """A read-only text."""

    def _apply_value(self, channel: ChannelState) -> None:
        value = channel.value
        self._attr_native_value = (
            None if value is None else str(value)[:MAX_STATE_LENGTH]
        )


class LastMessageSensor(InstrumentTextSensor, RestoreSensor):
    """A device's last message; after a restart it shows the one before until the device speaks."""

    _restored: str | None = None

    async def async_added_to_hass(self) -> None:
        """Take the last text from before the restart while the device has said nothing new."""
        await super().async_added_to_hass()
        last = await self.async_get_last_sensor_data()
        if last is not None and isinstance(last.native_value, str):
            self._restored = last.native_value
            self._apply_value(self.channel)

    def _apply_value(self, channel: ChannelState) -> None:
        super()._apply_value(channel)
        if self._attr_native_value is None:
            self._attr_native_value = self._restored
