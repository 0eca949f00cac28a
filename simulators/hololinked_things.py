"""hololinked 0.4.2 Things served over HTTP for the tests and scripts/develop (run it with .venv-peers).

Two Things, chosen with --thing:

maestro  (class GentecMaestroEnergyMeter, id "energy-meter"), modelled on the "Event Descriptors" page of
    hololinked's documentation: a simulated Gentec-EO Maestro whose acquisition loop pushes

        data_point_event  {"timestamp": "HH:MM:SS.mmm", "energy": J or null}   (schema Energy)
        statistics_event  {"min", "max", "avg": J, "pulse_count": >= 0}         (schema Statistics)

    one of each per pulse, every measurement_gap seconds. Energies are about 1 mJ with 5 % noise; now and then the
    meter has no new data (every --nan-every pulses, else 5 % at random) and the energy is NaN, which hololinked
    sends as null and which the statistics skip. Properties: wavelength (nm, 190..25000, writable, observable; the
    simulated head only takes 190..2500 nm and refuses the rest with the Thing's own error), measurement_gap (s,
    writable), statistics_enabled (writable boolean), acquiring (read-only, observable), trigger_level (%, read-only,
    observable), version (read-only). Actions: start_acquisition, stop_acquisition, reset_statistics (no input) and
    set_trigger_level(level) -> "*STLxx.x" (0.1..99.9 %, else the Thing's error).

bench  (class ThermalStage, id "thermal-stage"): a different Thing with other events and every property type.
    Events: temperature_event {"timestamp": epoch s, "temperature": °C, "heater_on": bool, "phase": ramp|hold|cool}
    and alarm_event (a bare string). Properties: setpoint (°C, -20..150, writable, observable), ramp_mode (enum,
    writable), operator (string, writable), sample_id (string, read-only), heater_power (W, read-only, observable),
    interlock (read-only boolean), enabled (writable boolean, observable), cycles (integer 0..100, writable).
    Actions: abort (no input), ramp_to(target, rate) -> {"target", "eta_s"}, emit_reading(temperature, heater_on,
    phase) and raise_alarm(text), which push one event each, so a test knows exactly what was pushed.

Security: --basic-user USER with the password in the environment variable HOLOLINKED_SIM_PASSWORD (bcrypt, HTTP
Basic), or --api-key-env NAME with an API key "prefix-<id>.<secret>" in the environment variable NAME (X-API-Key).
Both protect every route but /liveness (hololinked 0.4.2 protects the TD too).

Every push is also printed on stdout as one line "pushed <event> <JSON>", so a test can compare what Home Assistant
shows with what the Thing sent. Once the Thing answers /readiness the process prints "serving on HOST:PORT"
(flushed). SIGTERM or SIGINT stops the server and the process exits with status 0.

hololinked 0.4.2 API notes (the documentation drifts): Event(schema=...) not data_schema=; the class attribute name
gives the event's URL (data_point_event -> /data-point-event); actions with typed parameters get their input schema
from the signature (an explicit JSON input_schema would need jsonschema installed).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
import json
import math
import os
import random
import signal
import sys
import threading
import time
from typing import Any
import urllib.error
import urllib.request

from hololinked.core import Event, Thing, action
from hololinked.core.properties import Boolean, Integer, Number, Selector, String
from hololinked.server import stop
from pydantic import BaseModel, Field

READY_TIMEOUT = 20.0
HEAD_RANGE_NM = (190.0, 2500.0)
NO_DATA_PROBABILITY = 0.05
MEAN_ENERGY_J = 1e-3
NOISE = 0.05


def report(event: str, payload: object) -> None:
    """Tell the tests what was pushed (one line on stdout).

    One write of the whole line: stdout is unbuffered in the tests, where ``print`` writes the text
    and its newline separately, so a line from another thread could land between them.
    """
    sys.stdout.write(f"pushed {event} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _push(dispatcher: Any, name: str, payload: object) -> None:
    report(name, payload)
    dispatcher.push(payload)


def _publish(thing: Thing, name: str, value: object) -> None:
    """Change a read-only property (its getter reads ``_<name>_value``) and push its change event."""
    thing.__dict__[f"_{name}_value"] = value
    thing.parameters.descriptors[name].push_change_event(thing, value)


# --------------------------------------------------------------------------------------------------
# The meter


class Energy(BaseModel):
    """One pulse's energy."""

    timestamp: str
    energy: float | None = Field(json_schema_extra={"unit": "J"})


class Statistics(BaseModel):
    """Statistics of the valid pulses since the last reset."""

    min: float | None = Field(json_schema_extra={"unit": "J"})
    max: float | None = Field(json_schema_extra={"unit": "J"})
    avg: float | None = Field(json_schema_extra={"unit": "J"})
    pulse_count: int = Field(ge=0, description="Number of pulses detected")


