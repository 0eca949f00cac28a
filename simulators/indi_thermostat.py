"""INDI thermostat simulator on indipydriver 3.1.2 + indipyserver 0.0.6 (run it with .venv-peers).

It serves one INDI device, "Thermostat":

    temperaturevector / temperature  Number, ro, -50..99: a new reading every --poll seconds
    targetvector / target            Number, rw, -50..99: the set point of the simulated heater
                                     (both labelled "... (C)", indilib's way of stating the unit)
    switchvector / switchmember      Switch, rw, rule AtMostOne: "On" records the readings into log files
    logsvector / templogs            BLOB, ro, format .csv: one log file per --logperiod seconds while recording

Writing the target is answered with a setNumberVector: state Ok with the new value, or state Alert with the
value unchanged and the message "Invalid target" (not a number) or "Target out of range" (outside -50..99).
Switching the logs is answered with a setSwitchVector and a device message "Log reporting is now On|Off".
BLOBs reach a client only after it sent enableBLOB Also or Only (IPyServer's default is Never).

With --extras a second device, "Extras", shows the other INDI property kinds and how definitions come and go:

    heaterlight / heater   Light: its value alternates Ok / Alert
    notevector / note      Text, rw: a written value is echoed back with state Ok
    havector / hourangle   Number, ro, format %010.6m (sexagesimal), advanced on every cycle

Every --cycle seconds one step of a four-step cycle runs: 1. update the light and the hour angle,
2. delProperty of havector, 3. delProperty of the whole device, 4. define all three vectors again.
With --steady only step 1 runs (scripts/develop: a device that does not come and go).

Once the port is listening the process prints one line "serving on HOST:PORT" (flushed) on stdout; with --port 0
the port the system chose is printed. SIGTERM or SIGINT shuts the server down and the process exits with
status 0 (1 when the server ended by itself, e.g. because the port was taken).

The driver follows the thermostat example of the 2024 indipydriver documentation, rewritten for the 3.x API:
IPyServer comes from the separate indipyserver package and takes the drivers positionally, IPyDriver takes its
devices positionally, client commands arrive at rxevent(), getProperties is answered by the library itself, and
periodic work runs in hardware() or in coroutines given to add_background().

Upstream behaviour this module works around:
  * IPyServer 0.0.6 does not treat end of stream from a client as a closed connection: after a client
    disconnects it keeps reading b"" in a loop, using a whole CPU core until a later write to the dead socket
    fails. The connections here see end of stream as ConnectionResetError, which IPyServer handles as a
    dropped client. --upstream-eof keeps the library's own behaviour, to reproduce it.
  * BLOBMember keeps the size of the first BLOB it sent for all later ones; the size is set for each file.
  * A vector's message cannot be cleared once set (an empty message keeps the old one), so the Ok reply to a
    target carries its own message instead of repeating an earlier "Invalid target".
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import Sequence
import contextlib
from datetime import UTC, datetime, timedelta
import logging
import math
import signal
import sys
from typing import Any

import indipydriver as ipd
from indipyserver import IPyServer

_LOGGER = logging.getLogger("indi_thermostat")

THERMOSTAT = "Thermostat"
EXTRAS = "Extras"

TARGET_MIN = -50.0
TARGET_MAX = 99.0
DEFAULT_TARGET = 15.0
START_TEMPERATURE = 20.0
HEATER_STEP = 0.2  # degrees per reading, up while heating, down otherwise
HYSTERESIS = 0.5  # the heater switches when the temperature is this far from the target
MAX_PENDING_LOGS = 4  # finished log files kept until sent; older ones are dropped

LISTEN_TIMEOUT = 10.0  # seconds allowed for the server to start listening
# After shutdown() IPyServer has closed its sockets, but its tasks notice the stop flag only on their next
# wake-up (every 0.5 s and 1 s): after this many seconds the rest of them is cancelled.
SHUTDOWN_GRACE = 0.3


def utcnow() -> datetime:
    """Return the current time in UTC (indipydriver requires UTC timestamps)."""
    return datetime.now(tz=UTC)


class Heater:
    """A room with an on/off heater: the temperature rises while heating and falls otherwise."""

    def __init__(self, target: float, temperature: float = START_TEMPERATURE) -> None:
        """Start at *temperature* with the heater off."""
        self.target = target
        self.temperature = temperature
        self.heating = False

    def step(self) -> float:
        """Advance by one reading and return the new temperature."""
        change = HEATER_STEP if self.heating else -HEATER_STEP
        self.temperature = round(self.temperature + change, 2)
        if self.temperature > self.target + HYSTERESIS:
            self.heating = False
        elif self.temperature < self.target - HYSTERESIS:
            self.heating = True
        return self.temperature


class TemperatureLog:
    """Collects readings into CSV log files, one file per period, while recording is switched on."""

    def __init__(self, period: float) -> None:
        """Create a log that is switched off; *period* is the length of one file in seconds."""
        self._period = timedelta(seconds=period)
        self._current = bytearray()
        self._file_ends: datetime | None = None  # None while recording is off
        self._finished: deque[bytes] = deque(maxlen=MAX_PENDING_LOGS)

    @property
    def recording(self) -> bool:
        """Return True while readings are recorded."""
        return self._file_ends is not None

    def switch(self, on: bool, now: datetime) -> None:
        """Start recording into a new file, or stop and discard everything not sent yet."""
        if on == self.recording:
            return
        self._current.clear()
        if on:
            self._file_ends = now + self._period
        else:
            self._file_ends = None
            self._finished.clear()

    def record(self, timestamp: datetime, temperature: float) -> None:
        """Add one reading; a reading after the end of the current file finishes that file first."""
        if self._file_ends is None:
            return
        if timestamp >= self._file_ends:
            if self._current:
                self._finished.append(bytes(self._current))
                self._current.clear()
            while self._file_ends <= timestamp:
                self._file_ends += self._period
        # INDI timestamps are UTC without a zone suffix; the log uses the same form.
        stamp = timestamp.replace(tzinfo=None).isoformat(timespec="milliseconds")
        self._current += f"{stamp},{temperature:.2f}\n".encode()

    def pop_finished(self) -> bytes | None:
        """Return the oldest finished file not sent yet, or None."""
        return self._finished.popleft() if self._finished else None


class Extras:
    """The optional second device: a Light, a rw Text and a sexagesimal Number that come and go."""

    def __init__(self, cycle: float, *, steady: bool = False) -> None:
        """Build the device; *cycle* is the number of seconds between two steps of its cycle.

        A *steady* device only updates its light and hour angle: it never deletes and re-defines itself.
        """
        self._cycle = cycle
        self._steady = steady
        self._light = ipd.LightVector(
            name="heaterlight",
            label="Heater status",
            group="Status",
            state="Idle",
            lightmembers=[
                ipd.LightMember(name="heater", label="Heater", membervalue="Idle")
            ],
        )
        self._note = ipd.TextVector(
            name="notevector",
            label="Note",
            group="Status",
            perm="rw",
            state="Ok",
            textmembers=[
                ipd.TextMember(name="note", label="Note", membervalue="hello")
            ],
        )
        self._hourangle = ipd.NumberVector(
            name="havector",
            label="Hour angle",
            group="Status",
            perm="ro",
            state="Ok",
            numbermembers=[
                ipd.NumberMember(
                    name="hourangle",
                    label="Hour angle",
                    format="%010.6m",
                    min="0",
                    max="24",
                    step="0",
                    membervalue="3.7625",
                )
            ],
        )
        self.device = ipd.Device(
            devicename=EXTRAS, properties=[self._light, self._note, self._hourangle]
        )

    async def command(self, event: Any) -> None:
        """Handle a client's new*Vector for this device: the note is echoed back."""
        if (
            isinstance(event, ipd.newTextVector)
            and event.vectorname == "notevector"
            and "note" in event
        ):
            event.vector["note"] = event["note"]
            await event.vector.send_setVector(state="Ok")

    async def run(self, driver: ThermostatDriver) -> None:
        """Run the update / delete vector / delete device / define again cycle until shutdown."""
        step = 0
        while not await driver.stop_requested_within(self._cycle):
            step += 1
            match 1 if self._steady else step % 4:
                case 1:
                    self._light["heater"] = (
                        "Alert" if self._light["heater"] == "Ok" else "Ok"
                    )
                    await self._light.send_setVector()
                    # The hour angle advances with the clock: one cycle of time, in hours.
                    hours = (
                        self._hourangle.getfloatvalue("hourangle")
                        + self._cycle / 3600.0
                    ) % 24.0
                    self._hourangle["hourangle"] = f"{hours:.6f}"
                    await self._hourangle.send_setVector()
                case 2:
                    await self._hourangle.send_delProperty(
                        message="hour angle vector removed"
                    )
                case 3:
                    await self.device.send_delProperty(message="Extras device removed")
                case _:
                    # delProperty disabled the device and the vector: enable them and send their definitions.
                    self.device.enable = True
                    for vector in self.device.values():
                        vector.enable = True
                        await vector.send_defVector(message="re-defined")


