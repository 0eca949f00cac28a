"""Powersensor rows: datagram to state for a plug's reports, and the datagram parser alone.

End to end: the integration is set up the way a user's entry is (the household entry the flow
makes, here with one plug address and nothing to scan) against a plug in a separate process
(``benchmarks.powersensor_pusher``, on a 127.x address, UDP 49476) so its CPU is not this
process's. On each round the plug sends N datagrams of one plug report each (about 450 bytes: power,
currents, voltage, summation), paced so that the socket buffer never overflows. The figure is this
process's CPU time from the moment the round is requested to the ``state_changed`` callback that
sees the round's last power, divided by N: the socket, the line parsing, the vendor's
``translate_raw_message``, the source's worker, the hub's queue, the entities and Home Assistant's
state machine. A report updates two enabled entities (power, energy; voltage and the currents are
disabled by default); the notes say how many states were written.

Source: the same rounds from the same plug process into the source alone (no Home Assistant; its
events go to a sink that only counts them): the socket, the parsing, the translation, the source's
model and its events. This is the integration's own share of the end-to-end figure, per report.

Parser: a seeded household stream (a plug report per datagram, the house, solar and water sensors'
reports in every third) through ``parse_datagram`` and the translation (``sample_of``), per report.
No Home Assistant runs; the figure is still divided by the floor.

Household, ours and the peer's: the same household stream, one datagram per loop iteration, into
(a) our plug link and source (events to a counting sink) and (b) powersensor-local 2.4.0's own line
handling as its users run it: ``PlugListenerUdp.datagram_received`` (a task per line), ``PlugApi``
(``translate_raw_message``, ``now_relaying_for``, its events to no-op subscribers) and the house and
solar readings into ``VirtualHousehold`` (as the Home Assistant core PR does). Both get the datagrams
handed to the protocol's ``datagram_received`` (no socket), per report.

Loop lag: the source alone (counting sink) against the plug process flooding it with each of
``FLOODS`` (a 20k/s burst of real reports, random bytes, one line filling a datagram, a datagram of
tiny reports, a datagram of newlines); the figure is the longest event-loop callback of the
integration's code over all of them (issue bound: 20 ms), the notes give it per input.

Idle: an entry's source following one plug address where nothing answers and one where a plug
streams a report a second: loop wake-ups and the integration's timers per second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import random
import statistics
from typing import Any, Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import UnitOfEnergy, UnitOfPower
from homeassistant.helpers.device_registry import DeviceInfo
import orjson
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_config_flow,
)

from .floor import DOMAIN as FLOOR_DOMAIN, ProbeConfigFlow, setup_plain_sensors
from .harness import (
    WARMUP_ROUNDS,
    HelperProcess,
    StateWrites,
    bench_hass,
    compared_note,
    cpu_ns,
    push_rounds,
    remember_median,
    round_count,
    wait_for_states,
)
from .powersensor_stream import (
    FLOODS,
    MAX_ROUNDS,
    PLUG_MAC,
    datagram,
    parser_stream,
    plug_report,
    round_marker,
)
from .probes import (
    CallbackTimer,
    CountingSink,
    FloodTally,
    idle_seconds,
    idle_window,
    idle_windows,
)
from .rows import BenchError, Measurement, Settings, row

INTEGRATION_DOMAIN: Final = "instrument_hub"
PUSHER_MODULE: Final = "benchmarks.powersensor_pusher"
STARTUP_TIMEOUT: Final = 30.0


def _round_timeout(events: int) -> float:
    return 30.0 + events / 500


async def _start_pusher(host: str, *, events: int, rounds: int) -> HelperProcess:
    pusher = await HelperProcess.start(
        PUSHER_MODULE, "--host", host, "--events", str(events), "--rounds", str(rounds)
    )
    try:
        line = await pusher.read_line(STARTUP_TIMEOUT)
    except BaseException:
        await pusher.stop()
        raise
    if line != "ready":
        await pusher.stop()
        raise BenchError(f"unexpected first line from the pusher: {line!r}")
    return pusher


@row(
    "powersensor-e2e",
    "powersensor: datagram -> state (plug reports)",
    source="powersensor",
)
async def powersensor_end_to_end(settings: Settings) -> Measurement:
    """CPU per plug report, from the first datagram to the last report's power state write."""
    rounds = round_count(settings, MAX_ROUNDS)
    events = settings.events
    host = _loopback_host(11)
    power = f"sensor.powersensor_plug_{PLUG_MAC[-6:]}_power"
    energy = f"sensor.powersensor_plug_{PLUG_MAC[-6:]}_energy"
    pusher = await _start_pusher(host, events=events, rounds=rounds)
    try:
        async with bench_hass() as hass:
            entry = MockConfigEntry(
                domain=INTEGRATION_DOMAIN,
                title="Powersensor network",
                unique_id="powersensor:household",
                data={
                    "source_kind": "powersensor",
                    "broadcast_addresses": [],
                    "plug_hosts": [host],
                    "plugs": {PLUG_MAC: host},
                    "with_solar": False,
                },
            )
            entry.add_to_hass(hass)
            if (
                not await hass.config_entries.async_setup(entry.entry_id)
                or entry.state is not ConfigEntryState.LOADED
            ):
                raise BenchError(
                    f"the Powersensor entry did not load ({entry.state}: {entry.reason})"
                )
            await wait_for_states(hass, [power, energy], STARTUP_TIMEOUT)
            writes = StateWrites(hass, [power, energy])
            try:
                measured = await push_rounds(
                    hass,
                    pusher,
                    writes,
                    power,
                    round_marker,
                    rounds=rounds,
                    warmup=WARMUP_ROUNDS,
                    events=events,
                    timeout=_round_timeout(events),
                )
            finally:
                writes.close()
    finally:
        await pusher.stop()
    sent = events * settings.repeats
    total = sum(measured.written)
    remember_median("powersensor-e2e", measured.samples)
    return Measurement(
        measured.samples,
        [
            f"states {total} for {sent} reports ({total / sent:.2f} per report)",
            f"{statistics.median(measured.rates) / 1000:.1f}k reports/s wall (paced)",
        ],
    )


