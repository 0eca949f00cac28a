"""The Powersensor source: a household's plugs and the sensors they relay, as normalized events.

What comes from the vendor's library: the meaning of every field (``translate_raw_message``,
applied by ``mapping.sample_of`` with the same results) and ``VirtualHousehold`` (net house and
solar readings turned into gross grid import/export, solar and home figures). What is owned here,
because the library's aggregated classes fall short (see the reference note): the per-plug UDP
transport (``client``), discovery scans, and device liveness.
Every device is followed by its own silence timer and comes back by itself whenever it is heard
again, however long it was away (the library forgets a device after 5 minutes for good).

Devices are keyed ``plug-<n>``, ``sensor-<n>`` and ``household`` in the events: the MAC is the
device's hardware id (registry identifier, ``connections``), and keys without it keep MACs out of
diagnostics. A sensor hangs off the plug that relays it now; when another plug takes over (the old
one stopped relaying it for 1.5 report periods, or is gone) it is re-linked, never duplicated. A
report relayed by two plugs (same start time) counts once.

Link: up while at least one plug streams; when the last plug falls silent every entity becomes
unavailable.

Cost: a datagram is handled where it arrives, in the socket's read callback, in order: no queue and
no task hop per report (a datagram holds at most ``protocol.MAX_LINES`` reports, so one callback's
work is bounded, and what the loop cannot take yet waits in the socket's buffer, where the kernel
bounds it). The household view's coroutines never wait for anything, so they are run to their end
on the spot. Liveness needs no periodic wake-up: one timer is armed for the moment the next device
would fall silent too long, and moved on when it fires early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
import logging
import random
import time
from typing import Any, Final

from powersensor_local import VirtualHousehold

from ...const import HUB_DEVICE_KEY
from ...events import (
    CONNECTION_MAC,
    ChannelDefined,
    DeviceFound,
    DeviceLost,
    Event,
    EventData,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
    join_key,
)
from ...log_excerpt import excerpt
from ..base import CannotConnect, CommandResult, EventSink, Source, UnknownTarget
from ..warn_once import warn_first
from .client import BACKOFF_MAX, BACKOFF_MIN, SCAN_SECONDS, PlugLink, scan
from .mapping import (
    CHANNELS,
    DEVICE_FOUND,
    DEVICE_LOST,
    HOUSEHOLD_EVENTS,
    HOUSEHOLD_MODEL,
    MANUFACTURER,
    MEASURED,
    PLUG_MODEL,
    RESETTING,
    ROLE_MODELS,
    ROLE_SOLAR,
    UNKNOWN_ROLE,
    ChannelSpec,
    DeviceType,
    Sample,
    UntranslatableReport,
    event_definition,
    household_reading,
    plug_name,
    role_option,
    sample_of,
    sensor_name,
)
from .protocol import EXCERPT_BYTES, PORT, BadLine, Report, normalize_mac

_LOGGER = logging.getLogger(__name__)

DEFAULT_PLUG_TIMEOUT: Final = 15.0
"""Seconds a plug may stay silent before it is lost (plugs report about every second)."""
DEFAULT_SENSOR_TIMEOUT: Final = 120.0
"""Seconds a sensor may stay silent before it is lost (sensors report about every 30 s)."""
START_TIMEOUT: Final = 5.0
"""Seconds setup waits for the first plug to stream (a scan takes 2 s of that)."""
LIVENESS_SLACK: Final = 0.05
"""Seconds after a device's deadline that the liveness timer fires (one check covers it surely)."""
LOST_SCAN_MIN: Final = 10.0
LOST_SCAN_MAX: Final = 300.0
"""While a known plug is missing, scans look for it (it may have a new address) with back-off."""
RELINK_PERIODS: Final = 1.5
HOUSEHOLD_KEY: Final = "household"
HOUSEHOLD_ID: Final = "powersensor_household"
"""The household view's hardware id: one household per Home Assistant (the entry's unique id)."""
HOUSEHOLD_NAME: Final = "Powersensor household"

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
type StateCallback = Callable[[dict[str, str], bool], None]
"""Told the plugs' addresses (MAC -> IP) and whether solar was seen, whenever they change."""
type Clock = Callable[[], float]