class ThermostatDriver(ipd.IPyDriver):
    """The driver of the Thermostat device, and of the Extras device when there is one."""

    def __init__(
        self,
        heater: Heater,
        templog: TemperatureLog,
        poll: float,
        extras: Extras | None,
    ) -> None:
        """Create the Thermostat device's vectors and the driver serving it (and *extras*)."""
        self._heater = heater
        self._templog = templog
        self._poll = poll
        self._extras = extras
        thermostat = ipd.Device(
            devicename=THERMOSTAT,
            properties=[
                ipd.NumberVector(
                    name="temperaturevector",
                    label="Temperature",
                    group="Values",
                    perm="ro",
                    state="Ok",
                    numbermembers=[
                        ipd.NumberMember(
                            name="temperature",
                            # The label states the unit (indilib's convention), so clients need not guess.
                            label="Temperature (C)",
                            format="%3.1f",
                            min=str(int(TARGET_MIN)),
                            max=str(int(TARGET_MAX)),
                            membervalue=f"{heater.temperature:.2f}",
                        )
                    ],
                ),
                ipd.NumberVector(
                    name="targetvector",
                    label="Target",
                    group="Values",
                    perm="rw",
                    state="Ok",
                    numbermembers=[
                        ipd.NumberMember(
                            name="target",
                            label="Target (C)",
                            format="%3.1f",
                            min=str(int(TARGET_MIN)),
                            max=str(int(TARGET_MAX)),
                            membervalue=f"{heater.target:.2f}",
                        )
                    ],
                ),
                ipd.BLOBVector(
                    name="logsvector",
                    label="Logs",
                    group="Control",
                    perm="ro",
                    state="Ok",
                    blobmembers=[
                        ipd.BLOBMember(
                            name="templogs", label="Temperature logs", blobformat=".csv"
                        )
                    ],
                ),
                ipd.SwitchVector(
                    name="switchvector",
                    label="Logs Control",
                    group="Control",
                    perm="rw",
                    rule="AtMostOne",
                    state="Ok",
                    switchmembers=[
                        ipd.SwitchMember(
                            name="switchmember", label="Logs", membervalue="Off"
                        )
                    ],
                ),
            ],
        )
        devices = [thermostat] if extras is None else [thermostat, extras.device]
        super().__init__(*devices)

    async def stop_requested_within(self, seconds: float) -> bool:
        """Wait up to *seconds*; return True as soon as shutdown was requested, False after the wait."""
        try:
            await asyncio.wait_for(self.shutdownrequested.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def rxevent(self, event: Any) -> None:
        """Dispatch a client's new*Vector to the device it is meant for."""
        # This runs inside IPyServer's task group: an exception escaping here would stop the whole server.
        try:
            if event.devicename == THERMOSTAT:
                await self._thermostat_command(event)
            elif self._extras is not None and event.devicename == EXTRAS:
                await self._extras.command(event)
        except Exception:
            _LOGGER.exception(
                "Failed to handle %s %s.%s",
                type(event).__name__,
                event.devicename,
                event.vectorname,
            )

    async def _thermostat_command(self, event: Any) -> None:
        """Handle a new target or a switch of the temperature logs."""
        if (
            isinstance(event, ipd.newNumberVector)
            and event.vectorname == "targetvector"
            and "target" in event
        ):
            await self._set_target(event.vector, event["target"])
        elif (
            isinstance(event, ipd.newSwitchVector)
            and event.vectorname == "switchvector"
            and "switchmember" in event
        ):
            await self._switch_logs(event.vector, event["switchmember"] == "On")

    async def _set_target(self, vector: Any, text: str) -> None:
        """Accept a target in range (decimal or sexagesimal) or answer with state Alert."""
        try:
            target = self.indi_number_to_float(text)
        except TypeError:
            target = math.nan
        if not math.isfinite(target):
            await vector.send_setVector(state="Alert", message="Invalid target")
            return
        if not TARGET_MIN <= target <= TARGET_MAX:
            await vector.send_setVector(state="Alert", message="Target out of range")
            return
        self._heater.target = target
        vector["target"] = f"{target:.2f}"
        await vector.send_setVector(state="Ok", message=f"Target set to {target:.2f}")

    async def _switch_logs(self, vector: Any, on: bool) -> None:
        """Start or stop recording temperature logs and confirm it."""
        self._templog.switch(on, utcnow())
        state = "On" if self._templog.recording else "Off"
        vector["switchmember"] = state
        await vector.send_setVector(state="Ok")
        await self[THERMOSTAT].send_device_message(
            message=f"Log reporting is now {state}"
        )

    async def hardware(self) -> None:
        """Take a reading every poll interval; send it, and any finished log file, to the clients."""
        if self._extras is not None:
            self.add_background(self._extras.run(self))
        device = self[THERMOSTAT]
        temperature_vector = device["temperaturevector"]
        logs_vector = device["logsvector"]
        while not await self.stop_requested_within(self._poll):
            now = utcnow()
            temperature = self._heater.step()
            self._templog.record(now, temperature)
            temperature_vector["temperature"] = f"{temperature:.2f}"
            await temperature_vector.send_setVector(timestamp=now)
            logfile = self._templog.pop_finished()
            if logfile is not None:
                logs_vector.set_blobsize("templogs", len(logfile))
                logs_vector["templogs"] = logfile
                await logs_vector.send_setVectorMembers(
                    timestamp=now, members=["templogs"]
                )


class _EndOfStreamReader:
    """Reader for an IPyServer client connection that reports end of stream as a dropped connection."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        """Wrap *reader*; IPyServer only ever calls read()."""
        self._reader = reader

    async def read(self, n: int = -1) -> bytes:
        """Read up to *n* bytes; raise ConnectionResetError at end of stream instead of returning b""."""
        data = await self._reader.read(n)
        if not data:
            raise ConnectionResetError("the client closed the connection")
        return data


class EndOfStreamAwareServer(IPyServer):
    """IPyServer that frees a client connection when the client closes it (no busy loop)."""

    async def handle_data(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection."""
        await super().handle_data(_EndOfStreamReader(reader), writer)


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, not {text!r}"
        )
    return value