@row(
    "powersensor-parse", "powersensor: datagram parse + translate", source="powersensor"
)
async def powersensor_parser(settings: Settings) -> Measurement:
    """CPU per report of parse_datagram followed by the vendor's translation (sample_of)."""
    # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
    from custom_components.instrument_hub.sources.powersensor.mapping import (  # noqa: PLC0415
        sample_of,
    )
    from custom_components.instrument_hub.sources.powersensor.protocol import (  # noqa: PLC0415
        Report,
        parse_datagram,
    )

    stream = parser_stream(settings.events * 5)
    samples: list[float] = []
    translate_shares: list[float] = []
    for repeat in range(-1, settings.repeats):
        begin = cpu_ns()
        reports = [
            line
            for data in stream.datagrams
            for line in parse_datagram(data)
            if isinstance(line, Report)
        ]
        parsed = cpu_ns()
        translated = [sample_of(report.message, PLUG_MAC) for report in reports]
        end = cpu_ns()
        if len(translated) != stream.reports:
            raise BenchError(f"{len(translated)} reports of {stream.reports}")
        if repeat >= 0:
            samples.append((end - begin) / stream.reports / 1000)
            translate_shares.append((end - parsed) / (end - begin))
    size = sum(len(data) for data in stream.datagrams)
    per_report_s = statistics.median(samples) / 1e6
    return Measurement(
        samples,
        [
            f"{1 / per_report_s / 1000:.0f}k reports/s",
            f"translate {statistics.median(translate_shares):.0%}",
            f"{stream.reports} reports in {len(stream.datagrams)} datagrams, {size / 1e6:.1f} MB",
        ],
    )


def _loopback_host(last: int) -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{last}"