def loop_task_factory(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Create the task on the running loop (used when no factory is given)."""
    return asyncio.get_running_loop().create_task(coro, name=name)


@dataclass(frozen=True, slots=True)
class PowersensorSettings:
    """Where the plugs are and how long silence may last."""

    broadcast_addresses: tuple[str, ...] = ()
    plug_hosts: tuple[str, ...] = ()
    """Plug addresses the user gave (followed even when no scan finds them)."""
    known_plugs: Mapping[str, str] = field(default_factory=dict)
    """MAC -> IP of the plugs found before (by a scan or an announcement)."""
    plug_timeout: float = DEFAULT_PLUG_TIMEOUT
    sensor_timeout: float = DEFAULT_SENSOR_TIMEOUT
    with_solar: bool = False
    """Solar was seen before: the household view waits for it rather than guess without it."""
    port: int = PORT
    start_timeout: float = START_TIMEOUT
    scan_seconds: float = SCAN_SECONDS
    backoff_min: float = BACKOFF_MIN
    backoff_max: float = BACKOFF_MAX
    lost_scan_min: float = LOST_SCAN_MIN


@dataclass(slots=True)
class _Device:
    """What the source knows of one plug, sensor or the household view."""

    key: str
    type: DeviceType
    mac: str | None
    role: str = UNKNOWN_ROLE
    wire_role: str | None = None
    """The role as the last report spelt it (``role`` is its option name)."""
    present: bool = False
    last_heard: float = 0.0
    via: str | None = None
    """The MAC of the plug relaying a sensor now."""
    relayed_at: dict[str, float] = field(default_factory=dict)
    """When each plug last relayed one of this sensor's reports."""
    last_starttime: float | None = None
    duration: float | None = None
    defined: dict[str, ChannelDefined] = field(default_factory=dict)
    uncalibrated: bool = False
    reports: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class _Counters:
    bad_lines: int = 0
    untranslatable: int = 0
    ignored_reports: int = 0
    scans: int = 0
    relinks: int = 0
    liveness_checks: int = 0


class PowersensorSource(Source):
    """Every plug of a household, the sensors they relay, and the household view."""

    def __init__(
        self,
        settings: PowersensorSettings,
        *,
        on_state: StateCallback | None = None,
        task_factory: TaskFactory | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Prepare the source; nothing is sent before async_start."""
        self._settings = settings
        self._on_state = on_state
        self._task_factory = task_factory or loop_task_factory
        self._clock = clock
        self._sink: EventSink | None = None
        self._links: dict[str, PlugLink] = {}
        self._devices: dict[str, _Device] = {}
        self._by_mac: dict[str, _Device] = {}
        self._known_plugs: dict[str, str] = dict(settings.known_plugs)
        self._with_solar = settings.with_solar
        self._muted: set[str] = set()
        self._muted_channels: dict[str, set[str]] = {}
        self._counters = _Counters()
        self._warned_hosts: set[str] = set()
        self._link_up = False
        self._first_heard = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._scan_lock = asyncio.Lock()
        self._liveness: asyncio.TimerHandle | None = None
        self._liveness_at = 0.0
        self._lost_scan: asyncio.TimerHandle | None = None
        self._lost_scan_delay = settings.lost_scan_min
        self._numbers: dict[DeviceType, int] = {}
        self._stopped = False
        self._household = self._new_household()
        self._household_device = _Device(
            HOUSEHOLD_KEY, DeviceType.HOUSEHOLD, HOUSEHOLD_ID
        )

    # ------------------------------------------------------------------ Source API

    async def async_start(self, sink: EventSink) -> None:
        """Subscribe to every known plug, scan for more; CannotConnect if none streams in time."""
        self._sink = sink
        self._stopped = False
        for key in (DEVICE_FOUND, DEVICE_LOST):
            self._emit(event_definition(HUB_DEVICE_KEY, key))
        hosts: dict[str, str | None] = {
            ip: mac for mac, ip in self._known_plugs.items()
        }
        for host in self._settings.plug_hosts:
            hosts.setdefault(host, None)
        try:
            await self._start_links(hosts)
        except BaseException:
            # A start that fails half-way (cancelled, no plug, a bug) leaves no socket, task or timer.
            await self.async_stop()
            raise
        self._update_lost_scan()

    async def _start_links(self, hosts: Mapping[str, str | None]) -> None:
        """Open a link to each host, scan if asked; return once a plug streams."""
        for host, mac in hosts.items():
            await self._open_link(host, mac)
        if self._settings.broadcast_addresses:
            self._spawn(self._scan_and_place(), "Powersensor discovery")
        if not hosts and not self._settings.broadcast_addresses:
            raise CannotConnect("No plug address and no broadcast address to scan")
        try:
            async with asyncio.timeout(self._settings.start_timeout):
                await self._first_heard.wait()
        except TimeoutError as err:
            raise CannotConnect(
                f"No Powersensor plug answered within {self._settings.start_timeout:g} s"
            ) from err

    async def async_stop(self) -> None:
        """Unsubscribe from every plug and close every socket; leaves no task or timer."""
        self._stopped = True
        for timer in (self._liveness, self._lost_scan):
            if timer is not None:
                timer.cancel()
        self._liveness = self._lost_scan = None
        tasks = list(self._tasks)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links))
        self._sink = None

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Nothing of a Powersensor household can be written."""
        raise UnknownTarget(
            f"{device_key} has nothing to write", device=device_key, channel=channel_key
        )

    async def async_rescan(self) -> int:
        """Scan the broadcast addresses now; return how many plugs answered."""
        return len(await self._scan_and_place())

    def plug_announced(self, mac: str, ip: str) -> None:
        """Follow a plug that announced itself (zeroconf) at ``ip``: subscribe there at once."""
        mac_key = normalize_mac(mac)
        if mac_key is None or self._stopped or self._sink is None:
            return
        self._spawn(self._place_plug(mac_key, ip, persist=True), "Powersensor plug")

    def set_device_enabled(self, hardware_id: str, enabled: bool) -> None:
        """Stop (or resume) delivering a device's readings: the library's (un)subscribe(mac)."""
        if enabled:
            self._muted.discard(hardware_id)
        else:
            self._muted.add(hardware_id)

    def set_channel_enabled(
        self, hardware_id: str, channel_key: str, enabled: bool
    ) -> None:
        """Stop (or resume) delivering one channel's readings (its entity is disabled)."""
        muted = self._muted_channels.setdefault(hardware_id, set())
        if enabled:
            muted.discard(channel_key)
        else:
            muted.add(channel_key)

    def diagnostics(self) -> dict[str, Any]:
        """Return the links, the devices and the counters (addresses and MACs under redacted keys)."""
        now = self._clock()
        return {
            "link_up": self._link_up,
            "settings": {
                "broadcast_addresses": list(self._settings.broadcast_addresses),
                "plug_hosts": list(self._settings.plug_hosts),
                "plug_timeout": self._settings.plug_timeout,
                "sensor_timeout": self._settings.sensor_timeout,
                "with_solar": self._with_solar,
            },
            "plugs": dict(self._known_plugs),
            "links": [
                {"host": link.host, "mac": link.mac, **link.stats()}
                for link in self._links.values()
            ],
            "devices": {
                device.key: {
                    "type": device.type.value,
                    "mac": device.mac,
                    "role": device.role,
                    "present": device.present,
                    "via": self._key_of(device.via),
                    "seconds_since_heard": round(now - device.last_heard, 1)
                    if device.last_heard
                    else None,
                    "reports": device.reports,
                    "duplicates": device.duplicates,
                    "uncalibrated": device.uncalibrated,
                    "muted": device.mac in self._muted,
                    "muted_channels": sorted(
                        self._muted_channels.get(device.mac or "", ())
                    ),
                    "channels": sorted(device.defined),
                }
                for device in (*self._devices.values(), self._household_device)
            },
            "counters": {
                name: getattr(self._counters, name) for name in _Counters.__slots__
            },
        }

    # ------------------------------------------------------------------ links

    async def _open_link(self, host: str, mac: str | None) -> PlugLink:
        link = self._new_link(host, mac)
        await link.open()
        return link

    def _new_link(self, host: str, mac: str | None) -> PlugLink:
        """Create and register a link (registered before any await: see _place_plug)."""
        link = PlugLink(
            host,
            port=self._settings.port,
            mac=mac,
            on_reports=self._on_reports,
            on_bad_line=self._on_bad_line,
            backoff_min=self._settings.backoff_min,
            backoff_max=self._settings.backoff_max,
            clock=self._clock,
        )
        self._links[host] = link
        return link

    def _on_reports(self, link: PlugLink, reports: list[Report]) -> None:
        """Handle a datagram's reports now, in order (a bug in one costs only that one)."""
        self._first_heard.set()
        for report in reports:
            try:
                self._handle_report(link, report)
            except Exception:
                _LOGGER.exception(
                    "Error while handling a Powersensor report: %s",
                    excerpt(report.message),
                )

    def _on_bad_line(self, link: PlugLink, line: BadLine) -> None:
        self._counters.bad_lines += 1
        self._report_bad(link, line.reason, line.excerpt)

    def _report_bad(self, link: PlugLink, reason: str, raw: bytes) -> None:
        """Log a line that was skipped: a warning the first time per plug, debug afterwards."""
        warn_first(
            _LOGGER,
            link.host in self._warned_hosts,
            "Skipped a line from the Powersensor plug %s (%s): %r",
            link.endpoint,
            reason,
            raw[:EXCERPT_BYTES].decode("utf-8", "replace"),
            consequence="the rest of the stream is used",
            later="further bad lines from this plug are only logged at debug level",
        )
        self._warned_hosts.add(link.host)

    async def _scan_and_place(self) -> dict[str, str]:
        """Scan the broadcast addresses; follow every plug that answers where it answered from."""
        async with self._scan_lock:
            self._counters.scans += 1
            try:
                found = await scan(
                    self._settings.broadcast_addresses,
                    port=self._settings.port,
                    seconds=self._settings.scan_seconds,
                )
            except OSError as err:
                _LOGGER.warning("Powersensor discovery failed: %s", err)
                return {}
            for mac, ip in found.items():
                await self._place_plug(mac, ip, persist=False)
            self._persist()
            return found

    async def _place_plug(self, mac: str, ip: str, *, persist: bool) -> None:
        """Follow plug ``mac`` at ``ip``: subscribe now, moving it from an old address if it had one."""
        if self._stopped:
            return
        link = self._links.get(ip)
        if link is None:
            # The plug has a new address (DHCP): its old socket goes, nothing else changes. The new
            # link is registered before the first await, so a second announcement or scan arriving
            # meanwhile finds it instead of opening another one.
            old_links = [
                other
                for other in self._links.values()
                if other.mac == mac and other.host not in self._settings.plug_hosts
            ]
            for old in old_links:
                del self._links[old.host]
            link = self._new_link(ip, mac)
            for old in old_links:
                await old.close()
            await (
                link.open()
            )  # a no-op if the source was stopped meanwhile (stop closed it)
        else:
            link.mac = mac
            link.nudge()
        self._known_plugs[mac] = ip
        if persist:
            self._persist()

    def _persist(self) -> None:
        if self._on_state is not None and not self._stopped:
            self._on_state(dict(self._known_plugs), self._with_solar)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        async def run() -> None:
            await coro

        task = self._task_factory(run(), name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reports

    def _handle_report(self, link: PlugLink, report: Report) -> None:
        raw_mac = report.message.get("mac")
        # What nobody shows (disabled entities) need not be computed at all.
        skip = (
            self._muted_channels.get(raw_mac.lower(), ())
            if isinstance(raw_mac, str) and self._muted_channels
            else ()
        )
        try:
            sample = sample_of(report.message, link.mac or "", skip)
        except UntranslatableReport as err:
            self._counters.untranslatable += 1
            self._report_bad(link, str(err), _raw(report))
            return
        # A known device's MAC is already in its normal form: no need to normalize it again.
        mac = sample.mac if sample.mac in self._by_mac else normalize_mac(sample.mac)
        if sample.device not in (DeviceType.PLUG, DeviceType.SENSOR):
            self._counters.ignored_reports += 1  # auxiliary BLE devices and the like
            return
        if mac is None:
            self._counters.untranslatable += 1
            self._report_bad(link, "no MAC", _raw(report))
            return
        if sample.device == DeviceType.PLUG:
            self._plug_report(link, mac, sample)
        else:
            self._sensor_report(link, mac, sample)

    def _plug_report(self, link: PlugLink, mac: str, sample: Sample) -> None:
        if link.mac != mac:
            # A plug address the user gave learns its plug; an address taken over by another
            # plug follows the new one (the old plug falls silent and is lost in due course).
            link.mac = mac
            self._known_plugs[mac] = link.host
            self._persist()
        plug = self._device(mac, DeviceType.PLUG)
        if not self._link_up:
            self._link_up = True
            self._emit(LinkUp())
        self._heard(plug, sample)

    def _sensor_report(self, link: PlugLink, mac: str, sample: Sample) -> None:
        sensor = self._device(mac, DeviceType.SENSOR)
        now = self._clock()
        relay = link.mac
        if relay is not None:
            sensor.relayed_at[relay] = now
        if sample.starttime is not None and sample.starttime == sensor.last_starttime:
            # The same report through a second plug: it is alive, the values are known already.
            sensor.duplicates += 1
            sensor.last_heard = now
            return
        sensor.last_starttime = sample.starttime
        sensor.duration = sample.duration
        self._choose_relay(sensor, relay, now)
        self._heard(sensor, sample)
        if sample.role == ROLE_SOLAR and not self._with_solar:
            self._with_solar = True
            self._persist()
        if sample.household and HOUSEHOLD_ID not in self._muted:
            household = sample.household
            if (event := household.get("average_power")) is not None:
                _run_now(self._household.process_average_power_event(event))
            if (event := household.get("summation_energy")) is not None:
                _run_now(self._household.process_summation_event(event))

    def _choose_relay(self, sensor: _Device, relay: str | None, now: float) -> None:
        """Re-link a sensor to ``relay`` once its current plug stopped relaying it (or is gone)."""
        current = sensor.via
        if relay is None or relay == current:
            return
        if current is not None:
            plug = self._by_mac.get(current)
            hold = RELINK_PERIODS * max(sensor.duration or 1.0, 1.0)
            if (
                plug is not None
                and plug.present
                and now - sensor.relayed_at.get(current, float("-inf")) <= hold
            ):
                return  # heard through both: the current plug keeps it
            self._counters.relinks += 1
        sensor.via = relay
        if sensor.present:
            self._emit(self._device_info(sensor))

    def _heard(self, device: _Device, sample: Sample) -> None:
        """Take a new report of ``device``: (re)announce it if needed, then its values."""
        device.last_heard = self._clock()
        device.reports += 1
        if sample.role is not None and sample.role != device.wire_role:
            device.wire_role = sample.role
            role = role_option(sample.role)
            if role != device.role:
                device.role = role
                if device.present:
                    self._emit(self._device_info(device))
                    self._arm_liveness(device.last_heard)  # the household depends on it
        if not device.present:
            self._found(device)
            self._arm_liveness(device.last_heard + self._timeout_of(device))
        if device.mac in self._muted:
            return
        self._emit_sample(device, sample)

    def _emit_sample(self, device: _Device, sample: Sample) -> None:
        """Define what is new (or whose meter was reset), then emit every value not muted."""
        muted = self._muted_channels.get(device.mac or "", ())
        resetting = RESETTING[device.type]
        defined = device.defined
        resets = sample.resets
        device_key = device.key
        for key, value in sample.values.items():
            known = defined.get(key)
            if known is None or (
                key in resetting and known.last_reset != resets.get(key)
            ):
                spec = CHANNELS[device.type].get(key)
                if spec is None:
                    continue  # not a channel of this kind of device
                self._define(device, spec, resets.get(key))
            if key not in muted and (sink := self._sink) is not None:
                try:
                    # The catalogue's names are plain (mapping checks join_key(name) == name).
                    sink(Reading(device_key, key, value))
                except Exception:
                    _LOGGER.exception("Event sink failed on a reading of %s", key)
        withheld = sample.uncalibrated or sample.invalid
        for key in MEASURED:
            if withheld and key in device.defined and key not in muted:
                self._reading(device, key, None)
        if sample.uncalibrated and not device.uncalibrated:
            self._emit(
                Message(
                    device.key,
                    "The sensor is not calibrated yet (readings in unit U): its power stays "
                    "unknown until it is",
                    MessageLevel.WARNING,
                )
            )
        if not sample.invalid:
            device.uncalibrated = sample.uncalibrated

    def _define(
        self, device: _Device, spec: ChannelSpec, reset: datetime | None
    ) -> None:
        """Define a channel the first time it has a value, and again when its meter was reset."""
        known = device.defined.get(spec.key)
        if known is not None and (not spec.resets or known.last_reset == reset):
            return
        definition = spec.definition(device.key, reset)
        device.defined[spec.key] = definition
        self._emit(definition)

    def _reading(self, device: _Device, key: str, value: object) -> None:
        # The catalogue's names are plain (mapping checks join_key(name) == name): no escaping.
        self._emit(Reading(device.key, key, value))

    async def _on_household(self, event_name: str, payload: dict[str, Any]) -> None:
        """Show a VirtualHousehold event: the household's gross figures (never waits)."""
        reading = household_reading(event_name, payload)
        if reading is None or self._stopped:
            return
        household = self._household_device
        household.last_heard = self._clock()
        if not household.present:
            self._found(household)
        key, value = reading
        self._define(household, CHANNELS[DeviceType.HOUSEHOLD][key], None)
        if key not in self._muted_channels.get(HOUSEHOLD_ID, ()):
            self._reading(household, key, value)

    def _new_household(self) -> VirtualHousehold:
        household = VirtualHousehold(self._settings.with_solar, _LOGGER)
        for event_name in HOUSEHOLD_EVENTS:
            household.subscribe(event_name, self._on_household)
        return household

    # ------------------------------------------------------------------ devices

    def _device(self, mac: str, device_type: DeviceType) -> _Device:
        device = self._by_mac.get(mac)
        if device is None:
            number = self._numbers.get(device_type, 0) + 1
            self._numbers[device_type] = number
            device = _Device(f"{device_type.value}-{number}", device_type, mac)
            self._by_mac[mac] = device
            self._devices[device.key] = device
        return device

    def _key_of(self, mac: str | None) -> str | None:
        device = self._by_mac.get(mac) if mac is not None else None
        return device.key if device is not None else None

    def _device_info(self, device: _Device) -> DeviceFound:
        if device.type is DeviceType.HOUSEHOLD:
            return DeviceFound(
                device.key,
                HOUSEHOLD_NAME,
                manufacturer=MANUFACTURER,
                model=HOUSEHOLD_MODEL,
                hardware_id=HOUSEHOLD_ID,
            )
        assert device.mac is not None
        connections = ((CONNECTION_MAC, device.mac),)
        if device.type is DeviceType.PLUG:
            return DeviceFound(
                device.key,
                plug_name(device.mac),
                manufacturer=MANUFACTURER,
                model=PLUG_MODEL,
                hardware_id=device.mac,
                connections=connections,
            )
        return DeviceFound(
            device.key,
            sensor_name(device.mac, device.role),
            manufacturer=MANUFACTURER,
            model=ROLE_MODELS.get(device.role, ROLE_MODELS[UNKNOWN_ROLE]),
            hardware_id=device.mac,
            connections=connections,
            via_device_key=self._key_of(device.via),
        )

    def _found(self, device: _Device) -> None:
        """Announce a device that appeared or came back, with every channel it had."""
        device.present = True
        self._emit(self._device_info(device))
        for definition in device.defined.values():
            self._emit(
                definition
            )  # a device removed while it was gone gets its channels back
        if device.type is not DeviceType.HOUSEHOLD:
            self._fire(DEVICE_FOUND, device)

    def _lose(self, device: _Device, reason: str) -> None:
        device.present = False
        self._emit(DeviceLost(device.key, reason))
        if device.type is not DeviceType.HOUSEHOLD:
            self._fire(DEVICE_LOST, device)

    def _fire(self, event_type: str, device: _Device) -> None:
        attributes: dict[str, object] = {
            "mac": device.mac,
            "device_type": device.type.value,
            "role": device.role if device.type is DeviceType.SENSOR else None,
            "name": self._device_info(device).name,
        }
        self._emit(
            Reading(
                HUB_DEVICE_KEY, join_key(event_type), EventData(event_type, attributes)
            )
        )

    # ------------------------------------------------------------------ liveness

    def _timeout_of(self, device: _Device) -> float:
        if device.type is DeviceType.PLUG:
            return self._settings.plug_timeout
        return self._settings.sensor_timeout

    def _arm_liveness(self, deadline: float) -> None:
        """Make sure a check runs soon after ``deadline`` (clock seconds); never later than one armed."""
        if self._stopped:
            return
        timer = self._liveness
        if timer is not None:
            if self._liveness_at <= deadline:
                return
            timer.cancel()
        self._liveness_at = deadline
        delay = max(0.0, deadline - self._clock()) + LIVENESS_SLACK
        self._liveness = asyncio.get_running_loop().call_later(
            delay, self._check_liveness
        )

    def _check_liveness(self) -> None:
        """Lose what has been silent too long; scan for missing plugs; the link goes with the last plug.

        Then arm the next check for the earliest moment a present device could be too silent.
        """
        self._liveness = None
        self._counters.liveness_checks += 1
        now = self._clock()
        settings = self._settings
        for plug in self._present(DeviceType.PLUG):
            silent = now - plug.last_heard
            if silent > settings.plug_timeout:
                self._lose(plug, f"silent for {silent:.0f} s")
                self._lose_relayed(plug, now)
        for sensor in self._present(DeviceType.SENSOR):
            silent = now - sensor.last_heard
            if silent > settings.sensor_timeout:
                self._lose(sensor, f"silent for {silent:.0f} s")
        self._check_household()
        if self._link_up and not any(self._present(DeviceType.PLUG)):
            self._link_up = False
            self._emit(
                LinkDown(
                    f"no Powersensor plug answered for {settings.plug_timeout:g} s"
                )
            )
        self._update_lost_scan()
        # The household goes with its sensors: checked with them (no deadline of its own).
        deadlines = [
            device.last_heard + self._timeout_of(device)
            for device in self._devices.values()
            if device.present
        ]
        if deadlines:
            self._arm_liveness(min(deadlines))

    def _update_lost_scan(self) -> None:
        """While a known plug is missing (or no plug streams), scan for it now and then, backing off."""
        if self._stopped:
            return
        missing = (
            any(
                not device.present
                for device in self._devices.values()
                if device.type is DeviceType.PLUG
            )
            or not self._link_up
        )
        if not missing:
            # Everything is back: the next loss starts scanning soon again.
            self._lost_scan_delay = self._settings.lost_scan_min
            if self._lost_scan is not None:
                self._lost_scan.cancel()
                self._lost_scan = None
        elif self._lost_scan is None and self._settings.broadcast_addresses:
            delay = self._lost_scan_delay * random.uniform(0.8, 1.2)
            self._lost_scan = asyncio.get_running_loop().call_later(
                delay, self._scan_for_missing
            )

    def _lose_relayed(self, plug: _Device, now: float) -> None:
        """Move a lost plug's sensors to another plug that relays them too, or lose them with it."""
        for sensor in self._present(DeviceType.SENSOR):
            if sensor.via != plug.mac:
                continue
            hold = RELINK_PERIODS * max(sensor.duration or 1.0, 1.0)
            others = [
                mac
                for mac, at in sensor.relayed_at.items()
                if mac != plug.mac
                and now - at <= hold
                and (other := self._by_mac.get(mac)) is not None
                and other.present
            ]
            if others:
                self._counters.relinks += 1
                sensor.via = others[0]
                self._emit(self._device_info(sensor))
            else:
                self._lose(sensor, f"its plug {plug.key} is gone")

    def _check_household(self) -> None:
        household = self._household_device
        if not household.present:
            return
        roles = {sensor.role for sensor in self._present(DeviceType.SENSOR)}
        if "house_net" not in roles:
            self._lose(household, "the house mains sensor is gone")
        elif self._with_solar and "solar" not in roles:
            self._lose(household, "the solar sensor is gone")

    def _present(self, device_type: DeviceType) -> list[_Device]:
        return [
            device
            for device in self._devices.values()
            if device.type is device_type and device.present
        ]

    def _scan_for_missing(self) -> None:
        self._lost_scan = None
        if self._stopped:
            return
        self._lost_scan_delay = min(self._lost_scan_delay * 2, LOST_SCAN_MAX)
        self._spawn(self._scan_then_check(), "Powersensor discovery")

    async def _scan_then_check(self) -> None:
        await self._scan_and_place()
        self._update_lost_scan()  # still missing: the next scan, later

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:
            _LOGGER.exception("Event sink failed on %s", excerpt(event))


def _raw(report: Report) -> bytes:
    return repr(report.message).encode("utf-8", "replace")[:EXCERPT_BYTES]


def _run_now(step: Coroutine[Any, Any, None]) -> None:
    """Run one of the household view's coroutines to its end, now.

    ``VirtualHousehold`` is async only because its emitter awaits its subscribers; ours never wait
    (``_on_household`` only emits events), so each coroutine finishes on its first step. Running it
    here keeps a report's household figures in the same callback as the report, without a task. A
    step that did wait (a later library version) is closed and reported, never left pending.
    """
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError(
        "the household view waited for something; its update was dropped"
    )
