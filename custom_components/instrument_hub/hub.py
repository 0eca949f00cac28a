"""The hub: one per config entry.

It consumes the source's normalized events through the collector, keeps the device/channel model,
registers devices, announces new channels to the platforms, decides availability and carries commands
back to the source. Entities subscribe to the channels they show; nothing here polls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterator, Mapping
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
import logging
import math
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import Event as HassEvent, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.entity_platform import MAX_ENABLED_ENTITIES_PER_CONFIG_ENTRY
from homeassistant.util import dt as dt_util

from .blob_store import (
    FileRefused,
    FileStoreSettings,
    discard_spooled,
    save_file,
    save_spooled_file,
)
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
    LAST_MESSAGE_CHANNEL,
    LINK_CHANNEL,
    MESSAGE_CHANNEL,
)
from .events import (
    NO_ATTRIBUTES,
    NUMBER_TYPES,
    BlobData,
    ChannelCategory,
    ChannelDefined,
    ChannelKind,
    ChannelRemoved,
    DeviceConnection,
    DeviceFound,
    DeviceLost,
    Event,
    EventData,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
    device_key_part,
    split_key,
)
from .log_excerpt import excerpt
from .sources.base import (
    CommandResult,
    InvalidValue,
    Source,
    SourceError,
    UnknownTarget,
)

_LOGGER = logging.getLogger(__name__)

type InstrumentHubConfigEntry = ConfigEntry[Hub]
type CommandCall = Callable[[], Awaitable[CommandResult]]

EVENT_QUEUE_SIZE = 2000
MESSAGE_HISTORY = 50
ENTITY_LIMIT = MAX_ENABLED_ENTITIES_PER_CONFIG_ENTRY
"""Home Assistant adds no new enabled entity to an entry beyond this (silently, in no fixed order)."""
WITHHELD_EXAMPLES = 5
WRITES_PER_PASS = 200
"""State writes of coalesced readings per loop pass: bounded work per callback (~4 ms), the rest next pass."""
FIRES_PER_GROUP = 64
"""Pushed happenings fired together, back to back (~0.7 ms): see Hub._fire_soon."""


@dataclass(slots=True)
class ChannelState:
    """What the hub knows of one channel; entities read it when notified."""

    definition: ChannelDefined
    platform: Platform
    value: object = None
    timestamp: datetime | None = None
    attributes: Mapping[str, object] = NO_ATTRIBUTES
    defined: bool = True
    withheld: bool = False
    """Not shown: it would exceed Home Assistant's limit of entities per entry."""
    announcing: bool = False
    """Its entity is to be added at the end of the loop pass (see Hub._announce_new)."""
    event_seq: int = 0
    last_event: tuple[str, dict[str, Any]] | None = None


@dataclass(slots=True)
class DeviceState:
    """What the hub knows of one device; ``identifier`` is fixed when the device is first seen."""

    info: DeviceFound
    identifier: str
    present: bool = True
    connected: bool = True
    channels: dict[str, ChannelState] = field(default_factory=dict)
    registry_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Flush:
    """Marker sent through the event collector: once handled, every earlier event is applied."""


@dataclass(frozen=True, slots=True)
class _Command:
    """A command for the command collector: its lane (what it must stay in order with) and its call."""

    lane: Hashable
    call: CommandCall
    description: str


CHANNEL_PLATFORMS = (
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.TEXT,
)
"""Every platform a channel may be shown on (see platform_for)."""


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
        case ChannelKind.ACTION:
            return Platform.BUTTON


def valid_number(value: object) -> int | float | None:
    """Return a reading as a number (an int stays one: a count shows 7, not 7.0), or None (unknown).

    None, NaN, infinities and non-numbers are unknown, never 0.
    """
    if isinstance(value, bool) or not isinstance(value, NUMBER_TYPES):
        return None
    if isinstance(value, int):
        return value
    return value if math.isfinite(value) else None


def _own(attributes: Mapping[str, object]) -> Mapping[str, object]:
    """Return a copy the hub owns (the shared empty mapping when there are none: no dict per channel)."""
    return dict(attributes) if attributes else NO_ATTRIBUTES


def _connection(kind: str, value: str) -> tuple[str, str]:
    """Return a registry connection; MAC addresses in Home Assistant's one spelling."""
    return (kind, dr.format_mac(value) if kind == dr.CONNECTION_NETWORK_MAC else value)


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


async def _run_command(command: _Command) -> CommandResult:
    return await command.call()