def _plug_source(host: str, port: int | None = None) -> Any:
    """Return our source following one plug address (on the plug port unless told another)."""
    # Imported here: the integration may be mid-edit, and a broken import must fail this row only.
    from custom_components.instrument_hub.sources.powersensor import (  # noqa: PLC0415
        PowersensorSettings,
        PowersensorSource,
    )

    settings = PowersensorSettings(plug_hosts=(host,))
    if port is not None:
        settings = dataclasses.replace(settings, port=port)
    return PowersensorSource(settings)


@row(
    "powersensor-source",
    "powersensor: datagram -> source events (no-op sink, plug reports)",
    source="powersensor",
)
async def powersensor_source_only(settings: Settings) -> Measurement:
    """CPU per plug report from the first datagram to the source emitting the last report's power."""
    rounds = round_count(settings, MAX_ROUNDS)
    events = settings.events
    host = _loopback_host(12)
    samples: list[float] = []
    emitted: list[int] = []
    pusher = await _start_pusher(host, rounds=rounds * 2, events=events)
    sink = _HubLikeSink()
    source = _plug_source(host)
    sink.source = source
    bare: list[float] = []
    try:
        # The same rounds into a receiver that only counts datagrams: what asyncio's UDP transport
        # and the loop cost any client, whatever it does with the bytes.
        bare = [
            await _bare_round(pusher, host, rounds + round_index, events)
            for round_index in range(rounds)
        ]
        await source.async_start(sink)
        for round_index in range(rounds):
            gc.collect()
            marker = round_marker(round_index)
            sink.arm(functools.partial(_is_power, marker=marker))
            begin = cpu_ns()
            await pusher.send(f"go {round_index}")
            end = await sink.wait(_round_timeout(events))
            answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
            if answer[:2] != ["sent", str(round_index)] or answer[2:] == ["0"]:
                raise BenchError(f"the pusher answered {' '.join(answer)!r}")
            if round_index < WARMUP_ROUNDS:
                continue
            samples.append((end - begin) / events / 1000)
            emitted.append(sink.readings)
    except TimeoutError as err:
        raise BenchError("the round's last power was never emitted") from err
    finally:
        await source.async_stop()
        await pusher.stop()
    return Measurement(
        samples,
        [
            f"readings {sum(emitted) / (events * settings.repeats):.2f} per report "
            "(disabled-by-default channels muted, as in Home Assistant)",
            f"a receiver that only counts the datagrams: "
            f"{statistics.median(bare[WARMUP_ROUNDS:]):.1f} µs",
        ],
    )


class _PlainPower(SensorEntity):
    """The plug's power as a minimal integration would show it."""

    _attr_has_entity_name = True
    _attr_name = "Power"
    _attr_should_poll = False
    _attr_device_class = SensorDeviceClass.POWER
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_native_unit_of_measurement = UnitOfPower.WATT
    _attr_unique_id = "bench-plain-plug-power"
    _attr_device_info = DeviceInfo(
        identifiers={(FLOOR_DOMAIN, "plain-plug")}, name="Plain plug"
    )


class _PlainEnergy(SensorEntity):
    """The plug's energy counter as a minimal integration would show it."""

    _attr_has_entity_name = True
    _attr_name = "Energy"
    _attr_should_poll = False
    _attr_device_class = SensorDeviceClass.ENERGY
    _attr_state_class = SensorStateClass.TOTAL_INCREASING
    _attr_native_unit_of_measurement = UnitOfEnergy.KILO_WATT_HOUR
    _attr_unique_id = "bench-plain-plug-energy"
    _attr_device_info = DeviceInfo(
        identifiers={(FLOOR_DOMAIN, "plain-plug")}, name="Plain plug"
    )


