"""The Gentec-EO meter as a source: identify it, acquire every pulse, keep exact statistics.

This is what the hololinked seed's ``GentecMaestroEnergyMeter.loop()`` does, inside Home Assistant:
each new data point becomes the reading, a pulse event and the statistics. Two ways to acquire:

* ``stream`` (default): the meter pushes one line per pulse with ``*CAU`` (up to 200 Hz). Every pulse
  arrives, and only once: ~14 bytes a pulse, nothing while the laser is off except a liveness probe
  after 0.5 s of silence.
* ``poll``: the seed's loop, ``*NVU`` then ``*CVU`` every measurement gap. Pulses closer together than
  the gap plus two round trips are lost (the meter keeps only the newest), and it costs ~28 bytes a
  gap even when nothing happens.

Statistics see every value before anything is paced; state writes of the reading, the statistics and
the pulse event are paced together (``WritePacer``), so a 200 Hz laser does not flood Home Assistant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
import contextlib
from datetime import UTC, datetime
from enum import StrEnum
import logging
import math
import random
import time
from typing import Any, Final

from ...events import EventData, LinkDown, LinkUp, Reading
from ...statistics import RunningStatistics
from ..base import (
    CannotConnect,
    CommandRejected,
    CommandResult,
    CommandTimeout,
    EventSink,
    InvalidValue,
    NotConnected,
    Source,
    SourceError,
    UnknownTarget,
)
from ..pacing import WritePacer
from . import mapping
from .client import REPLY_TIMEOUT, MaestroConnection
from .mapping import METER
from .protocol import (
    CAU,
    CSU,
    CVU,
    DVS,
    GAS,
    GCR,
    GMD,
    GTL,
    GWL,
    MODE_NO_DETECTOR,
    NVU,
    STS,
    TRIGGER_MAX,
    TRIGGER_MIN,
    VER,
    DetectorStatus,
    Labelled,
    NewData,
    Reply,
    StatusWord,
    ValidRange,
    Value,
    Version,
    labelled_number,
    parse_status,
    set_autoscale,
    set_range,
    set_trigger_level,
    set_wavelength,
)

_LOGGER = logging.getLogger(__name__)

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class AcquisitionMode(StrEnum):
    """How pulses are fetched from the meter."""

    STREAM = "stream"
    POLL = "poll"


DEFAULT_MODE: Final = AcquisitionMode.STREAM
DEFAULT_GAP: Final = 0.1
"""The seed's ``measurement_gap``."""
DEFAULT_MAX_WRITES: Final = 10.0
"""State writes per second per paced entity: every pulse of a laser up to 10 Hz is written."""
SILENCE: Final = 0.5
"""Streaming: seconds without a line before the meter is asked whether it is still there."""
MISSES: Final = 2
"""Consecutive unanswered commands that mean the meter is gone."""
MODE_CHECK: Final = 5.0
"""Seconds between two checks of the display mode (a head swapped, a mode changed), polling or
streaming (a streaming meter's silence is probed every SILENCE with the shorter ``*VER``)."""
BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 60.0
JITTER: Final = 0.2
TRIGGER_RESOLUTION: Final = 0.051
"""The meter keeps ``*STL``'s four characters: 0.01 % below 10 %, 0.1 % above."""
LANE: Final = ("gentec", "port")


class _Lost(Exception):
    """The meter stopped answering or the port went away."""


def _accept_labelled(*labels: str) -> Callable[[Reply], bool | None]:
    """Accept ``Label: value`` with one of ``labels``, or a bare number (some firmware)."""

    def accept(reply: Reply) -> bool | None:
        if isinstance(reply, Labelled):
            return True if reply.label in labels else None
        return True if isinstance(reply, Value) else None

    return accept


def _accept_version(reply: Reply) -> bool | None:
    return True if isinstance(reply, Version) else None


def _accept_new_data(reply: Reply) -> bool | None:
    return True if isinstance(reply, NewData) else None


def _accept_value(reply: Reply) -> bool | None:
    return True if isinstance(reply, Value) else None


def _accept_status(reply: Reply) -> bool | None:
    if isinstance(reply, StatusWord):
        return reply.end
    return None


def _accept_ranges(reply: Reply) -> bool | None:
    # *DVS has no end of its own: the *GCR sent after its first line ends it.
    if isinstance(reply, ValidRange):
        return False
    if isinstance(reply, Labelled) and reply.label == "range":
        return True
    return None


