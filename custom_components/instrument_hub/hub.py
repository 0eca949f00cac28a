"""The hub: one per config entry.

It consumes the source's normalized events through the collector, keeps the device/channel model,
registers devices, announces new channels to the platforms, decides availability and carries commands
back to the source. Entities subscribe to the channels they show; nothing here polls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Iterator, Mapping
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.util import dt as dt_util

from .blob_store import blob_path, write_blob
from .collector import (
    Collector,
    CollectorClosed,
    CollectorMode,
    CollectorStats,
    reading_coalesce_key,
)
from .const import (
    BLOB_EVENT_RECEIVED,
    DOMAIN,
    HUB_DEVICE_KEY,
    LINK_CHANNEL,
    MESSAGE_CHANNEL,
)
from .events import (
    BlobData,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
    DeviceConnection,
    DeviceFound,
    DeviceLost,
    Event,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
)
from .sources.base import (
    CommandResult,
    InvalidValue,
    Source,
    SourceError,
    UnknownTarget,
)

_LOGGER = logging.getLogger(__name__)

type InstrumentHubConfigEntry = ConfigEntry[Hub]

EVENT_QUEUE_SIZE = 2000
MESSAGE_HISTORY = 50


@runtime_checkable
class SupportsSetProperty(Protocol):
    """A source that can write a whole property (INDI vector) by name: the raw set_property action."""

    async def async_set_property(
        self, device: str, name: str, values: Mapping[str, object]
    ) -> CommandResult:
        """Write the given members of one property and return the device's answer."""


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """Where and how BLOBs are saved (from the entry's options)."""

    folder: Path
    max_bytes: int
    keep: int


@dataclass(slots=True)
class ChannelState:
    """What the hub knows of one channel; entities read it when notified."""

    definition: ChannelDefined
    platform: Platform
    value: object = None
    timestamp: datetime | None = None
    defined: bool = True
    event_seq: int = 0
    last_event: tuple[str, dict[str, Any]] | None = None