class _PlainClient(asyncio.DatagramProtocol):
    """A 30-line Powersensor client: subscribe, decode each line, write power and energy.

    No validation, no device model, no liveness, no translation: the least any client does per
    datagram, so the row says what of the end-to-end figure is the protocol's and Home Assistant's.
    """

    def __init__(self, power: _PlainPower, energy: _PlainEnergy) -> None:
        self.power = power
        self.energy = energy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        transport.sendto(b"subscribe(60)\n")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        for line in data.splitlines():
            report = orjson.loads(line)
            if report.get("type") != "instant_power" or "power" not in report:
                continue
            self.power._attr_native_value = report["power"]  # noqa: SLF001
            self.power.async_write_ha_state()
            self.energy._attr_native_value = report["summation"] / 3_600_000  # noqa: SLF001
            self.energy.async_write_ha_state()


@row(
    "powersensor-plain",
    "powersensor: datagram -> state, a minimal asyncio client (2 plain sensors)",
    source="powersensor",
)
async def powersensor_plain_client(settings: Settings) -> Measurement:
    """CPU per plug report of the same rounds into ``_PlainClient`` in the same kind of hass."""
    rounds = round_count(settings, MAX_ROUNDS)
    events = settings.events
    host = _loopback_host(13)
    power, energy = _PlainPower(), _PlainEnergy()
    pusher = await _start_pusher(host, events=events, rounds=rounds)
    try:
        with mock_config_flow(FLOOR_DOMAIN, ProbeConfigFlow):
            async with bench_hass() as hass:
                await setup_plain_sensors(hass, [power, energy])
                assert power.entity_id is not None
                assert energy.entity_id is not None
                loop = asyncio.get_running_loop()
                transport, _client = await loop.create_datagram_endpoint(
                    functools.partial(_PlainClient, power, energy),
                    remote_addr=(host, 49476),
                )
                writes = StateWrites(hass, [power.entity_id, energy.entity_id])
                try:
                    measured = await push_rounds(
                        hass,
                        pusher,
                        writes,
                        power.entity_id,
                        round_marker,
                        rounds=rounds,
                        warmup=WARMUP_ROUNDS,
                        events=events,
                        timeout=_round_timeout(events),
                    )
                finally:
                    writes.close()
                    transport.close()
    finally:
        await pusher.stop()
    total = sum(measured.written)
    return Measurement(
        measured.samples,
        [
            f"states {total} for {events * settings.repeats} reports "
            f"({total / (events * settings.repeats):.2f} per report)",
            "orjson per line, two async_write_ha_state per report, nothing else",
            *compared_note("powersensor-e2e", measured.samples),
        ],
    )


class _BareReceiver(asyncio.DatagramProtocol):
    """Subscribes like a client and counts datagrams: asyncio's own cost per datagram."""

    def __init__(self) -> None:
        self.count = 0
        self.wanted = 0
        self.done = asyncio.Event()
        self.done_cpu_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        transport.sendto(b"subscribe(60)\n")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.count += 1
        if self.count == self.wanted:
            self.done_cpu_ns = cpu_ns()
            self.done.set()


async def _bare_round(
    pusher: HelperProcess, host: str, round_index: int, events: int
) -> float:
    """Return the CPU µs per datagram of one round into a bare receiver."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(
        _BareReceiver, remote_addr=(host, 49476)
    )
    try:
        # The plug answers the subscription with one report: counted first, then the round.
        receiver.wanted = 1
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await receiver.done.wait()
        gc.collect()
        receiver.count = 0
        receiver.wanted = events
        receiver.done.clear()
        begin = cpu_ns()
        await pusher.send(f"go {round_index}")
        async with asyncio.timeout(_round_timeout(events)):
            await receiver.done.wait()
        await pusher.read_line(STARTUP_TIMEOUT)
        return (receiver.done_cpu_ns - begin) / events / 1000
    except TimeoutError as err:
        raise BenchError("the bare receiver missed datagrams") from err
    finally:
        transport.close()


def _is_power(event: Any, marker: float) -> bool:
    return bool(event.channel_key == "power" and event.value == marker)


class _HubLikeSink(CountingSink):
    """The counting sink, muting what the hub mutes: channels whose entity is disabled by default.

    In Home Assistant the kind mutes the channels of disabled entities at the source (a plug
    report's voltage and currents, the sensors' RSSI), so the source-only rows do the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.source: Any = None
        self._hardware: dict[str, str] = {}

    def __call__(self, event: object) -> None:
        kind = type(event).__name__
        if kind == "DeviceFound":
            self._hardware[event.device_key] = event.hardware_id  # type: ignore[attr-defined]
        elif (
            kind == "ChannelDefined"
            and not event.enabled_by_default  # type: ignore[attr-defined]
            and self.source is not None
        ):
            hardware_id = self._hardware.get(event.device_key)  # type: ignore[attr-defined]
            if hardware_id is not None:
                self.source.set_channel_enabled(
                    hardware_id,
                    event.channel_key,  # type: ignore[attr-defined]
                    False,
                )
        super().__call__(event)