class Hub:
    """The coordinator of one config entry."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        source: Source,
        *,
        model: str,
        file_settings: FileStoreSettings | None,
    ) -> None:
        """Set up the model; nothing runs until async_start."""
        self.hass = hass
        self.entry = entry
        self.source = source
        self.model = model
        self.file_settings = file_settings
        self.link_up = False
        self.devices: dict[str, DeviceState] = {}
        self.messages: deque[Message] = deque(maxlen=MESSAGE_HISTORY)
        self.ignored_readings = 0
        self._listeners: dict[str, dict[str, list[Callable[[], None]]]] = {}
        self._unavailable_logged = False
        self._lost_logged: set[str] = set()
        self._file_warned: set[tuple[str, str]] = set()
        # Devices the user removed from the registry: what they were, for when they come back.
        self._removed: dict[str, DeviceFound] = {}
        self._unsubscribe_registry: Callable[[], None] | None = None
        # Readings whose state write is due (device, channel), in arrival order; written once per
        # loop pass, so a burst of values of one channel costs one write (the newest value).
        self._due: dict[tuple[str, str], None] = {}
        self._write_pass: asyncio.Handle | None = None
        # Happenings received and not fired yet, in arrival order (at most FIRES_PER_GROUP).
        self._fires: list[tuple[str, str, ChannelState, str, dict[str, Any]]] = []
        self.coalesced_writes = 0
        # Over Home Assistant's limit of enabled entities per entry the hub itself stops announcing
        # new ones, in definition order, and a repair issue names them (Home Assistant would drop a
        # different set each run, silently).
        self.withheld: list[tuple[str, str]] = []
        # Enabled entities the registry had for the entry when the first new one was announced, and
        # how many new enabled ones were announced since: what Home Assistant will count once they
        # are registered (a count, not a set: nothing kept per entity).
        self._enabled_at_start: int | None = None
        self._announced_new = 0
        self._issue_update: asyncio.Handle | None = None
        # New channels by platform, announced together at the end of the loop pass: one
        # async_add_entities call for a device of a hundred channels, not a hundred.
        self._to_announce: dict[Platform, list[tuple[str, str]]] = {}
        self._announce_pass: asyncio.Handle | None = None
        self._events: Collector[Event | _Flush, None] = Collector(
            self._async_handle_event,
            mode=CollectorMode.FIFO,
            maxsize=EVENT_QUEUE_SIZE,
            coalesce_key=_event_coalesce_key,
            task_factory=self._create_task,
            name=f"{DOMAIN} events {entry.entry_id}",
            inline=self._handle_event_now,
        )
        # Commands of different lanes (INDI: vectors) run at once; one lane's stay in order.
        self._commands: Collector[_Command, CommandResult] = Collector(
            _run_command,
            mode=CollectorMode.FIFO,
            task_factory=self._create_task,
            name=f"{DOMAIN} commands {entry.entry_id}",
            lane_key=lambda command: command.lane,
            expected=(SourceError,),
        )
        # The unique ids the registry held for the entry when the hub was made: what an earlier run
        # (or version) may have left. Every channel asks whether it was registered before, on this
        # platform or another or under a legacy id; asking only about these saves the registry
        # ~10 lookups a channel (a tenth of our own setup cost at 10,000 channels).
        self._earlier_unique_ids = {
            registry_entry.unique_id
            for registry_entry in er.async_entries_for_config_entry(
                er.async_get(hass), entry.entry_id
            )
        }
        self._define_hub_device()

    # ------------------------------------------------------------------ lifecycle

    def _create_task(
        self, coro: Coroutine[Any, Any, None], name: str
    ) -> asyncio.Task[None]:
        return self.entry.async_create_background_task(self.hass, coro, name)

    async def async_start(self) -> None:
        """Start the queues and the source; raises CannotConnect when the endpoint is unreachable."""
        # A new run decides again what fits (the user may have disabled or removed entities).
        ir.async_delete_issue(self.hass, DOMAIN, self.entity_limit_issue_id())
        self._unsubscribe_registry = self.hass.bus.async_listen(
            dr.EVENT_DEVICE_REGISTRY_UPDATED,
            self._device_registry_updated,
            event_filter=self._is_own_device_removal,
        )
        self._events.start()
        self._commands.start()
        await self.source.async_start(self._on_event)

    async def async_stop(self) -> None:
        """Stop the source, fail pending commands and drain the event queue; leaves no task behind."""
        if self._unsubscribe_registry is not None:
            self._unsubscribe_registry()
            self._unsubscribe_registry = None
        await self.source.async_stop()
        await self._commands.close(drain_timeout=0)
        await self._events.close(drain_timeout=1.0)
        if self._write_pass is not None:
            self._write_pass.cancel()
            self._write_pass = None
        self._due.clear()
        self._fires.clear()  # its entities are gone: unloading removed them first
        if self._issue_update is not None:
            self._issue_update.cancel()
            self._issue_update = None
        if self._announce_pass is not None:
            self._announce_pass.cancel()
            self._announce_pass = None
        self._to_announce.clear()

    @callback
    def _on_event(self, event: Event) -> None:
        """Receive one event from the source (on the loop; never blocks).

        When nothing is queued, the event is applied here and now (the collector's fast path); a
        value's state is written at the end of the loop pass (see _write_due).
        """
        try:
            self._events.post(event)
        except CollectorClosed:
            _LOGGER.debug("Event after shutdown dropped: %s", type(event).__name__)

    async def async_flush(self) -> None:
        """Wait until every event received so far is applied to the model and its state written."""
        with contextlib.suppress(CollectorClosed):
            await self._events.send(_Flush()).wait()
        self._write_due(budget=len(self._due))

    # ------------------------------------------------------------------ identifiers

    def _identifier_for(self, info: DeviceFound) -> str:
        """Return a new device's registry identifier: its hardware id, or one anchored to the entry.

        The entry id, not the host, anchors devices without a hardware id, so a reconfigured host
        keeps every entity; a hardware id survives deleting and re-adding the entry as well.
        """
        if info.device_key == HUB_DEVICE_KEY:
            return self.entry.entry_id
        if info.hardware_id:
            return device_key_part(info.hardware_id)
        return f"{self.entry.entry_id}:{device_key_part(info.device_key)}"

    def device_identifier(self, device_key: str) -> str:
        """Return the registry identifier of a known device (the hub device for HUB_DEVICE_KEY)."""
        device = self.devices.get(device_key)
        if device is not None:
            return device.identifier
        return self._identifier_for(DeviceFound(device_key, device_key))

    def device_entry(self, device_key: str) -> dr.AnyDeviceEntry | None:
        """Return the registry entry the hub made for a device, which its entities are attached to.

        None only if the entry was removed since; the hub then forgets the device, and its
        entities go with the entry.
        """
        device = self.devices.get(device_key)
        if device is None or device.registry_id is None:
            return None
        return dr.async_get(self.hass).async_get(device.registry_id)

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
                # One still to be announced comes with its announcement: never twice.
                if (
                    channel.platform == platform
                    and not channel.withheld
                    and not channel.announcing
                ):
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

    def device_key_of(self, registry_id: str) -> str | None:
        """Return the key of the device registered under ``registry_id`` (None if not ours)."""
        for device_key, device in self.devices.items():
            if device.registry_id == registry_id:
                return device_key
        return None

    def can_remove_device(self, registry_id: str) -> bool:
        """Tell whether the user may remove a device: not the endpoint, not one that is present."""
        device_key = self.device_key_of(registry_id)
        if device_key is None:
            return True  # not in the model (left over from an earlier run): nothing holds it
        device = self.devices[device_key]
        return device_key != HUB_DEVICE_KEY and not (device.present and self.link_up)

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
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return unsubscribe

    def _notify_channel(self, device_key: str, channel_key: str) -> None:
        self._due.pop(
            (device_key, channel_key), None
        )  # written now: not again at the end of the pass
        for listener in list(self._listeners.get(device_key, {}).get(channel_key, ())):
            listener()

    def _write_later(self, device_key: str, channel_key: str) -> None:
        """Have a channel's new value written at the end of the loop pass, once however often it changed."""
        key = (device_key, channel_key)
        if key in self._due:
            self.coalesced_writes += (
                1  # a newer value of the same channel before its write
            )
            return
        listeners = self._listeners.get(device_key)
        if listeners is None or not listeners.get(channel_key):
            return  # no entity shows it (disabled, or not added yet: it reads the value then)
        self._due[key] = None
        self._schedule_write_pass()

    def _schedule_write_pass(self) -> None:
        """Have _write_due run at the end of this loop pass (once, however much is waiting)."""
        if self._write_pass is None:
            self._write_pass = self.hass.loop.call_soon(self._write_due)

    def _fire_soon(
        self,
        device_key: str,
        channel_key: str,
        channel: ChannelState,
        event_type: str,
        attributes: dict[str, Any],
    ) -> None:
        """Fire a happening with the others of this loop pass: each one, in order, back to back.

        Home Assistant's own write costs about a third more when other code runs between two
        writes (measured 10.5-11.2 against 7.7-8.6 µs an event entity fire), so a burst's fires go
        together: at the end of the pass, or at once when FIRES_PER_GROUP are waiting (the work of
        a callback stays bounded, and a flood is still held back by its own fires). Anything else
        the hub applies fires the waiting ones first, so the order of events is kept.
        """
        fires = self._fires
        fires.append((device_key, channel_key, channel, event_type, attributes))
        if len(fires) >= FIRES_PER_GROUP:
            self._fire_pending()
        else:
            self._schedule_write_pass()

    def _fire_pending(self) -> None:
        """Fire the waiting happenings, in the order they came."""
        if not self._fires:
            return
        fires, self._fires = self._fires, []
        for device_key, channel_key, channel, event_type, attributes in fires:
            self._fire(channel, event_type, attributes)
            self._notify_channel(device_key, channel_key)

    @callback
    def _write_due(self, budget: int = WRITES_PER_PASS) -> None:
        """Fire the waiting happenings, then write the due states, at most ``budget`` of them."""
        self._write_pass = None
        self._fire_pending()
        due = self._due
        while due and budget > 0:
            key = next(iter(due))
            self._notify_channel(*key)
            budget -= 1
        if due:
            self._schedule_write_pass()

    def _notify_device(self, device_key: str) -> None:
        for listeners in list(self._listeners.get(device_key, {}).values()):
            for listener in list(listeners):
                listener()

    def _notify_all(self) -> None:
        for device_key in list(self._listeners):
            self._notify_device(device_key)

    # ------------------------------------------------------------------ events

    def _handle_event_now(self, item: Event | _Flush) -> bool:
        """Apply one event at once; False for what needs the async path (a file to save)."""
        if isinstance(item, Reading):
            if isinstance(item.value, BlobData):
                return False
            self._reading(item)
            return True
        self._apply(item)
        return True

    async def _async_handle_event(self, item: Event | _Flush) -> None:
        """Apply one queued event (behind a file being saved, or before the hub started)."""
        if isinstance(item, Reading) and isinstance(item.value, BlobData):
            await self._async_file_reading(item, item.value)
        elif isinstance(item, Reading):
            self._reading(item)
        else:
            self._apply(item)

    def _apply(self, item: Event | _Flush) -> None:
        """Apply one event that is not a reading to the model and tell the entities concerned."""
        self._fire_pending()  # what came before it is shown before it
        match item:
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
            case _Flush() | Reading():
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
        hub = DeviceState(
            info=DeviceFound(HUB_DEVICE_KEY, self.entry.title),
            identifier=self.entry.entry_id,
        )
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
                category=ChannelCategory.DIAGNOSTIC,
                value=False,
            ),
        )
        self._add_channel(hub, self._message_channel(HUB_DEVICE_KEY))
        self._keep_last_message(hub)

    def _keep_last_message(self, device: DeviceState) -> None:
        """Give a device its last-message sensor at once when it had one before (a reload, a restart).

        Otherwise the registered entity would stay unavailable until the device speaks again.
        """
        if self._registered_before(
            Platform.SENSOR, f"{device.identifier}:{LAST_MESSAGE_CHANNEL}"
        ):
            self._add_channel(
                device, self._last_message_channel(device.info.device_key)
            )

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
            category=ChannelCategory.DIAGNOSTIC,
            # What a device says while disconnected (why connecting failed) is what matters most.
            keeps_available=True,
        )

    @staticmethod
    def _last_message_channel(device_key: str) -> ChannelDefined:
        """Return the last-message sensor: a device's last word, seen without opening an event."""
        return ChannelDefined(
            device_key,
            LAST_MESSAGE_CHANNEL,
            ChannelKind.TEXT,
            writable=False,
            label=None,
            translation_key="last_message",
            category=ChannelCategory.DIAGNOSTIC,
            keeps_available=True,
        )

    @callback
    def async_register_hub_device(self) -> None:
        """Create the registry entry of the endpoint (server, plug, port) all devices hang off."""
        entry = dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={(DOMAIN, self.entry.entry_id)},
            name=self.entry.title,
            manufacturer="Instrument Hub",
            model=self.model,
        )
        self.devices[HUB_DEVICE_KEY].registry_id = entry.id

    def _register_device(self, device: DeviceState) -> None:
        info = device.info
        registry = dr.async_get(self.hass)
        identifier = (DOMAIN, device.identifier)
        self._migrate_device_identifier(registry, device)
        # Sub-devices hang off the device that relays them, everything else off the endpoint.
        via = self.devices.get(info.via_device_key or HUB_DEVICE_KEY)
        if via is None or via.registry_id is None:
            via = self.devices[HUB_DEVICE_KEY]
        entry = registry.async_get_or_create(
            config_entry_id=self.entry.entry_id,
            identifiers={identifier},
            connections={_connection(kind, value) for kind, value in info.connections},
            name=info.name,
            manufacturer=info.manufacturer,
            model=info.model,
            sw_version=info.sw_version,
            serial_number=info.serial_number,
            via_device_id=via.registry_id,
        )
        device.registry_id = entry.id

    def _migrate_device_identifier(
        self, registry: dr.DeviceRegistry, device: DeviceState
    ) -> None:
        """Move a device registered under the identifier of older versions (unescaped key) to its new one."""
        if device.info.hardware_id:
            return
        legacy = f"{self.entry.entry_id}:{device.info.device_key}"
        if legacy == device.identifier or registry.async_get_device_by_identifier(
            (DOMAIN, device.identifier), self.entry.entry_id
        ):
            return
        old = registry.async_get_device_by_identifier(
            (DOMAIN, legacy), self.entry.entry_id
        )
        if old is not None:
            registry.async_update_device(
                old.id, new_identifiers={(DOMAIN, device.identifier)}
            )

    def _device_found(self, info: DeviceFound) -> None:
        device = self.devices.get(info.device_key)
        if device is None:
            self._removed.pop(info.device_key, None)
            device = DeviceState(info=info, identifier=self._identifier_for(info))
            self.devices[info.device_key] = device
            self._register_device(device)
            self._add_channel(device, self._message_channel(info.device_key))
            self._keep_last_message(device)
            return
        if device.info != info:
            if (info.hardware_id or None) != (device.info.hardware_id or None):
                _LOGGER.debug(
                    "%s: device %s reported another hardware id; its identifier stays",
                    self.entry.title,
                    info.name,
                )
            device.info = info
            self._register_device(device)
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

    @callback
    def _is_own_device_removal(self, data: dr.EventDeviceRegistryUpdatedData) -> bool:
        return data["action"] == "remove" and any(
            device.registry_id == data["device_id"] for device in self.devices.values()
        )

    @callback
    def _device_registry_updated(
        self, event: HassEvent[dr.EventDeviceRegistryUpdatedData]
    ) -> None:
        """Forget a device the user removed, so the endpoint defining it again brings it back."""
        device_key = self.device_key_of(event.data["device_id"])
        if device_key is None or device_key == HUB_DEVICE_KEY:
            return
        device = self.devices.pop(device_key)
        self._removed[device_key] = device.info
        # Its entities are being removed with it; they must never be told about the new ones.
        self._listeners.pop(device_key, None)
        self._lost_logged.discard(device_key)
        _LOGGER.debug("%s: device %s was removed", self.entry.title, device.info.name)

    def _ensure_device(self, device_key: str) -> DeviceState:
        """Return a device, creating it when a source defined a channel first (or it was removed)."""
        if device_key not in self.devices:
            self._device_found(
                self._removed.get(device_key) or DeviceFound(device_key, device_key)
            )
        return self.devices[device_key]

    def _add_channel(self, device: DeviceState, definition: ChannelDefined) -> None:
        platform = platform_for(definition)
        device.channels[definition.channel_key] = ChannelState(
            definition=definition,
            platform=platform,
            value=definition.value,
            attributes=_own(definition.attributes),
        )
        if device.info.device_key != HUB_DEVICE_KEY:
            self._migrate_unique_id(device, definition.channel_key, platform)
            self._remove_superseded(device, definition, platform)
        channel = device.channels[definition.channel_key]
        if not self._within_entity_limit(device, definition, platform):
            channel.withheld = True
            return
        channel.announcing = True
        self._to_announce.setdefault(platform, []).append(
            (definition.device_key, definition.channel_key)
        )
        if self._announce_pass is None:
            self._announce_pass = self.hass.loop.call_soon(self._announce_new)

    @callback
    def _announce_new(self) -> None:
        """Tell each platform the channels defined in this pass, in one batch per platform."""
        self._announce_pass = None
        batches, self._to_announce = self._to_announce, {}
        for platform, keys in batches.items():
            current = []
            for device_key, channel_key in keys:
                device = self.devices.get(device_key)
                channel = device.channels.get(channel_key) if device else None
                # Gone (device removed) or replaced by another platform's channel in this pass.
                if (
                    channel is not None
                    and channel.announcing
                    and channel.platform == platform
                ):
                    channel.announcing = False
                    current.append((device_key, channel_key))
            if current:
                async_dispatcher_send(
                    self.hass, self.signal_new_channel(platform), current
                )

    def _within_entity_limit(
        self, device: DeviceState, definition: ChannelDefined, platform: Platform
    ) -> bool:
        """Tell whether the channel's entity may be announced; withhold it when it would exceed the limit."""
        if not definition.enabled_by_default:
            return True  # a disabled entity does not count
        unique_id = f"{device.identifier}:{definition.channel_key}"
        if self._registered_before(platform, unique_id):
            return True  # registered before: Home Assistant always adds it
        if self._enabled_at_start is None:
            self._enabled_at_start = er.async_get(
                self.hass
            ).entities.get_enabled_count_for_config_entry_id(self.entry.entry_id)
        if self._enabled_at_start + self._announced_new >= ENTITY_LIMIT:
            self.withheld.append((device.info.device_key, definition.channel_key))
            if self._issue_update is None:
                self._issue_update = self.hass.loop.call_soon(self._report_withheld)
            return False
        self._announced_new += 1
        return True

    @callback
    def _report_withheld(self) -> None:
        """Raise (or update) the repair issue naming the entities left out over the limit."""
        self._issue_update = None
        names = [
            f"{self.devices[device_key].info.name} {self._channel_name(device_key, key)}"
            for device_key, key in self.withheld[:WITHHELD_EXAMPLES]
            if device_key in self.devices
        ]
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self.entity_limit_issue_id(),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="entity_limit",
            translation_placeholders={
                "title": self.entry.title,
                "limit": str(ENTITY_LIMIT),
                "count": str(len(self.withheld)),
                "examples": ", ".join(names),
            },
        )

    def _channel_name(self, device_key: str, channel_key: str) -> str:
        definition = self.devices[device_key].channels[channel_key].definition
        return definition.label or definition.translation_key or channel_key

    def _registered_before(self, platform: Platform, unique_id: str) -> bool:
        """Tell whether an entity of ``platform`` is registered under an id an earlier run used."""
        return unique_id in self._earlier_unique_ids and bool(
            er.async_get(self.hass).async_get_entity_id(platform, DOMAIN, unique_id)
        )

    def entity_limit_issue_id(self) -> str:
        """Return the id of the entry's repair issue about entities over the limit."""
        return f"entity_limit_{self.entry.entry_id}"

    def _migrate_unique_id(
        self, device: DeviceState, channel_key: str, platform: Platform
    ) -> None:
        """Move an entity registered under an older version's (unescaped, collision-prone) id.

        Earlier versions joined raw names: ``<entry>:<device>:<vector>.<member>``. Names without
        ``.``/``:``/``%`` and a leading ``_`` give the same id as now; others are moved, so the
        entity keeps its entity id and history.
        """
        earlier = self._earlier_unique_ids
        if not earlier or device.info.hardware_id:
            return
        unique_id = f"{device.identifier}:{channel_key}"
        legacy = f"{self.entry.entry_id}:{device.info.device_key}:{'.'.join(split_key(channel_key))}"
        if legacy == unique_id or legacy not in earlier:
            return
        registry = er.async_get(self.hass)
        if registry.async_get_entity_id(platform, DOMAIN, unique_id):
            return
        if entity_id := registry.async_get_entity_id(platform, DOMAIN, legacy):
            registry.async_update_entity(entity_id, new_unique_id=unique_id)
            earlier.add(unique_id)

    def _remove_superseded(
        self, device: DeviceState, definition: ChannelDefined, platform: Platform
    ) -> None:
        """Remove the registry entries a new channel supersedes, left by an earlier run.

        Its own unique id on another platform (an older version showed the channel as another kind of
        entity: a switch that is now a button) and the channels it ``replaces`` (a select whose options
        are now buttons). Within a run a platform change already replaces the entity (see
        _channel_defined); across restarts the old entry would stay behind as "no longer provided".
        """
        registry = er.async_get(self.hass)
        for key in (definition.channel_key, *definition.replaces):
            unique_id = f"{device.identifier}:{key}"
            if (
                key == definition.channel_key
                and unique_id not in self._earlier_unique_ids
            ):
                # Not registered before this run; within it, _channel_defined replaces it. A replaced
                # channel may have been registered in this run, so it is always looked for.
                continue
            for other in CHANNEL_PLATFORMS:
                if key == definition.channel_key and other == platform:
                    continue
                if entity_id := registry.async_get_entity_id(other, DOMAIN, unique_id):
                    registry.async_remove(entity_id)
            if key != definition.channel_key and key in device.channels:
                del device.channels[key]
                listeners = self._listeners.get(device.info.device_key)
                if listeners is not None:
                    listeners.pop(key, None)

    def _channel_defined(self, definition: ChannelDefined) -> None:
        device = self._ensure_device(definition.device_key)
        channel = device.channels.get(definition.channel_key)
        if channel is None:
            self._add_channel(device, definition)
            return
        if platform_for(definition) != channel.platform:
            # The device changed what the channel is (read-only became writable, a kind changed): the
            # old entity cannot show it, so it goes and an entity of the right platform replaces it.
            self._remove_entity(device, definition.channel_key, channel.platform)
            self._add_channel(device, definition)
            return
        # A re-definition updates the existing entity in place (label, range, options, value).
        channel.definition = definition
        channel.defined = True
        channel.attributes = _own(definition.attributes)
        if definition.value is not None:
            channel.value = definition.value
        self._notify_channel(definition.device_key, definition.channel_key)

    def _remove_entity(
        self, device: DeviceState, channel_key: str, platform: Platform
    ) -> None:
        registry = er.async_get(self.hass)
        unique_id = f"{device.identifier}:{channel_key}"
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

    def _channel_of(self, reading: Reading) -> ChannelState | None:
        device = self.devices.get(reading.device_key)
        channel = device.channels.get(reading.channel_key) if device else None
        if channel is None:
            self.ignored_readings += 1
        return channel

    def _reading(self, reading: Reading) -> None:
        """Apply a value (its state written at the end of the pass) or a happening (fired soon)."""
        channel = self._channel_of(reading)
        if channel is None:
            return
        value = reading.value
        if reading.attributes is not None:
            channel.attributes = _own(reading.attributes)
        channel.timestamp = reading.timestamp or dt_util.utcnow()
        if isinstance(value, EventData):
            if value.event_type not in channel.definition.options:
                self.ignored_readings += 1
                return
            # Every happening fires: it is never folded into the next one.
            self._fire_soon(
                reading.device_key,
                reading.channel_key,
                channel,
                value.event_type,
                dict(value.attributes),
            )
            return
        channel.value = value
        self._write_later(reading.device_key, reading.channel_key)

    async def _async_file_reading(self, reading: Reading, blob: BlobData) -> None:
        """Save a received file (in the executor), then fire its channel's event."""
        channel = self._channel_of(reading)
        if channel is None:
            return
        self._fire_pending()  # what came before the file is not kept waiting for its save
        await self._async_save_file(reading, channel, blob)
        if reading.attributes is not None:
            channel.attributes = _own(reading.attributes)
        channel.timestamp = reading.timestamp or dt_util.utcnow()
        self._notify_channel(reading.device_key, reading.channel_key)

    @staticmethod
    def _fire(
        channel: ChannelState, event_type: str, attributes: dict[str, Any]
    ) -> None:
        channel.value = attributes
        channel.event_seq += 1
        channel.last_event = (event_type, attributes)

    async def _async_save_file(
        self, reading: Reading, channel: ChannelState, blob: BlobData
    ) -> None:
        """Save a received file in the executor, then fire the channel's event with where it went.

        A refused or failed save still fires the event, with ``path`` None and the reason.
        """
        attributes: dict[str, Any] = {"size": blob.size, "format": blob.format}
        settings = self.file_settings
        path: str | None = None
        reason: str | None = None
        # The size cap is the source's job (it skips oversized BLOBs before decoding them); here only
        # a server that pushes files although none were asked for (saving disabled) is left.
        if settings is None:
            reason = "saving files is disabled"
            if blob.spooled is not None:
                await self.hass.async_add_executor_job(discard_spooled, blob.spooled)
        else:
            try:
                saved = await self.hass.async_add_executor_job(
                    self._save_file_job, settings, reading, blob
                )
            except FileRefused as err:
                reason = err.reason
            except OSError as err:
                reason = f"could not write the file: {err.strerror or err}"
            else:
                path = str(saved)
        if reason is not None:
            self._warn_file_once(reading, blob, reason)
        attributes["path"] = path
        if reason is not None:
            attributes["reason"] = (
                reason  # only when not saved: a saved file has no reason to show
            )
        self._fire(channel, BLOB_EVENT_RECEIVED, attributes)

    def _save_file_job(
        self, settings: FileStoreSettings, reading: Reading, blob: BlobData
    ) -> Any:
        parts = (self.entry.entry_id, reading.device_key, reading.channel_key)
        if blob.spooled is not None:
            # Written to the store's spool folder as it arrived: moved into place, not copied.
            return save_spooled_file(
                settings.folder,
                parts,
                blob.format,
                blob.spooled,
                keep=settings.keep,
                received=dt_util.utcnow(),
            )
        return save_file(
            settings.folder,
            parts,
            blob.format,
            blob.data,
            keep=settings.keep,
            received=dt_util.utcnow(),
        )

    def _warn_file_once(self, reading: Reading, blob: BlobData, reason: str) -> None:
        key = (reading.device_key, reading.channel_key)
        level = logging.DEBUG if key in self._file_warned else logging.WARNING
        self._file_warned.add(key)
        _LOGGER.log(
            level,
            "%s: file of %s %s not saved (%d bytes): %s",
            self.entry.title,
            reading.device_key,
            reading.channel_key,
            blob.size,
            reason,
        )

    def _message(self, message: Message) -> None:
        self.messages.append(message)
        device_key = message.device_key
        if device_key is None or device_key not in self.devices:
            device_key = HUB_DEVICE_KEY
        device = self.devices[device_key]
        channel = device.channels[MESSAGE_CHANNEL]
        self._fire(
            channel,
            message.level.value,
            {"message": message.text, **message.attributes},
        )
        channel.timestamp = message.timestamp or dt_util.utcnow()
        self._notify_channel(device_key, MESSAGE_CHANNEL)
        last = device.channels.get(LAST_MESSAGE_CHANNEL)
        if last is None:
            # Only devices that speak get the sensor: one that never sends a message has none.
            self._add_channel(device, self._last_message_channel(device_key))
            last = device.channels[LAST_MESSAGE_CHANNEL]
        last.value = message.text
        last.timestamp = channel.timestamp
        self._notify_channel(device_key, LAST_MESSAGE_CHANNEL)

    # ------------------------------------------------------------------ commands

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write a channel; returns once the device confirmed it and its new state is applied."""
        return await self.async_command(
            self.source.command_lane(device_key, channel_key),
            lambda: self.source.async_write(device_key, channel_key, value),
            f"write {device_key} {channel_key} = {excerpt(value)}",
        )

    async def async_press(self, device_key: str, channel_key: str) -> CommandResult:
        """Run an action channel (a button); returns once the device confirmed it."""
        return await self.async_command(
            self.source.command_lane(device_key, channel_key),
            lambda: self.source.async_run_action(device_key, channel_key),
            f"press {device_key} {channel_key}",
        )

    async def async_command(
        self, lane: Hashable, call: CommandCall, description: str
    ) -> CommandResult:
        """Run a command in its lane; commands of other lanes do not wait for it.

        A source error becomes the translated error a user sees (never logged here: the caller
        gets it); once the device confirmed, the events the confirmation carried are applied first.
        """
        try:
            result = await self._commands.send(_Command(lane, call, description)).wait()
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

    # ------------------------------------------------------------------ diagnostics

    def event_queue_stats(self) -> CollectorStats:
        """Return the event queue's figures (depth, rate, wait and service times)."""
        return self._events.stats()

    def diagnostics(self) -> dict[str, Any]:
        """Return the model, the queues' figures and the source's state (no file contents)."""
        return {
            "link_up": self.link_up,
            "ignored_readings": self.ignored_readings,
            "coalesced_writes": self.coalesced_writes,
            "withheld_over_entity_limit": len(self.withheld),
            "devices": {
                # The endpoint's own name is its address: left out, like the host.
                key or "<endpoint>": {
                    "name": device.info.name if key else None,
                    "model": device.info.model,
                    "sw_version": device.info.sw_version,
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
            "removed_devices": sorted(self._removed),
            "recent_messages": [
                {"device": m.device_key, "level": m.level.value, "text": m.text}
                for m in self.messages
            ],
            "event_queue": self.event_queue_stats(),
            "command_queue": self._commands.stats(),
            "source": self.source.diagnostics(),
        }


def _diagnostic_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str | dict):
        return value
    return excerpt(value)
