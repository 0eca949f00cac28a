"""From the model to normalized events: channels with unique names, readings with the property state.

The source updates the model (``model``) from what the server sends and tells the publisher what changed;
the publisher emits the events: ChannelDefined for a vector's channels (renaming other channels of the
device when a new one collides with their names), Readings carrying the vector's state as an attribute,
ChannelRemoved, and the device's property-state summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import dataclasses
from datetime import datetime

from ...events import ChannelDefined, ChannelRemoved, Event, Reading
from .mapping import (
    DEVICE_STATE_CHANNEL,
    Channel,
    UnitOverrides,
    channel_definitions,
    device_state,
    device_state_definition,
)
from .model import Device, Member, Vector
from .naming import unique_names
from .protocol import VectorKind


class Publisher:
    """Emits the events of the model's changes; remembers what each device's channels were defined as."""

    def __init__(self, emit: Callable[[Event], None], overrides: UnitOverrides) -> None:
        """Emit through ``emit``; ``overrides`` are the user's units per property."""
        self._emit = emit
        self._overrides = overrides
        self._channels: dict[str, dict[str, Channel]] = {}
        self._names: dict[str, dict[str, str]] = {}
        self._states: dict[str, tuple[str, dict[str, object]]] = {}

    def define(
        self, device: Device, vector: Vector, previous_keys: Iterable[str]
    ) -> None:
        """Emit the channels of a (re-)defined vector; ChannelRemoved for ones a redefinition dropped."""
        channels = self._channels.setdefault(device.name, {})
        if not channels:
            self._emit(device_state_definition(device.name))
        defined = channel_definitions(device.name, vector, self._overrides)
        vector.channel_keys = tuple(
            channel.definition.channel_key for channel in defined
        )
        for key in previous_keys:
            if key not in vector.channel_keys:
                device.channels.pop(key, None)
                channels.pop(key, None)
                self._emit(ChannelRemoved(device.name, key))
        for channel in defined:
            channels[channel.definition.channel_key] = channel
            device.channels[channel.definition.channel_key] = vector.name
        names = self._rename(device, vector)
        for channel in defined:
            definition = channel.definition
            label = names[definition.channel_key]
            # Unique already (almost always): the definition as it is, not a copy.
            self._emit(
                definition
                if definition.label == label
                else dataclasses.replace(definition, label=label)
            )
        self.device_state(device)

    def values(
        self,
        device: Device,
        vector: Vector,
        changed: list[Member],
        timestamp: datetime | None,
        *,
        state_changed: bool,
    ) -> None:
        """Emit readings of the changed members (of every member when the vector's state changed)."""
        kind = vector.kind
        if kind is VectorKind.BLOB:
            return
        attributes = vector.state_attributes()
        if kind is VectorKind.SWITCH and vector.is_select:
            if changed or state_changed:
                key = vector.channel_keys[0]
                self._emit(
                    Reading(
                        device.name, key, vector.select_value(), timestamp, attributes
                    )
                )
            return
        members = vector.members.values() if state_changed else changed
        emit = self._emit
        name = device.name
        value = vector.member_value
        for member in members:
            emit(
                Reading(name, member.channel_key, value(member), timestamp, attributes)
            )

    def removed(self, device: Device, vector: Vector) -> None:
        """Emit ChannelRemoved for a deleted (or forgotten) vector's channels."""
        for key in vector.channel_keys:
            self._emit(ChannelRemoved(device.name, key))
        self.device_state(device)

    def device_state(self, device: Device) -> None:
        """Emit the device's property-state summary when it changed."""
        if device.name not in self._channels:
            return
        state = device_state(device.vectors.values())
        if self._states.get(device.name) == state:
            return
        self._states[device.name] = state
        value, attributes = state
        self._emit(Reading(device.name, DEVICE_STATE_CHANNEL, value, None, attributes))

    def forget_states(self) -> None:
        """Forget the summaries emitted (after a reconnect every one is emitted again)."""
        self._states.clear()

    def _rename(self, device: Device, defining: Vector) -> dict[str, str]:
        """Return the device's unique names; re-define the other channels whose name had to change."""
        channels = self._channels[device.name]
        names = unique_names(channel.name for channel in channels.values())
        previous = self._names.get(device.name, {})
        renamed = [
            key
            for key, name in names.items()
            if key in previous
            and previous[key] != name
            and key not in defining.channel_keys
        ]
        for vector_name in dict.fromkeys(device.channels[key] for key in renamed):
            vector = device.vectors[vector_name]
            for channel in channel_definitions(device.name, vector, self._overrides):
                key = channel.definition.channel_key
                if key in renamed:
                    self._emit(
                        dataclasses.replace(channel.definition, label=names[key])
                    )
                    if not vector.enabled:
                        # Renamed while deleted: it stays unavailable until the driver defines it again.
                        self._emit(ChannelRemoved(device.name, key))
        self._names[device.name] = names
        return names

    def definition(self, device: str, key: str) -> ChannelDefined | None:
        """Return what a channel was last defined as (its plain name), for tests and diagnostics."""
        channel = self._channels.get(device, {}).get(key)
        return channel.definition if channel else None
