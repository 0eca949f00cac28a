"""Event entities: files received (with where they were saved), messages, and a device's happenings."""

from __future__ import annotations

from homeassistant.components.event import EventDeviceClass, EventEntity
from homeassistant.const import Platform

from .const import BLOB_EVENT_RECEIVED
from .entity import InstrumentHubEntity, channel_platform_setup, device_class_from_hint
from .events import ChannelDefined, ChannelKind
from .hub import ChannelState, Hub

PARALLEL_UPDATES = 0


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
        self._attr_device_class = device_class_from_hint(
            EventDeviceClass, definition.device_class_hint
        )

    def _apply_value(self, channel: ChannelState) -> None:
        if channel.event_seq == self._seen_seq or channel.last_event is None:
            return
        self._seen_seq = channel.event_seq
        event_type, attributes = channel.last_event
        self._trigger_event(event_type, attributes)


async_setup_entry = channel_platform_setup(Platform.EVENT, InstrumentEvent)
