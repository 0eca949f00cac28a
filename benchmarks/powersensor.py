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

Parser: a seeded household stream (a plug report per datagram, the house, solar and water sensors'
reports in every third) through ``parse_datagram`` and the vendor's translation (``sample_of``), per
report. No Home Assistant runs; the figure is still divided by the floor.
"""

from __future__ import annotations

import random
import statistics
from typing import Final

from homeassistant.config_entries import ConfigEntryState
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .harness import (
    HelperProcess,
    StateWrites,
    bench_hass,
    cpu_ns,
    numeric_state_is,
    settle,
    wait_for_states,
    wall_ns,
)
from .powersensor_stream import MAX_ROUNDS, PLUG_MAC, parser_stream, round_marker
from .rows import BenchError, Measurement, Settings, row

INTEGRATION_DOMAIN: Final = "instrument_hub"
PUSHER_MODULE: Final = "benchmarks.powersensor_pusher"
STARTUP_TIMEOUT: Final = 30.0
WARMUP_ROUNDS: Final = 1


def _round_timeout(events: int) -> float:
    return 30.0 + events / 500


async def _start_pusher(host: str, events: int, rounds: int) -> HelperProcess:
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
    rounds = WARMUP_ROUNDS + settings.repeats
    if rounds > MAX_ROUNDS:
        raise BenchError(f"at most {MAX_ROUNDS - WARMUP_ROUNDS} repeats")
    events = settings.events
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.11"
    power = f"sensor.powersensor_plug_{PLUG_MAC[-6:]}_power"
    energy = f"sensor.powersensor_plug_{PLUG_MAC[-6:]}_energy"
    samples: list[float] = []
    written: list[int] = []
    rates: list[float] = []
    pusher = await _start_pusher(host, events, rounds)
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
                for round_index in range(rounds):
                    await settle(hass)
                    writes.arm(power, numeric_state_is(round_marker(round_index)))
                    begin_wall = wall_ns()
                    begin = cpu_ns()
                    await pusher.send(f"go {round_index}")
                    end = await writes.wait(_round_timeout(events))
                    answer = (await pusher.read_line(STARTUP_TIMEOUT)).split()
                    if answer[:2] != ["sent", str(round_index)] or answer[2:] == ["0"]:
                        raise BenchError(f"the pusher answered {' '.join(answer)!r}")
                    if round_index < WARMUP_ROUNDS:
                        continue
                    samples.append((end - begin) / events / 1000)
                    written.append(writes.count)
                    rates.append(events / ((writes.done_wall_ns - begin_wall) / 1e9))
            finally:
                writes.close()
    finally:
        await pusher.stop()
    sent = events * settings.repeats
    total = sum(written)
    return Measurement(
        samples,
        [
            f"states {total} for {sent} reports ({total / sent:.2f} per report)",
            f"{statistics.median(rates) / 1000:.1f}k reports/s wall (paced)",
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
