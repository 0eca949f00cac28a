"""The base entity of every channel, and the one way platforms add channel entities."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from enum import StrEnum
from typing import Any

from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .events import ChannelDefined
from .hub import ChannelState, Hub, InstrumentHubConfigEntry

type EntityFactory = Callable[[Hub, str, str], Entity]
type PlatformSetup = Callable[
    [HomeAssistant, InstrumentHubConfigEntry, AddConfigEntryEntitiesCallback],
    Coroutine[Any, Any, None],
]


def channel_platform_setup(platform: Platform, factory: EntityFactory) -> PlatformSetup:
    """Return a platform's ``async_setup_entry``: an entity per channel of ``platform``."""

    async def async_setup_entry(
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        async_add_entities: AddConfigEntryEntitiesCallback,
    ) -> None:
        """Add an entity for every channel of the platform: known now and defined later."""
        async_setup_channel_platform(entry, platform, async_add_entities, factory)

    return async_setup_entry


def device_class_from_hint[E: StrEnum](
    device_classes: type[E], hint: str | None
) -> E | None:
    """Return the device class a source hinted at, if this platform has one of that name."""
    try:
        return device_classes(hint) if hint else None
    except ValueError:
        return None


@callback
def async_setup_channel_platform(
    entry: InstrumentHubConfigEntry,
    platform: Platform,
    async_add_entities: AddConfigEntryEntitiesCallback,
    factory: EntityFactory,
) -> None:
    """Add an entity for every channel of ``platform``: those known now and those defined later."""
    hub = entry.runtime_data

    @callback
    def add(channels: Iterable[tuple[str, str]]) -> None:
        async_add_entities(
            [
                factory(hub, device_key, channel_key)
                for device_key, channel_key in channels
            ]
        )

    # No await between reading the model and subscribing: no channel can slip in between.
    add(list(hub.channels_for_platform(platform)))

    # The hub announces new channels in batches (one per loop pass), so one call adds them all.
    entry.async_on_unload(
        async_dispatcher_connect(hub.hass, hub.signal_new_channel(platform), add)
    )


class InstrumentHubEntity(Entity):
    """One channel of one device, updated by the hub's push notifications."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, hub: Hub, device_key: str, channel_key: str) -> None:
        """Bind the entity to its channel; its unique id never changes."""
        self.hub = hub
        self.device_key = device_key
        self.channel_key = channel_key
        self._attr_unique_id = hub.entity_unique_id(device_key, channel_key)
        # Registered by the hub when the device was found, the device is attached as it is: no
        # device info, which would cost a registry get-or-create per entity (a tenth of the
        # setup of 10,000 entities).
        self.device_entry = hub.device_entry(device_key)
        channel = self.channel
        definition = channel.definition
        if definition.translation_key:
            self._attr_translation_key = definition.translation_key
        if definition.category is not None:
            self._attr_entity_category = EntityCategory(definition.category.value)
        self._attr_entity_registry_enabled_default = definition.enabled_by_default
        self._definition: ChannelDefined | None = None
        self._attributes: Mapping[str, object] | None = None
        self._apply_channel(channel)

    @property
    def channel(self) -> ChannelState:
        """The hub's state of this entity's channel."""
        return self.hub.channel(self.device_key, self.channel_key)

    @property
    def available(self) -> bool:
        """Available while the link is up, the device present and connected, and the channel defined."""
        return self.hub.is_available(self.device_key, self.channel_key)

    async def async_added_to_hass(self) -> None:
        """Start receiving the hub's notifications for this channel."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.hub.async_subscribe(
                self.device_key, self.channel_key, self._handle_channel_update
            )
        )

    @callback
    def _handle_channel_update(self) -> None:
        self._apply_channel(self.channel)
        self.async_write_ha_state()

    def _apply_channel(self, channel: ChannelState) -> None:
        """Copy the channel's value, and its definition when it was (re-)defined, into the entity."""
        definition = channel.definition
        if definition is not self._definition:
            # Definitions are frozen: the same object means nothing changed since the last time.
            self._definition = definition
            if definition.label:
                # The device's own label; fixed channels (label None) are named by their translation key.
                self._attr_name = definition.label
            self._apply_definition(definition)
        if channel.attributes is not self._attributes:
            # The hub replaces the mapping when they change: the same object means the same
            # attributes. Most channels have none: they share one empty mapping and need no dict.
            if channel.attributes or self._attributes:
                self._attr_extra_state_attributes = dict(channel.attributes)
            self._attributes = channel.attributes
        self._apply_value(channel)

    def _apply_definition(self, definition: ChannelDefined) -> None:
        """Copy what a (re-)definition may change: range, options, unit."""

    def _apply_value(self, channel: ChannelState) -> None:
        """Copy the channel's current value."""