@dataclass(slots=True)
class DeviceState:
    """What the hub knows of one device."""

    info: DeviceFound
    present: bool = True
    connected: bool = True
    channels: dict[str, ChannelState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Flush:
    """Marker sent through the event collector: once handled, every earlier event is applied."""


@dataclass(frozen=True, slots=True)
class _Write:
    device_key: str
    channel_key: str
    value: object


@dataclass(frozen=True, slots=True)
class _SetProperty:
    device: str
    name: str
    values: Mapping[str, object]


type _Command = _Write | _SetProperty


def platform_for(definition: ChannelDefined) -> Platform:
    """Return the entity platform of a channel: by kind, and by whether it can be written."""
    match definition.kind:
        case ChannelKind.NUMERIC:
            return Platform.NUMBER if definition.writable else Platform.SENSOR
        case ChannelKind.BOOLEAN:
            return Platform.SWITCH if definition.writable else Platform.BINARY_SENSOR
        case ChannelKind.ENUM:
            return Platform.SELECT if definition.writable else Platform.SENSOR
        case ChannelKind.TEXT:
            return Platform.TEXT if definition.writable else Platform.SENSOR
        case ChannelKind.BLOB | ChannelKind.EVENT:
            return Platform.EVENT


def _event_coalesce_key(item: Event | _Flush) -> Hashable | None:
    return None if isinstance(item, _Flush) else reading_coalesce_key(item)


def _to_ha_error(err: SourceError) -> HomeAssistantError:
    """Turn a source's error into the translated error a user sees."""
    error_class = (
        ServiceValidationError
        if isinstance(err, InvalidValue | UnknownTarget)
        else HomeAssistantError
    )
    return error_class(
        translation_domain=DOMAIN,
        translation_key=err.translation_key,
        translation_placeholders=err.placeholders,
    )


class Hub:
    """The coordinator of one config entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        source: Source,
        *,
        model: str,
        blob_settings: BlobSettings | None,
    ) -> None:
        """Set up the model; nothing runs until async_start."""
        self.hass = hass
        self.entry = entry
        self.source = source
        self.model = model
        self.blob_settings = blob_settings
        self.link_up = False
        self.devices: dict[str, DeviceState] = {}
        self.messages: deque[Message] = deque(maxlen=MESSAGE_HISTORY)
        self.ignored_readings = 0
        self._listeners: dict[str, dict[str, list[Callable[[], None]]]] = {}
        self._unavailable_logged = False
        self._lost_logged: set[str] = set()
        self._blob_warned: set[tuple[str, str]] = set()
        self._events: Collector[Event | _Flush, None] = Collector(
            self._async_handle_event,
            mode=CollectorMode.FIFO,
            maxsize=EVENT_QUEUE_SIZE,
            coalesce_key=_event_coalesce_key,
            task_factory=self._create_task,
            name=f"{DOMAIN} events {entry.entry_id}",
        )
        self._commands: Collector[_Command, CommandResult] = Collector(
            self._async_run_command,
            mode=CollectorMode.FIFO,
            task_factory=self._create_task,
            name=f"{DOMAIN} commands {entry.entry_id}",
        )
        self._define_hub_device()

    # ------------------------------------------------------------------ lifecycle

    def _create_task(
        self, coro: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None]:
        return self.entry.async_create_background_task(self.hass, coro, name)

    async def async_start(self) -> None:
        """Start the queues and the source; raises CannotConnect when the endpoint is unreachable."""
        self._events.start()
        self._commands.start()
        await self.source.async_start(self._on_event)

    async def async_stop(self) -> None:
        """Stop the source, fail pending commands and drain the event queue; leaves no task behind."""
        await self.source.async_stop()
        await self._commands.close(drain_timeout=0)
        await self._events.close(drain_timeout=1.0)

    @callback
    def _on_event(self, event: Event) -> None:
        """Receive one event from the source (on the loop; never blocks)."""
        try:
            self._events.send(event)
        except CollectorClosed:
            _LOGGER.debug("Event after shutdown dropped: %s", type(event).__name__)

    async def async_flush(self) -> None:
        """Wait until every event received so far has been applied to the model and the entities."""
        with contextlib.suppress(CollectorClosed):
            await self._events.send(_Flush()).wait()

    # ------------------------------------------------------------------ identifiers

    def device_identifier(self, device_key: str) -> str:
        """Return the registry identifier of a device (the hub device for HUB_DEVICE_KEY).

        The entry id, not the host, anchors identifiers so a reconfigured host keeps every entity.
        """
        if device_key == HUB_DEVICE_KEY:
            return self.entry.entry_id
        return f"{self.entry.entry_id}:{device_key}"

    def entity_unique_id(self, device_key: str, channel_key: str) -> str:
        """Return the unique id of the entity of a channel: stable across restarts and re-definitions."""
        return f"{self.device_identifier(device_key)}:{channel_key}"

    def signal_new_channel(self, platform: Platform) -> str:
        """Return the dispatcher signal announcing new channels of one platform for this entry."""
        return f"{DOMAIN}_{self.entry.entry_id}_new_{platform}"

    # ------------------------------------------------------------------ model access

    def channel(self, device_key: str, channel_key: str) -> ChannelState:
        """Return a known channel."""
        return self.devices[device_key].channels[channel_key]

    def channels_for_platform(self, platform: Platform) -> Iterator[tuple[str, str]]:
        """Yield the (device, channel) keys of every known channel shown by one platform."""
        for device_key, device in self.devices.items():
            for channel_key, channel in device.channels.items():
                if channel.platform == platform:
                    yield device_key, channel_key

    def is_available(self, device_key: str, channel_key: str) -> bool:
        """Tell whether a channel's entity is available: link up, device present, connected, defined."""
        if device_key == HUB_DEVICE_KEY:
            return True
        device = self.devices.get(device_key)
        if not self.link_up or device is None or not device.present:
            return False
        channel = device.channels.get(channel_key)
        if channel is None or not channel.defined:
            return False
        return device.connected or channel.definition.keeps_available

    @callback
    def async_subscribe(
        self, device_key: str, channel_key: str, listener: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``listener`` whenever the channel (or its device's or the link's availability) changes."""
        listeners = self._listeners.setdefault(device_key, {}).setdefault(
            channel_key, []
        )
        listeners.append(listener)

        @callback
        def unsubscribe() -> None:
            listeners.remove(listener)

        return unsubscribe

    def _notify_channel(self, device_key: str, channel_key: str) -> None:
        for listener in list(self._listeners.get(device_key, {}).get(channel_key, ())):
            listener()

    def _notify_device(self, device_key: str) -> None:
        for listeners in list(self._listeners.get(device_key, {}).values()):
            for listener in list(listeners):
                listener()

    def _notify_all(self) -> None:
        for device_key in list(self._listeners):
            self._notify_device(device_key)

    # ------------------------------------------------------------------ events

    async def _async_handle_event(self, item: Event | _Flush) -> None:
        """Apply one event to the model and tell the entities concerned."""
        match item:
            case Reading():
                await self._async_reading(item)
            case ChannelDefined():
                self._channel_defined(item)
            case ChannelRemoved():
                self._channel_removed(item)
            case DeviceFound():
                self._device_found(item)
            case DeviceLost():
                self._device_lost(item)
            case DeviceConnection():
                self._device_connection(item)
            case Message():
                self._message(item)
            case LinkUp():
                self._set_link(up=True, reason="")
            case LinkDown():
                self._set_link(up=False, reason=item.reason)
            case _Flush():
                pass

    def _set_link(self, *, up: bool, reason: str) -> None:
        self.link_up = up
        link = self.devices[HUB_DEVICE_KEY].channels[LINK_CHANNEL]
        link.value = up
        link.timestamp = dt_util.utcnow()
        # Log-when-unavailable: once when the link goes, once when it is back.
        if not up and not self._unavailable_logged:
            _LOGGER.info(
                "%s is unavailable: %s", self.entry.title, reason or "connection lost"
            )
            self._unavailable_logged = True
        elif up and self._unavailable_logged:
            _LOGGER.info("%s is available again", self.entry.title)
            self._unavailable_logged = False
        self._notify_all()

    def _define_hub_device(self) -> None:
        """Model the endpoint itself: its link state and the messages not tied to a device."""
        hub = DeviceState(info=DeviceFound(HUB_DEVICE_KEY, self.entry.title))
        self.devices[HUB_DEVICE_KEY] = hub
        self._add_channel(
            hub,
            ChannelDefined(
                HUB_DEVICE_KEY,
                LINK_CHANNEL,
                ChannelKind.BOOLEAN,
                writable=False,
                label=None,
                translation_key="link",
                device_class_hint="connectivity",
                diagnostic=True,
                value=False,
            ),
        )
        self._add_channel(hub, self._message_channel(HUB_DEVICE_KEY))

    @staticmethod
    def _message_channel(device_key: str) -> ChannelDefined:
        return ChannelDefined(
            device_key,
            MESSAGE_CHANNEL,
            ChannelKind.EVENT,
            writable=False,
            label=None,
            translation_key="message",
            options=tuple(level.value for level in MessageLevel),
            diagnostic=True,
        )

    @callback
    def async_register_hub_device(self) -> None:
        """Create the registry entry of the endpoint (server, plug, port) all devices hang off."""
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, self.device_identifier(HUB_DEVICE_KEY))},
            name=self.entry.title,
            manufacturer="Instrument Hub",
            model=self.model,
        )

    def _register_device(self, info: DeviceFound) -> None:
        registry = dr.async_get(self.hass)
        # Sub-devices hang off the device that relays them, everything else off the endpoint.
        via_key = info.via_device_key
        if via_key is None or via_key not in self.devices:
            via_key = HUB_DEVICE_KEY
        via = registry.async_get_device_by_identifier(
            (DOMAIN, self.device_identifier(via_key)), self.entry.entry_id
        )
        registry.async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, self.device_identifier(info.device_key))},
            name=info.name,
            manufacturer=info.manufacturer,
            model=info.model,
            sw_version=info.sw_version,
            serial_number=info.serial_number,
            via_device_id=via.id if via else None,
        )

    def _device_found(self, info: DeviceFound) -> None:
        device = self.devices.get(info.device_key)
        if device is None:
            device = DeviceState(info=info)
            self.devices[info.device_key] = device
            self._register_device(info)
            self._add_channel(device, self._message_channel(info.device_key))
            return
        if device.info != info:
            device.info = info
            self._register_device(info)
        if not device.present:
            device.present = True
            if info.device_key in self._lost_logged:
                _LOGGER.info(
                    "%s: device %s is available again", self.entry.title, info.name
                )
                self._lost_logged.discard(info.device_key)
            self._notify_device(info.device_key)

    def _device_lost(self, event: DeviceLost) -> None:
        device = self.devices.get(event.device_key)
        if device is None or not device.present:
            return
        device.present = False
        if event.device_key not in self._lost_logged:
            _LOGGER.info(
                "%s: device %s is unavailable: %s",
                self.entry.title,
                device.info.name,
                event.reason,
            )
            self._lost_logged.add(event.device_key)
        self._notify_device(event.device_key)

    def _device_connection(self, event: DeviceConnection) -> None:
        device = self.devices.get(event.device_key)
        if device is None or device.connected == event.connected:
            return
        device.connected = event.connected
        self._notify_device(event.device_key)

    def _ensure_device(self, device_key: str) -> DeviceState:
        """Return a device, creating it from its key when a source defined a channel first."""
        if device_key not in self.devices:
            self._device_found(DeviceFound(device_key, device_key))
        return self.devices[device_key]

    def _add_channel(self, device: DeviceState, definition: ChannelDefined) -> None:
        platform = platform_for(definition)
        device.channels[definition.channel_key] = ChannelState(
            definition=definition, platform=platform, value=definition.value
        )
        async_dispatcher_send(
            self.hass,
            self.signal_new_channel(platform),
            definition.device_key,
            definition.channel_key,
        )

    def _channel_defined(self, definition: ChannelDefined) -> None:
        device = self._ensure_device(definition.device_key)
        channel = device.channels.get(definition.channel_key)
        if channel is None:
            self._add_channel(device, definition)
            return
        if platform_for(definition) != channel.platform:
            # The device changed what the channel is (read-only became writable, a kind changed): the
            # old entity cannot show it, so it goes and an entity of the right platform replaces it.
            self._remove_entity(
                definition.device_key, definition.channel_key, channel.platform
            )
            self._add_channel(device, definition)
            return
        # A re-definition updates the existing entity in place (label, range, options, value).
        channel.definition = definition
        channel.defined = True
        if definition.value is not None:
            channel.value = definition.value
        self._notify_channel(definition.device_key, definition.channel_key)

    def _remove_entity(
        self, device_key: str, channel_key: str, platform: Platform
    ) -> None:
        registry = er.async_get(self.hass)
        unique_id = self.entity_unique_id(device_key, channel_key)
        if entity_id := registry.async_get_entity_id(platform, DOMAIN, unique_id):
            # Removing the registry entry also removes the entity object from its platform.
            registry.async_remove(entity_id)

    def _channel_removed(self, event: ChannelRemoved) -> None:
        device = self.devices.get(event.device_key)
        channel = device.channels.get(event.channel_key) if device else None
        if channel is None or not channel.defined:
            return
        channel.defined = False
        self._notify_channel(event.device_key, event.channel_key)

    async def _async_reading(self, reading: Reading) -> None:
        device = self.devices.get(reading.device_key)
        channel = device.channels.get(reading.channel_key) if device else None
        if channel is None:
            self.ignored_readings += 1
            return
        if isinstance(reading.value, BlobData):
            await self._async_save_blob(reading, channel, reading.value)
        else:
            channel.value = reading.value
        channel.timestamp = reading.timestamp or dt_util.utcnow()
        self._notify_channel(reading.device_key, reading.channel_key)

    async def _async_save_blob(
        self, reading: Reading, channel: ChannelState, blob: BlobData
    ) -> None:
        """Save a BLOB in the executor, then fire the channel's event with where it went."""
        attributes: dict[str, Any] = {"size": blob.size, "format": blob.format}
        settings = self.blob_settings
        # The size cap is the source's job (it skips oversized BLOBs before decoding them); here only
        # a server that pushes files although none were asked for (saving disabled) is left.
        if settings is None:
            key = (reading.device_key, reading.channel_key)
            if key not in self._blob_warned:
                _LOGGER.warning(
                    "%s: BLOB of %s %s not saved (%d bytes; saving files is disabled)",
                    self.entry.title,
                    reading.device_key,
                    reading.channel_key,
                    blob.size,
                )
                self._blob_warned.add(key)
            attributes["path"] = None
        else:
            path = blob_path(
                settings.folder,
                self.entry.entry_id,
                reading.device_key,
                reading.channel_key,
                blob.format,
                reading.timestamp or dt_util.utcnow(),
            )
            try:
                await self.hass.async_add_executor_job(
                    write_blob, path, blob.data, settings.keep
                )
            except OSError as err:
                _LOGGER.warning(
                    "%s: could not save BLOB to %s: %s", self.entry.title, path, err
                )
                attributes["path"] = None
            else:
                attributes["path"] = str(path)
        channel.value = attributes
        channel.event_seq += 1
        channel.last_event = (BLOB_EVENT_RECEIVED, attributes)

    def _message(self, message: Message) -> None:
        self.messages.append(message)
        device_key = message.device_key
        if device_key is None or device_key not in self.devices:
            device_key = HUB_DEVICE_KEY
        channel = self.devices[device_key].channels[MESSAGE_CHANNEL]
        channel.event_seq += 1
        channel.last_event = (
            message.level.value,
            {"message": message.text, **message.attributes},
        )
        channel.timestamp = message.timestamp or dt_util.utcnow()
        self._notify_channel(device_key, MESSAGE_CHANNEL)

    # ------------------------------------------------------------------ commands

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write a channel; returns once the device confirmed it and its new state is applied."""
        return await self._async_command(_Write(device_key, channel_key, value))

    async def async_set_property(
        self, device: str, name: str, values: Mapping[str, object]
    ) -> CommandResult:
        """Write one property by name (the raw action); returns the device's answer."""
        if not isinstance(self.source, SupportsSetProperty):
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="not_supported"
            )
        return await self._async_command(_SetProperty(device, name, values))

    async def _async_command(self, command: _Command) -> CommandResult:
        try:
            result = await self._commands.send(command).wait()
        except SourceError as err:
            raise _to_ha_error(err) from err
        except CollectorClosed as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="not_connected",
                translation_placeholders={"message": "shutting down"},
            ) from err
        # The confirmation's new values travel as events: apply them before the caller looks.
        await self.async_flush()
        return result

    async def _async_run_command(self, command: _Command) -> CommandResult:
        if isinstance(command, _Write):
            return await self.source.async_write(
                command.device_key, command.channel_key, command.value
            )
        assert isinstance(self.source, SupportsSetProperty)
        return await self.source.async_set_property(
            command.device, command.name, command.values
        )

    # ------------------------------------------------------------------ diagnostics

    def event_queue_stats(self) -> CollectorStats:
        """Return the event queue's figures (depth, rate, wait and service times)."""
        return self._events.stats()

    def diagnostics(self) -> dict[str, Any]:
        """Return the model, the queues' figures and the source's state (no BLOB bytes)."""
        return {
            "link_up": self.link_up,
            "ignored_readings": self.ignored_readings,
            "devices": {
                # The endpoint's own name is its address: left out, like the host.
                key or "<endpoint>": {
                    "name": device.info.name if key else None,
                    "present": device.present,
                    "connected": device.connected,
                    "channels": {
                        channel_key: {
                            "kind": channel.definition.kind.value,
                            "writable": channel.definition.writable,
                            "platform": str(channel.platform),
                            "defined": channel.defined,
                            "value": _diagnostic_value(channel.value),
                            "timestamp": channel.timestamp.isoformat()
                            if channel.timestamp
                            else None,
                        }
                        for channel_key, channel in device.channels.items()
                    },
                }
                for key, device in self.devices.items()
            },
            "recent_messages": [
                {"device": m.device_key, "level": m.level.value, "text": m.text}
                for m in self.messages
            ],
            "event_queue": self.event_queue_stats(),
            "command_queue": self._commands.stats(),
            "source": self.source.diagnostics(),
        }


def _diagnostic_value(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, bool | int | float | str | dict):
        return value
    return repr(value)