class Identity:
    """What the meter told at connect: version, head, mode, ranges and settings."""

    def __init__(
        self,
        version: Version,
        status: DetectorStatus,
        mode: int,
        ranges: tuple[int, ...],
        range_index: int | None,
        autoscale: bool,
        wavelength: int | None,
        trigger_level: float | None,
    ) -> None:
        """Keep the answers."""
        self.version = version
        self.status = status
        self.mode = mode
        self.ranges = ranges
        self.range_index = range_index
        self.autoscale = autoscale
        self.wavelength = wavelength
        self.trigger_level = trigger_level


async def identify(connection: MaestroConnection) -> Identity:
    """Ask the meter who it is; CommandTimeout when it does not answer like a Gentec meter."""
    await connection.send(CSU)  # it may still stream from an earlier session
    version = (await connection.query(VER, _accept_version))[-1]
    assert isinstance(version, Version)
    status_words = await connection.query(STS, _accept_status)
    status = parse_status([w for w in status_words if isinstance(w, StatusWord)])
    mode = await _query_int(connection, GMD, "mode")
    ranges: tuple[int, ...] = ()
    range_index: int | None = None
    try:
        lines = await connection.query(DVS, _accept_ranges, then=GCR)
    except CommandTimeout:
        lines = []  # no head, or a firmware without *DVS: fall back to *STS's scales
    ranges = tuple(sorted({r.index for r in lines if isinstance(r, ValidRange)}))
    if lines and isinstance(lines[-1], Labelled):
        number = labelled_number(lines[-1])
        range_index = None if number is None else int(number)
    if not ranges and status.min_scale is not None and status.max_scale is not None:
        ranges = tuple(range(status.min_scale, status.max_scale + 1))
    if range_index is None:
        range_index = status.current_scale
    autoscale = await _query_int(connection, GAS, "autoscale") == 1
    wavelength = await _query_int(connection, GWL, "pwc")
    trigger = await _query_number(connection, GTL, "trigger level")
    return Identity(
        version, status, mode, ranges, range_index, autoscale, wavelength, trigger
    )


async def _query_number(
    connection: MaestroConnection, command: bytes, label: str
) -> float | None:
    replies = await connection.query(command, _accept_labelled(label))
    return labelled_number(replies[-1])


async def _query_int(connection: MaestroConnection, command: bytes, label: str) -> int:
    number = await _query_number(connection, command, label)
    if number is None:
        raise CommandRejected(f"{command.decode()} gave no number")
    return int(number)


