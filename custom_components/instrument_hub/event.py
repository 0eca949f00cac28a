"""Event entities: files received (with where they were saved), messages, and a device's happenings."""

from __future__ import annotations

from homeassistant.components.event import EventDeviceClass, EventEntity
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import BLOB_EVENT_RECEIVED
from .entity import InstrumentHubEntity, async_setup_channel_platform
from .events import ChannelDefined, ChannelKind
from .hub import ChannelState, Hub, InstrumentHubConfigEntry

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: InstrumentHubConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add event entities for BLOB and event channels."""
    async_setup_channel_platform(
        entry, Platform.EVENT, async_add_entities, InstrumentEvent
    )


class InstrumentEvent(InstrumentHubEntity, EventEntity):
    """Fires when the channel's event counter moves: a BLOB arrived, a message was sent."""

    def __init__(self, hub: Hub, device_key: str, channel_key: str) -> None:
        """Start from the channel's current counter so an old event is never replayed."""
        self._seen_seq = hub.channel(device_key, channel_key).event_seq
        if hub.channel(device_key, channel_key).definition.kind is ChannelKind.BLOB:
            self._attr_translation_key = "blob"
        super().__init__(hub, device_key, channel_key)

    def _apply_definition(self, definition: ChannelDefined) -> None:
        if definition.kind is ChannelKind.BLOB:
            self._attr_event_types = [BLOB_EVENT_RECEIVED]
        else:
            self._attr_event_types = list(definition.options)
        hint = definition.device_class_hint
        try:
            self._attr_device_class = EventDeviceClass(hint) if hint else None
        except ValueError:
            self._attr_device_class = None

    def _apply_value(self, channel: ChannelState) -> None:
        if channel.event_seq == self._seen_seq or channel.last_event is None:
            return
        self._seen_seq = channel.event_seq
        event_type, attributes = channel.last_event
        self._trigger_event(event_type, attributes)