def _target(text: str) -> float:
    value = float(text)
    if not TARGET_MIN <= value <= TARGET_MAX:
        raise argparse.ArgumentTypeError(
            f"must be between {TARGET_MIN:g} and {TARGET_MAX:g}, not {text!r}"
        )
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a TCP port (0 = any free port), not {text!r}"
        )
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="INDI thermostat simulator (indipydriver / indipyserver)."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=7624,
        help="TCP port (default 7624, 0 = any free port)",
    )
    parser.add_argument(
        "--poll",
        type=_positive_float,
        default=10.0,
        help="seconds between temperature readings",
    )
    parser.add_argument(
        "--logperiod",
        type=_positive_float,
        default=300.0,
        help="seconds per .csv log file",
    )
    parser.add_argument(
        "--target",
        type=_target,
        default=DEFAULT_TARGET,
        help="initial target (-50..99)",
    )
    parser.add_argument(
        "--extras",
        action="store_true",
        help="add the Extras device (Light, Text, sexagesimal)",
    )
    parser.add_argument(
        "--cycle",
        type=_positive_float,
        default=6.0,
        help="seconds per step of the Extras cycle",
    )
    parser.add_argument(
        "--steady",
        action="store_true",
        help="the Extras device only updates its values: no deleting and re-defining itself",
    )
    parser.add_argument(
        "--maxconnections", type=int, choices=range(1, 11), default=5, metavar="1..10"
    )
    parser.add_argument(
        "--upstream-eof",
        action="store_true",
        help="keep IPyServer's own handling of a closed client connection (busy loop until a write fails)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="log at DEBUG level, including the XML traffic",
    )
    return parser.parse_args(argv)