class GentecSource(Source):
    """A Gentec-EO MAESTRO / INTEGRA on a serial port (path or pyserial URL)."""

    def __init__(
        self,
        port: str,
        *,
        mode: AcquisitionMode = DEFAULT_MODE,
        gap: float = DEFAULT_GAP,
        max_writes: float = DEFAULT_MAX_WRITES,
        mode_check: float = MODE_CHECK,
        task_factory: TaskFactory | None = None,
        reply_timeout: float = REPLY_TIMEOUT,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        """Describe the acquisition; nothing opens before async_start."""
        self.port = port
        self.mode = mode
        self.gap = gap
        self.max_writes = max_writes
        self.mode_check = mode_check
        self._task_factory = task_factory
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._connection = MaestroConnection(
            port,
            on_value=self._stream_value,
            on_lost=self._port_lost,
            reply_timeout=reply_timeout,
        )
        self._sink: EventSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._stopping = asyncio.Event()
        self._link_up = False
        self.identity: Identity | None = None
        self.statistics = RunningStatistics()
        self.statistics_on = True
        self._pacer: WritePacer | None = None
        self._latest: float | None = None
        self._latest_at: datetime | None = None
        self._unwritten = 0
        self.pulses = 0
        self.over_range = 0
        self.connects = 0
        self._last_mode_check = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def async_start(self, sink: EventSink) -> None:
        """Open the port and identify the meter (CannotConnect otherwise), then acquire."""
        self._sink = sink
        self._pacer = WritePacer(self.max_writes, self._write_pulses)
        await self._connect()
        coro = self._run()
        name = f"Gentec-EO meter on {self.port}"
        self._task = (
            self._task_factory(coro, name)
            if self._task_factory is not None
            else asyncio.get_running_loop().create_task(coro, name=name)
        )

    async def async_stop(self) -> None:
        """Stop acquiring, stop the meter's stream and close the port; leaves no task or timer."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pacer is not None:
            self._pacer.cancel()
        if self._connection.is_open and self._connection.streaming:
            with contextlib.suppress(SourceError):
                await self._connection.send(CSU)
        await self._connection.close()

    async def _connect(self) -> None:
        """Open the port and identify the meter; CannotConnect when either fails."""
        self._lost.clear()
        await self._connection.open()
        try:
            identity = await identify(self._connection)
        except SourceError as err:
            await self._connection.close()
            raise CannotConnect(
                f"{self.port} does not answer like a Gentec-EO meter: {err.message}",
                port=self.port,
            ) from err
        self.connects += 1
        self._announce(identity)

    def _announce(self, identity: Identity) -> None:
        """Tell the hub about the meter and its channels, then that the link is up."""
        previous = self.identity
        self.identity = identity
        if previous is not None and previous.mode != identity.mode:
            self.statistics.reset()
        self._emit(mapping.meter_device(identity.version, identity.status))
        for definition in (
            mapping.reading_channel(identity.mode, self._latest),
            *mapping.statistic_channels(identity.mode),
            mapping.pulse_channel(),
            *mapping.control_channels(
                statistics_on=self.statistics_on,
                gap=self.gap if self.mode is AcquisitionMode.POLL else None,
                status=identity.status,
                wavelength=identity.wavelength,
                trigger_level=identity.trigger_level,
            ),
            mapping.range_channel(identity.ranges, identity.mode, self._range_value()),
            *mapping.diagnostic_channels(
                identity.version, identity.status, identity.mode
            ),
        ):
            self._emit(definition)
        self._emit_statistics(datetime.now(UTC))
        self._link_up = True
        self._emit(LinkUp())

    async def _run(self) -> None:
        """Acquire until the meter is lost, then reconnect with back-off; forever until stopped."""
        delay = self._backoff_min
        while True:
            reason = await self._session()
            await self._connection.close()
            if self._link_up:
                self._link_up = False
                self._emit(LinkDown(reason))
            while True:
                await asyncio.sleep(delay * random.uniform(1 - JITTER, 1 + JITTER))
                try:
                    await self._connect()
                except CannotConnect as err:
                    _LOGGER.debug("Reconnecting to %s failed: %s", self.port, err)
                    delay = min(delay * 2, self._backoff_max)
                else:
                    delay = self._backoff_min
                    break

    async def _session(self) -> str:
        """Acquire on the open port; return why it ended."""
        try:
            if self.mode is AcquisitionMode.STREAM:
                await self._stream()
            else:
                await self._poll()
        except _Lost as err:
            return str(err)
        except NotConnected:
            return self._lost_reason or "port closed"
        except Exception as err:
            # A bug must not end acquisition for good: log it and start again like after a loss.
            _LOGGER.exception("Unexpected error while reading %s", self.port)
            return f"internal error: {err}"
        return "stopped"  # pragma: no cover - both loops only end by raising

    async def _wait_lost(self, timeout: float) -> None:
        """Wait ``timeout`` seconds; raise _Lost at once if the port goes meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._lost.wait()
        if self._lost.is_set():
            raise _Lost(self._lost_reason or "port closed")

    async def _stream(self) -> None:
        connection = self._connection
        connection.streaming = True
        await connection.send(CAU)
        while True:
            quiet = time.monotonic() - connection.last_line
            if quiet < SILENCE:
                await self._wait_lost(SILENCE - quiet)
                continue
            # Silence is normal (laser off), but a meter that is gone must be noticed: one short
            # question per silence; the display mode only every MODE_CHECK, as when polling.
            await self._with_retries(VER, _accept_version)
            if time.monotonic() - self._last_mode_check >= self.mode_check:
                await self._check_mode()
            await self._wait_lost(SILENCE)

    async def _poll(self) -> None:
        while True:
            replies = await self._with_retries(NVU, _accept_new_data)
            new = replies[-1]
            if isinstance(new, NewData) and new.available:
                values = await self._with_retries(CVU, _accept_value)
                value = values[-1]
                if isinstance(value, Value):
                    self._pulse(value.value)
            if time.monotonic() - self._last_mode_check >= self.mode_check:
                await self._check_mode()
            await self._wait_lost(self.gap)

    async def _with_retries(
        self, command: bytes, accept: Callable[[Reply], bool | None]
    ) -> list[Reply]:
        """Ask; a reply lost to line noise is asked again; ``MISSES`` misses in a row mean gone."""
        for attempt in range(1, MISSES + 1):
            try:
                return await self._connection.query(command, accept)
            except CommandTimeout:
                if attempt == MISSES:
                    raise _Lost(
                        f"the meter did not answer {command.decode()} {MISSES} times"
                    ) from None
            except CommandRejected as err:
                _LOGGER.debug("%s refused %s: %s", self.port, command, err)
                raise _Lost(f"the meter refused {command.decode()}") from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def _check_mode(self) -> None:
        self._last_mode_check = time.monotonic()
        replies = await self._with_retries(GMD, _accept_labelled("mode"))
        number = labelled_number(replies[-1])
        identity = self.identity
        if number is None or identity is None or int(number) == identity.mode:
            return
        _LOGGER.debug("%s: display mode %s -> %s", self.port, identity.mode, number)
        identity.mode = int(number)
        self.statistics.reset()
        self._latest = None
        for definition in (
            mapping.reading_channel(identity.mode),
            *mapping.statistic_channels(identity.mode),
            mapping.range_channel(identity.ranges, identity.mode, self._range_value()),
            mapping.mode_channel(identity.mode),
        ):
            self._emit(definition)
        self._emit_statistics(datetime.now(UTC))

    def _port_lost(self, reason: str) -> None:
        self._lost_reason = reason
        self._lost.set()

    # ------------------------------------------------------------------ pulses

    def _stream_value(self, value: Value, _when: float) -> None:
        self._pulse(value.value)

    def _pulse(self, value: float | None) -> None:
        """Count one pulse in the statistics at once; its state write is paced."""
        identity = self.identity
        if identity is not None and identity.mode == MODE_NO_DETECTOR:
            value = None
        self.pulses += 1
        if value is None:
            self.over_range += 1
        elif self.statistics_on:
            self.statistics.add(value)
        self._latest = value
        self._latest_at = datetime.now(UTC)
        self._unwritten += 1
        assert self._pacer is not None
        self._pacer.offer()

    def _write_pulses(self) -> None:
        """Write the newest pulse, its event and the statistics (paced)."""
        if not self._unwritten or self._latest_at is None:
            return
        count, self._unwritten = self._unwritten, 0
        at = self._latest_at
        self._emit(Reading(METER, mapping.READING, self._latest, at))
        self._emit(
            Reading(
                METER,
                mapping.PULSE,
                EventData(
                    mapping.PULSE_EVENT,
                    {
                        "value": self._latest,
                        "timestamp": at.isoformat(),
                        "pulses": count,
                    },
                ),
                at,
            )
        )
        if self.statistics_on:
            self._emit_statistics(at)

    def _emit_statistics(self, at: datetime) -> None:
        snapshot = self.statistics.snapshot()
        self._emit(Reading(METER, mapping.MINIMUM, snapshot.minimum, at))
        self._emit(Reading(METER, mapping.MAXIMUM, snapshot.maximum, at))
        self._emit(Reading(METER, mapping.AVERAGE, snapshot.mean, at))
        self._emit(Reading(METER, mapping.PULSE_COUNT, snapshot.count, at))

    def _emit(self, event: Any) -> None:
        if self._sink is not None:
            self._sink(event)

    def _range_value(self) -> str | None:
        identity = self.identity
        if identity is None:
            return None
        if identity.autoscale:
            return mapping.RANGE_AUTO
        if identity.range_index is None or identity.range_index not in identity.ranges:
            return None
        options = mapping.range_options(identity.ranges, identity.mode)
        return options[1 + identity.ranges.index(identity.range_index)]

    # ------------------------------------------------------------------ commands

    def command_lane(self, device_key: str, channel_key: str) -> Hashable:
        """Every command goes through the one serial line: one lane for all."""
        return LANE

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write a setting; meter settings resolve once the meter reads back the new value."""
        identity = self.identity
        if device_key != METER or identity is None:
            raise UnknownTarget(f"no device {device_key}", device=device_key)
        match channel_key:
            case mapping.STATISTICS:
                self.statistics_on = bool(value)
                self._emit(Reading(METER, channel_key, self.statistics_on))
                return CommandResult("ok", values={channel_key: self.statistics_on})
            case mapping.MEASUREMENT_GAP:
                gap = _number(value, mapping.GAP_MIN, mapping.GAP_MAX, "s")
                self.gap = gap
                self._emit(Reading(METER, channel_key, gap))
                return CommandResult("ok", values={channel_key: gap})
            case mapping.WAVELENGTH:
                return await self._write_wavelength(identity, value)
            case mapping.TRIGGER_LEVEL:
                return await self._write_trigger(identity, value)
            case mapping.RANGE:
                return await self._write_range(identity, value)
        raise UnknownTarget(f"{channel_key} cannot be written", channel=channel_key)

    async def async_run_action(
        self, device_key: str, channel_key: str
    ) -> CommandResult:
        """Reset the statistics (the only action): every figure starts again from the next pulse."""
        if device_key != METER or channel_key != mapping.RESET_STATISTICS:
            return await super().async_run_action(device_key, channel_key)
        self.statistics.reset()
        self._emit_statistics(datetime.now(UTC))
        return CommandResult("ok")

    async def _write_wavelength(
        self, identity: Identity, value: object
    ) -> CommandResult:
        low = identity.status.min_wavelength or mapping.DEFAULT_MIN_WAVELENGTH
        high = identity.status.max_wavelength or mapping.DEFAULT_MAX_WAVELENGTH
        nanometres = round(_number(value, low, high, "nm"))
        await self._connection.send(set_wavelength(nanometres))
        now = await _query_int(self._connection, GWL, "pwc")
        identity.wavelength = now
        self._emit(Reading(METER, mapping.WAVELENGTH, now))
        if now != nanometres:
            raise CommandRejected(f"the meter kept {now} nm instead of {nanometres} nm")
        return CommandResult("ok", values={mapping.WAVELENGTH: now})

    async def _write_trigger(self, identity: Identity, value: object) -> CommandResult:
        level = _number(value, TRIGGER_MIN, TRIGGER_MAX, "%")
        await self._connection.send(set_trigger_level(level))
        now = await _query_number(self._connection, GTL, "trigger level")
        identity.trigger_level = now
        self._emit(Reading(METER, mapping.TRIGGER_LEVEL, now))
        if now is None or abs(now - level) > TRIGGER_RESOLUTION:
            raise CommandRejected(f"the meter kept a trigger level of {now} %")
        return CommandResult("ok", values={mapping.TRIGGER_LEVEL: now})

    async def _write_range(self, identity: Identity, value: object) -> CommandResult:
        options = mapping.range_options(identity.ranges, identity.mode)
        if value not in options:
            raise InvalidValue(f"{value} is not a range of this head", value=str(value))
        if value == mapping.RANGE_AUTO:
            await self._connection.send(set_autoscale(True))
        else:
            await self._connection.send(
                set_range(identity.ranges[options.index(str(value)) - 1])
            )
        identity.autoscale = await _query_int(self._connection, GAS, "autoscale") == 1
        identity.range_index = await _query_int(self._connection, GCR, "range")
        now = self._range_value()
        self._emit(Reading(METER, mapping.RANGE, now))
        if now != value:
            raise CommandRejected(f"the meter kept the range {now}")
        return CommandResult("ok", values={mapping.RANGE: now})

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> dict[str, Any]:
        """Return the acquisition's state and counters (the port is redacted by the kind)."""
        identity = self.identity
        snapshot = self.statistics.snapshot()
        return {
            "port": self.port,
            "acquisition": self.mode.value,
            "measurement_gap": self.gap,
            "max_writes_per_second": self.max_writes,
            "link_up": self._link_up,
            "connects": self.connects,
            "pulses": self.pulses,
            "over_range": self.over_range,
            "coalesced_writes": self._pacer.coalesced if self._pacer else 0,
            "statistics_on": self.statistics_on,
            "statistics_count": snapshot.count,
            "model": identity.version.model if identity else None,
            "firmware": identity.version.firmware if identity else None,
            "display_mode": identity.mode if identity else None,
            "valid_ranges": list(identity.ranges) if identity else [],
            "connection": self._connection.stats(),
        }


def _number(value: object, low: float, high: float, unit: str) -> float:
    """Return a finite number within [low, high]; InvalidValue otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{value!r} is not a number", value=str(value))
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidValue(
            f"{value} {unit} is outside {low:g}-{high:g} {unit}", value=str(value)
        )
    return number