class _InProcessPlug(asyncio.DatagramProtocol):
    """A plug for the in-process rows: answers a subscription with one report, nothing else."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if data.startswith(b"subscribe(") and not data.startswith(b"subscribe(0)"):
            assert self.transport is not None
            report = plug_report(random.Random(0), -1)
            self.transport.sendto(datagram([report]), addr)


async def _feed(
    protocol: asyncio.DatagramProtocol, datagrams: list[bytes], addr: tuple[str, int]
) -> None:
    """Hand each datagram to the protocol, one loop iteration each (as a socket delivers them)."""
    for data in datagrams:
        protocol.datagram_received(data, addr)
        await asyncio.sleep(0)


@row(
    "powersensor-household",
    "powersensor: household stream, our line handling + source (no-op sink)",
    source="powersensor",
)
async def powersensor_household_ours(settings: Settings) -> Measurement:
    """CPU per report of our plug link and source on the household stream."""
    stream = parser_stream(settings.events)
    loop = asyncio.get_running_loop()
    host = _loopback_host(13)
    transport, _plug = await loop.create_datagram_endpoint(
        _InProcessPlug, local_addr=(host, 0)
    )
    port = transport.get_extra_info("sockname")[1]
    sink = _HubLikeSink()
    source = _plug_source(host, port)
    sink.source = source
    samples: list[float] = []
    readings: list[int] = []
    try:
        await source.async_start(sink)
        link = source._links[host]  # noqa: SLF001
        for repeat in range(-1, settings.repeats):
            gc.collect()
            sink.arm(lambda _event: False)
            begin = cpu_ns()
            await _feed(link, stream.datagrams, (host, port))
            end = cpu_ns()
            if repeat >= 0:
                samples.append((end - begin) / stream.reports / 1000)
                readings.append(sink.readings)
    finally:
        await source.async_stop()
        transport.close()
    return Measurement(
        samples,
        [
            f"{statistics.median(readings) / stream.reports:.2f} readings per report",
            f"{stream.reports} reports in {len(stream.datagrams)} datagrams",
        ],
    )


@row(
    "powersensor-peer",
    "powersensor-local 2.4.0: household stream, its line handling (PlugApi + VirtualHousehold)",
    source="powersensor",
)
async def powersensor_household_peer(settings: Settings) -> Measurement:
    """CPU per report of the vendor's listener, PlugApi and household view on the household stream."""
    from powersensor_local import (  # noqa: PLC0415
        PlugApi,
        PlugListenerUdp,
        VirtualHousehold,
    )

    stream = parser_stream(settings.events)
    logger = logging.getLogger("benchmarks.powersensor.peer")
    host = _loopback_host(14)
    counts = {"events": 0, "household": 0}
    household = VirtualHousehold(False, logger)

    async def on_household(_name: str, _event: dict[str, Any]) -> None:
        counts["household"] += 1

    for name in (
        "from_grid",
        "to_grid",
        "home_usage",
        "solar_generation",
        "from_grid_summation",
        "to_grid_summation",
        "home_usage_summation",
        "solar_generation_summation",
    ):
        household.subscribe(name, on_household)

    async def on_event(name: str, event: dict[str, Any]) -> None:
        counts["events"] += 1
        if event.get("role") in ("house-net", "solar"):
            if name == "average_power":
                await household.process_average_power_event(event)
            elif name == "summation_energy":
                await household.process_summation_event(event)

    api = PlugApi(PLUG_MAC, host, logger=logger)
    for name in (
        "average_power",
        "average_power_components",
        "summation_energy",
        "average_flow",
        "summation_volume",
        "battery_level",
        "radio_signal_quality",
        "uncalibrated_average_reading",
        "now_relaying_for",
    ):
        api.subscribe(name, on_event)
    listener = api._listener  # noqa: SLF001
    assert isinstance(listener, PlugListenerUdp)
    samples: list[float] = []
    per_report: list[float] = []
    try:
        for repeat in range(-1, settings.repeats):
            gc.collect()
            counts["events"] = counts["household"] = 0
            begin = cpu_ns()
            await _feed(listener, stream.datagrams, (host, 49476))
            while listener._tasks:  # noqa: SLF001
                await asyncio.sleep(0)
            end = cpu_ns()
            if repeat >= 0:
                samples.append((end - begin) / stream.reports / 1000)
                per_report.append(counts["events"] / stream.reports)
    finally:
        await api.disconnect()
    if not counts["household"]:
        raise BenchError("the vendor's household view produced nothing")
    return Measurement(
        samples,
        [
            f"{statistics.median(per_report):.2f} vendor events per report",
            "a task per line, a 60 s timer re-armed per datagram",
        ],
    )