async def _wait_listening(
    server: Any, running: asyncio.Task[None]
) -> tuple[str, int] | None:
    """Return the address the server listens on, or None if it stopped or did not start in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LISTEN_TIMEOUT
    while not running.done() and loop.time() < deadline:
        listener = server.server
        if listener is not None and listener.is_serving() and listener.sockets:
            host, port = listener.sockets[0].getsockname()[:2]
            return str(host), int(port)
        await asyncio.sleep(0.005)
    return None


async def serve(options: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT (exit status 0) or until it ends by itself (status 1)."""
    extras = Extras(options.cycle, steady=options.steady) if options.extras else None
    driver = ThermostatDriver(
        Heater(options.target), TemperatureLog(options.logperiod), options.poll, extras
    )
    driver.debug_enable = options.debug
    server_class = IPyServer if options.upstream_eof else EndOfStreamAwareServer
    server = server_class(
        driver,
        host=options.host,
        port=options.port,
        maxconnections=options.maxconnections,
    )

    stop_requested = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        _LOGGER.info("%s received: shutting down", signum.name)
        stop_requested.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    running: asyncio.Task[None] = asyncio.create_task(server.asyncrun())
    address = await _wait_listening(server, running)
    if address is None:
        print(
            f"indi_thermostat: could not listen on {options.host}:{options.port}",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"serving on {address[0]}:{address[1]}", flush=True)

    stopper = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not running.done():
        # shutdown() stops the drivers, closes the listening socket and the client connections.
        server.shutdown()
        await asyncio.wait({running}, timeout=SHUTDOWN_GRACE)
        if not running.done():
            _LOGGER.info("cancelling IPyServer's tasks still waiting after shutdown()")
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        _LOGGER.info("server stopped")
        return 0
    _LOGGER.error("the server stopped by itself")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse the arguments, set up logging and serve."""
    options = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if options.debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