class GentecMaestroEnergyMeter(Thing):
    """Simulated Gentec-EO Maestro energy meter: pushes every pulse and its running statistics."""

    wavelength = Number(
        default=1064.0,
        bounds=(190, 25000),
        observable=True,
        metadata={"unit": "nm"},
        doc="Wavelength correction of the detector head",
    )
    measurement_gap = Number(
        default=0.5,
        bounds=(0.01, 10),
        metadata={"unit": "s"},
        doc="Seconds between two pulses",
    )
    statistics_enabled = Boolean(default=True, doc="Push statistics after every pulse")
    acquiring = Boolean(
        default=False, readonly=True, observable=True, doc="Acquisition running"
    )
    trigger_level = Number(
        default=2.0,
        readonly=True,
        observable=True,
        metadata={"unit": "%"},
        doc="Trigger level",
    )
    version = String(default="MAESTRO Version 1.04.16", readonly=True, doc="Firmware")

    # Read-only properties cannot be set, not even by the Thing itself: they read an attribute that
    # _publish changes (and _publish pushes the change event).
    @acquiring.getter
    def _get_acquiring(self) -> bool:
        return bool(self.__dict__.get("_acquiring_value", False))

    @trigger_level.getter
    def _get_trigger_level(self) -> float:
        return float(self.__dict__.get("_trigger_level_value", 2.0))

    data_point_event = Event(schema=Energy)
    statistics_event = Event(schema=Statistics)

    def __init__(
        self, *, nan_every: int = 0, seed: int | None = None, **kwargs: Any
    ) -> None:
        """Prepare the simulated head; the acquisition starts with start_acquisition."""
        super().__init__(**kwargs)
        self._rng = random.Random(seed)
        self._nan_every = nan_every
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._pulses = 0
        self._valid: list[float] = []

    # The decorators return the function, not the property: the functions need names of their own.
    @wavelength.getter
    def _get_wavelength(self) -> float:
        return getattr(self, "_wavelength", 1064.0)

    @wavelength.setter
    def _set_wavelength(self, value: float) -> None:
        low, high = HEAD_RANGE_NM
        if not low <= value <= high:
            raise ValueError(
                f"wavelength {value:g} nm is outside the detector head's range {low:g}-{high:g} nm"
            )
        self._wavelength = value

    @action()
    def start_acquisition(self) -> None:
        """Start the acquisition loop."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._running.set()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
            _publish(self, "acquiring", True)

    @action()
    def stop_acquisition(self) -> None:
        """Stop the acquisition loop; nothing is pushed once this returns."""
        with self._lock:
            self._running.clear()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        _publish(self, "acquiring", False)

    @action()
    def reset_statistics(self) -> None:
        """Reset the statistics."""
        with self._lock:
            self._reset()

    @action()
    def set_trigger_level(self, level: float) -> str:
        """Set the trigger level in % (the meter's *STL command)."""
        if not 0.1 <= level <= 99.9:
            raise ValueError(f"trigger level {level:g} % is outside 0.1-99.9 %")
        _publish(self, "trigger_level", round(level, 1))
        return f"*STL{level:04.1f}"

    def _loop(self) -> None:
        while self._running.wait(0):
            # Waiting on the stop flag, not sleeping blindly: stop_acquisition returns at once.
            if not self._sleep(float(self.measurement_gap)):
                return
            self._pulse()

    def _sleep(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self._running.is_set():
                return False
            time.sleep(min(left, 0.05))
        return self._running.is_set()

    def _pulse(self) -> None:
        with self._lock:
            self._pulses += 1
            no_data = (
                self._pulses % self._nan_every == 0
                if self._nan_every
                else self._rng.random() < NO_DATA_PROBABILITY
            )
            energy = (
                math.nan
                if no_data
                else self._rng.gauss(MEAN_ENERGY_J, MEAN_ENERGY_J * NOISE)
            )
            if not no_data:
                self._valid.append(energy)
            stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
            _push(
                self.data_point_event,
                "data_point_event",
                {"timestamp": stamp, "energy": None if no_data else energy},
            )
            if self.statistics_enabled:
                valid = self._valid
                _push(
                    self.statistics_event,
                    "statistics_event",
                    {
                        "min": min(valid) if valid else None,
                        "max": max(valid) if valid else None,
                        "avg": sum(valid) / len(valid) if valid else None,
                        "pulse_count": len(valid),
                    },
                )


# --------------------------------------------------------------------------------------------------
# The second Thing


class Reading(BaseModel):
    """One reading of the stage."""

    timestamp: float
    temperature: float = Field(json_schema_extra={"unit": "°C"})
    heater_on: bool
    phase: str = Field(json_schema_extra={"enum": ["ramp", "hold", "cool"]})


class ThermalStage(Thing):
    """Simulated temperature stage of a sample holder."""

    setpoint = Number(
        default=25.0,
        bounds=(-20, 150),
        observable=True,
        metadata={"unit": "°C"},
        doc="Set point",
    )
    ramp_mode = Selector(
        objects=["linear", "step", "off"], default="linear", doc="Ramp mode"
    )
    operator = String(default="", doc="Who runs the sample")
    sample_id = String(default="S-0042", readonly=True, doc="Sample")
    heater_power = Number(
        default=0.0,
        readonly=True,
        observable=True,
        metadata={"unit": "W"},
        doc="Heater power",
    )

    @heater_power.getter
    def _get_heater_power(self) -> float:
        return float(self.__dict__.get("_heater_power_value", 0.0))

    interlock = Boolean(default=False, readonly=True, doc="Door interlock open")
    enabled = Boolean(default=True, observable=True, doc="Stage enabled")
    cycles = Integer(default=3, bounds=(0, 100), step=1, doc="Cycles")

    temperature_event = Event(schema=Reading)
    alarm_event = Event(schema={"type": "string"})

    @action()
    def abort(self) -> None:
        """Abort the ramp."""
        _publish(self, "heater_power", 0.0)

    @action()
    def ramp_to(self, target: float, rate: float = 1.0) -> dict[str, float]:
        """Ramp to a temperature at a rate in °C/min."""
        if rate <= 0:
            raise ValueError("the rate must be positive")
        _publish(self, "heater_power", 12.5)
        return {
            "target": target,
            "eta_s": abs(target - float(self.setpoint)) / rate * 60,
        }

    @action()
    def emit_reading(self, temperature: float, heater_on: bool, phase: str) -> None:
        """Push one temperature_event with these values."""
        _push(
            self.temperature_event,
            "temperature_event",
            {
                "timestamp": time.time(),
                "temperature": temperature,
                "heater_on": heater_on,
                "phase": phase,
            },
        )

    @action()
    def raise_alarm(self, text: str) -> None:
        """Push one alarm_event with this text."""
        _push(self.alarm_event, "alarm_event", text)


# --------------------------------------------------------------------------------------------------
# Serving


def security_schemes(args: argparse.Namespace) -> list[Any]:
    """Return the security schemes the command line asked for."""
    schemes: list[Any] = []
    if args.basic_user:
        from hololinked.server.security import BcryptBasicSecurity  # noqa: PLC0415

        password = os.environ.get("HOLOLINKED_SIM_PASSWORD", "")
        schemes.append(BcryptBasicSecurity(username=args.basic_user, password=password))
    if args.api_key_env:
        from hololinked.server.security import (  # noqa: PLC0415
            APIKeyRecord,
            APIKeySecurity,
        )

        key = os.environ[args.api_key_env]
        scheme = APIKeySecurity(name="simulator-api-key")
        now = datetime.now()
        scheme.record = APIKeyRecord(
            name="simulator-api-key",
            id=key.split(".", 1)[0].split("-", 1)[1],
            apikey_hash=scheme.hash(key),
            description="simulator",
            created_at=now,
            expiry_at=now + timedelta(days=1),
        )
        schemes.append(scheme)
    return schemes


def wait_ready(host: str, port: int, timeout: float) -> bool:
    """Poll /readiness (every Thing answers a ping) until it says 200, bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://{host}:{port}/readiness", timeout=1
            ) as reply:  # noqa: S310
                if reply.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    """Serve the Thing until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thing", choices=("maestro", "bench"), default="maestro")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--id", help="the Thing's id (default energy-meter / thermal-stage)"
    )
    parser.add_argument(
        "--gap", type=float, default=0.5, help="maestro: seconds between pulses"
    )
    parser.add_argument(
        "--nan-every", type=int, default=0, help="maestro: every Nth pulse has no data"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--no-autostart",
        action="store_true",
        help="maestro: wait for start_acquisition",
    )
    parser.add_argument("--basic-user")
    parser.add_argument("--api-key-env")
    args = parser.parse_args(argv)

    thing: Thing
    if args.thing == "maestro":
        thing = GentecMaestroEnergyMeter(
            id=args.id or "energy-meter", nan_every=args.nan_every, seed=args.seed
        )
        thing.measurement_gap = args.gap
    else:
        thing = ThermalStage(id=args.id or "thermal-stage")

    stopped = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thing.run_with_http_server(
        port=args.port,
        address=args.host,
        forked=True,
        print_welcome_message=False,
        security_schemes=security_schemes(args) or None,
    )
    if not wait_ready(args.host, args.port, READY_TIMEOUT):
        print(
            f"the Thing did not become ready on {args.host}:{args.port}",
            file=sys.stderr,
        )
        stop()
        return 1
    if args.thing == "maestro" and not args.no_autostart:
        thing.start_acquisition()
    print(f"serving on {args.host}:{args.port}", flush=True)
    stopped.wait()
    if isinstance(thing, GentecMaestroEnergyMeter):
        thing.stop_acquisition()
    stop(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