@row(
    "powersensor-lag",
    "powersensor: longest callback of ours under floods (µs; bound 20 ms)",
    source="powersensor",
)
async def powersensor_loop_lag(settings: Settings) -> Measurement:
    """Measure the longest event-loop callback of ours while the plug floods the source."""
    count = 2000 if settings.quick else 20000
    host = _loopback_host(15)
    pusher = await _start_pusher(host, events=10, rounds=1)
    sink = CountingSink()
    source = _plug_source(host)
    tally = FloodTally()
    try:
        await source.async_start(sink)
        for repeat in range(settings.repeats):
            for index, kind in enumerate(FLOODS):
                marker = 200000.0 + repeat * 100 + index
                sink.arm(functools.partial(_is_power, marker=marker))
                rate = 20000.0 if kind == "burst" else 0.0
                flood = count if kind in ("burst", "garbage") else count // 20
                with CallbackTimer() as timer:
                    await pusher.send(f"flood {kind} {flood} {rate} {marker}")
                    await sink.wait(60.0)
                    answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                if answer[:2] != ["flooded", kind]:
                    raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                tally.add(kind, timer)
            tally.end_repeat()
    except TimeoutError as err:
        raise BenchError("the marker after a flood was never emitted") from err
    finally:
        await source.async_stop()
        await pusher.stop()
    return Measurement(tally.samples, [tally.per_kind(), tally.gc_note()])


@row(
    "powersensor-idle",
    "powersensor: source idle (CPU µs per second)",
    source="powersensor",
)
async def powersensor_idle(settings: Settings) -> Measurement:
    """Wake-ups, our timers and CPU per second of a source whose plug is silent, then streaming."""
    loop = asyncio.get_running_loop()
    host = _loopback_host(16)
    transport, _plug = await loop.create_datagram_endpoint(
        _InProcessPlug, local_addr=(host, 0)
    )
    port = transport.get_extra_info("sockname")[1]
    sink = CountingSink()
    source = _plug_source(host, port)
    baseline = await idle_window(idle_seconds(settings))
    try:
        await source.async_start(sink)
        # The plug is lost after its timeout; from then on nothing answers and nothing streams.
        transport.close()
        silent_after = source._settings.plug_timeout + 1.0  # noqa: SLF001
        await asyncio.sleep(silent_after)
        return await idle_windows(settings, baseline, what="plug silent: ")
    finally:
        await source.async_stop()
