"""A Gentec-EO MAESTRO power/energy meter emulator, on a pseudo-terminal and/or TCP (like ser2net).

It behaves as the MAESTRO manual (V6 §3.4) and the field drivers describe the real meter:

* commands are ``*`` + three letters + fixed-width parameters, with no terminator (CR/LF/space
  tolerated), any case; unknown ones answer ``Error 1: Command not found``; setters answer nothing;
* replies end in CR LF. Labelled replies use the real firmware's ``Label: value`` (what the Tango
  device server and QCoDeS parse); ``manual_spacing`` gives the manual's ``Label : value``;
* ``*NVU`` says ``New Data Available`` once a pulse came since the last ``*CVU``; ``*CVU`` returns the
  displayed value (``legacy`` gives ``Current Value : x``) and clears it;
* ``*CAU`` streams one line per pulse (energy) or per sample (power) until ``*CSU``; commands are
  still answered meanwhile (the manual's Ethernet example sends commands while ``*CAU`` runs);
* pulses come at ``rate`` Hz with Gaussian noise; an over-range pulse is ``3.40282e+038``.

Faults can be injected (garbage lines, half lines, wrong encoding, silence) and the meter unplugged
(pty closed, TCP server and connections gone) and plugged back (a new pty behind the same ``link``
symlink, as /dev/serial/by-id does). Every value it produced and every value it put on the wire is
recorded, so tests compare statistics exactly.

Run standalone: ``python -m simulators.gentec_maestro --link /tmp/maestro --tcp-port 5025 --rate 10``;
it prints one ``READY pty=... link=... tcp=...`` line once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import errno
import fcntl
import logging
import math
import os
from pathlib import Path
import random
import signal
import sys
import termios
import tty
from typing import Self

_LOGGER = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
OVER_RANGE_TEXT = "3.40282e+038"
MAX_OUTPUT_BACKLOG = 65536
"""Bytes kept for a reader that does not read (a real USB serial port drops the rest)."""
MAX_STREAM_HZ = 200.0

MODE_POWER = 0
MODE_ENERGY = 1
MODE_NO_DETECTOR = 7

# Parameter widths of the native setters (V6 p.60-71); every other command takes none.
ARITY = {
    "SCS": 2,
    "PWC": 5,
    "STL": 4,
    "SAS": 1,
    "SSE": 1,
    "ANT": 1,
    "ATT": 1,
    "ANO": 1,
    "SS1": 1,
    "MUL": 8,
    "OFF": 8,
}
_RANGE_MANTISSAS = (1, 3, 10, 30, 100, 300)
_RANGE_PREFIXES = ("p", "n", "u", "m", "", "k", "M")


def dvs_text(index: int) -> str:
    """Return a range as ``*DVS`` lists it (``100 m``, ``1``, ``3 k``)."""
    decade, position = divmod(index, len(_RANGE_MANTISSAS))
    prefix = _RANGE_PREFIXES[decade]
    return f"{_RANGE_MANTISSAS[position]} {prefix}".rstrip()


def _status_lines(name: str, serial: str, meter: MaestroMeter) -> list[str]:
    """Return the ``*STS`` structure: 32-bit values as LSB/MSB words, text two bytes a word."""
    words: dict[int, int] = {
        0x00: 3,
        0x02: 3,
        0x06: meter.range_index,
        0x08: max(meter.valid_ranges),
        0x0A: min(meter.valid_ranges),
        0x0C: meter.wavelength,
        0x0E: meter.max_wavelength,
        0x10: meter.min_wavelength,
    }

    def pack(text: str, first: int, last: int) -> None:
        data = text.encode("ascii") + b"\0"
        data += b"\0" * (len(data) % 2)
        for offset in range(0, len(data), 2):
            address = first + offset // 2
            if address > last:
                break
            words[address] = data[offset] | (data[offset + 1] << 8)

    pack(name, 0x1A, 0x29)
    pack(serial, 0x2A, 0x31)
    lines = [
        f":0{address:04X}{words.get(address, 0):04X}"
        for address in range(max(words) + 1)
    ]
    return [*lines, ":100000000"]


@dataclass
class Measurement:
    """One value the meter produced: its value (None: over-range) and what became of it."""

    value: float | None
    text: str
    streamed: bool = False
    damaged: bool = False
    """It went out right after a half line, so the two merged on the wire."""


@dataclass
class MaestroMeter:
    """The meter's state and its answers; no I/O (the emulator below does that)."""

    model: str = "MAESTRO"
    firmware: str = "1.00.18"
    detector: str = "QE25LP-S-MB"
    detector_serial: str = "235792"
    mode: int = MODE_ENERGY
    base_value: float = 1.0e-3
    noise: float = 0.05
    seed: int = 1
    valid_ranges: tuple[int, ...] = (17, 18, 19, 20, 21, 22, 23, 24, 25)
    range_index: int = 20
    autoscale: bool = False
    wavelength: int = 1064
    default_wavelength: int = 1064
    min_wavelength: int = 193
    max_wavelength: int = 10600
    trigger_level: float = 2.0
    legacy: bool = False
    manual_spacing: bool = False
    streaming: bool = False
    new_data: bool = False
    displayed: str = "0.000000e+00"
    produced: list[Measurement] = field(default_factory=list)
    answered: list[float | None] = field(default_factory=list)
    """Values sent as ``*CVU`` replies, in order."""
    over_range_next: int = 0
    commands: list[str] = field(default_factory=list)
    version_reply: str | None = None
    """What ``*VER`` answers instead (another device on the port)."""

    def __post_init__(self) -> None:
        """Seed the noise."""
        self._random = random.Random(self.seed)

    # ------------------------------------------------------------------ measurements

    def measure(self) -> Measurement | None:
        """Produce the next pulse (energy) or sample (power); None when no detector."""
        if self.mode == MODE_NO_DETECTOR:
            return None
        if self.over_range_next > 0:
            self.over_range_next -= 1
            measurement = Measurement(None, OVER_RANGE_TEXT)
        else:
            value = self.base_value * (1.0 + self.noise * self._random.gauss(0.0, 1.0))
            text = f"{abs(value):.6e}"
            measurement = Measurement(float(text), text)
        self.produced.append(measurement)
        self.displayed = measurement.text
        self.new_data = not self.streaming
        measurement.streamed = self.streaming
        return measurement

    # ------------------------------------------------------------------ commands

    def _label(self, label: str, value: object) -> str:
        return f"{label} : {value}" if self.manual_spacing else f"{label}: {value}"

    def answer(self, name: str, parameter: str) -> list[str]:
        """Run one command; return its reply lines (none for a setter)."""
        self.commands.append(f"*{name}{parameter}")
        handler: Callable[[str], list[str]] | None = getattr(
            self, f"_cmd_{name.lower()}", None
        )
        if handler is None:
            return ["Error 1: Command not found"]
        return handler(parameter)

    def _cmd_ver(self, _parameter: str) -> list[str]:
        if self.version_reply is not None:
            return [self.version_reply]
        return [f"{self.model} Version {self.firmware}"]

    def _cmd_cvu(self, _parameter: str) -> list[str]:
        self.new_data = False
        measurement_value = (
            None if self.displayed == OVER_RANGE_TEXT else float(self.displayed)
        )
        self.answered.append(measurement_value)
        if self.legacy:
            return [f"Current Value : {self.displayed}"]
        return [self.displayed]

    def _cmd_nvu(self, _parameter: str) -> list[str]:
        return ["New Data Available" if self.new_data else "New Data Not Available"]

    def _cmd_cau(self, _parameter: str) -> list[str]:
        self.streaming = True
        return []

    def _cmd_csu(self, _parameter: str) -> list[str]:
        self.streaming = False
        return []

    def _cmd_gmd(self, _parameter: str) -> list[str]:
        return [self._label("Mode", self.mode)]

    def _cmd_gwl(self, _parameter: str) -> list[str]:
        return [self._label("PWC", self.wavelength)]

    def _cmd_pwc(self, parameter: str) -> list[str]:
        # Zero or an out-of-range value restores the calibration wavelength (V6 p.67).
        with contextlib.suppress(ValueError):
            nanometres = int(parameter)
            if self.min_wavelength <= nanometres <= self.max_wavelength:
                self.wavelength = nanometres
            else:
                self.wavelength = self.default_wavelength
        return []

    def _cmd_gtl(self, _parameter: str) -> list[str]:
        level = self.trigger_level
        text = f"{level:.1f}" if round(level * 10) == level * 10 else f"{level:.2f}"
        return [self._label("Trigger Level", text)]

    def _cmd_stl(self, parameter: str) -> list[str]:
        with contextlib.suppress(ValueError):
            level = float(parameter)
            if 0.1 <= level <= 99.9:
                self.trigger_level = level
        return []

    def _cmd_gcr(self, _parameter: str) -> list[str]:
        return [self._label("Range", self.range_index)]

    def _cmd_scs(self, parameter: str) -> list[str]:
        with contextlib.suppress(ValueError):
            index = int(parameter)
            if index in self.valid_ranges:
                self.range_index = index
                self.autoscale = False
        return []

    def _cmd_ssu(self, _parameter: str) -> list[str]:
        higher = [index for index in self.valid_ranges if index > self.range_index]
        if higher:
            self.range_index = higher[0]
        return []

    def _cmd_ssd(self, _parameter: str) -> list[str]:
        lower = [index for index in self.valid_ranges if index < self.range_index]
        if lower:
            self.range_index = lower[-1]
        return []

    def _cmd_gas(self, _parameter: str) -> list[str]:
        return [self._label("AutoScale", int(self.autoscale))]

    def _cmd_sas(self, parameter: str) -> list[str]:
        if parameter in ("0", "1"):
            self.autoscale = parameter == "1"
        return []

    def _cmd_dvs(self, _parameter: str) -> list[str]:
        return [f"[{index:02d}] : {dvs_text(index)}" for index in self.valid_ranges]

    def _cmd_sts(self, _parameter: str) -> list[str]:
        if self.mode == MODE_NO_DETECTOR:
            return [":100000000"]
        return _status_lines(self.detector, self.detector_serial, self)

    def _cmd_gzo(self, _parameter: str) -> list[str]:
        return [self._label("Zero", 0)]

    def _cmd_sou(self, _parameter: str) -> list[str]:
        return []

    def _cmd_cou(self, _parameter: str) -> list[str]:
        return []


class CommandReader:
    """Cut the byte stream into commands: ``*`` + 3 letters + the command's parameter width."""

    def __init__(self) -> None:
        """Start outside any command."""
        self._current: str | None = None

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """Return the commands ``data`` completes, as (mnemonic, parameter)."""
        done: list[tuple[str, str]] = []
        for char in data.decode("latin-1"):
            if char == "*":
                self._finish(done)
                self._current = ""
            elif char in "\r\n ":
                self._finish(done)
            elif self._current is not None:
                self._current += char
                name = self._current[:3].upper()
                if len(self._current) >= 3 and len(self._current) - 3 >= ARITY.get(
                    name, 0
                ):
                    self._finish(done)
        return done

    def _finish(self, done: list[tuple[str, str]]) -> None:
        current, self._current = self._current, None
        if current:
            done.append((current[:3].upper(), current[3:]))


class _Port:
    """One way in: the pty master or a TCP connection; output buffered, dropped past a backlog."""

    def __init__(self, emulator: MaestroEmulator) -> None:
        self.emulator = emulator
        self.reader = CommandReader()

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _PtyPort(_Port):
    def __init__(self, emulator: MaestroEmulator) -> None:
        super().__init__(emulator)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)
        for fd in (self.master,):
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self.slave)
        self._backlog = bytearray()
        self.max_backlog = MAX_OUTPUT_BACKLOG
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)
        self._writing = False
        self.closed = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno == errno.EIO:
                # No process has the slave open right now; keep the device "plugged".
                return
            raise
        self.emulator.received(self, data)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self._backlog += data
        if len(self._backlog) > self.max_backlog:
            del self._backlog[: len(self._backlog) - self.max_backlog]
        self._flush()

    def _flush(self) -> None:
        while self._backlog:
            try:
                written = os.write(self.master, self._backlog)
            except BlockingIOError:
                break
            except OSError:
                self._backlog.clear()
                break
            del self._backlog[:written]
        if self._backlog and not self._writing:
            self._loop.add_writer(self.master, self._flush)
            self._writing = True
        elif not self._backlog and self._writing:
            self._loop.remove_writer(self.master)
            self._writing = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.master)
        if self._writing:
            self._loop.remove_writer(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class _TcpPort(_Port, asyncio.Protocol):
    def __init__(self, emulator: MaestroEmulator) -> None:
        _Port.__init__(self, emulator)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=MAX_OUTPUT_BACKLOG)
        self.emulator.tcp_ports.add(self)

    def data_received(self, data: bytes) -> None:
        self.emulator.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.emulator.tcp_ports.discard(self)
        self.transport = None

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() < MAX_OUTPUT_BACKLOG:
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            # Abort, as a ser2net that is killed does: no orderly flush.
            self.transport.abort()


class MaestroEmulator:
    """The meter on a pty (``pty_path``, ``link``) and/or TCP (``tcp_port``), with pulses and faults.

    Use ``async with MaestroEmulator(...) as meter`` on a running loop, or ``start()``/``stop()``.
    """

    def __init__(
        self,
        *,
        rate: float = 10.0,
        pty: bool = True,
        tcp: bool = False,
        tcp_port: int = 0,
        link: Path | None = None,
        meter: MaestroMeter | None = None,
        pulses: bool = True,
    ) -> None:
        """Describe the emulator; nothing opens before start()."""
        self.meter = meter or MaestroMeter()
        self.rate = rate
        self.use_pty = pty
        self.use_tcp = tcp
        self.tcp_port = tcp_port
        self.link = link
        self.silent = False
        self.pty: _PtyPort | None = None
        self.tcp_ports: set[_TcpPort] = set()
        self._server: asyncio.Server | None = None
        self._pulse_handle: asyncio.TimerHandle | None = None
        self._pulses_wanted = pulses
        self._pulse_start = 0.0
        self._pulse_number = 0
        self._damage_next = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.damaged: list[str] = []
        """Lines sent right after a half line (the two merge on the wire)."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def pty_path(self) -> str:
        """Return the slave device of the current pty."""
        assert self.pty is not None, "no pty (unplugged, or started without one)"
        return self.pty.path

    @property
    def device(self) -> str:
        """Return what a client opens: the link if there is one, else the pty."""
        return str(self.link) if self.link is not None else self.pty_path

    @property
    def url(self) -> str:
        """Return the pyserial URL of the TCP side."""
        return f"socket://{LOOPBACK}:{self.tcp_port}"

    async def start(self) -> None:
        """Plug the meter in and start the pulses."""
        await self.plug()
        if self._pulses_wanted:
            self.start_pulses()

    async def stop(self) -> None:
        """Stop pulses, unplug, remove the link; leaves no timer, fd or socket."""
        self.stop_pulses()
        await self.unplug()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    async def __aenter__(self) -> Self:
        """Start."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop."""
        await self.stop()

    async def plug(self) -> None:
        """Open a new pty (and point the link at it) and/or listen on TCP."""
        if self.use_pty and self.pty is None:
            self.pty = _PtyPort(self)
            if self.link is not None:
                temporary = self.link.with_name(self.link.name + ".new")
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
                temporary.symlink_to(self.pty.path)
                temporary.replace(self.link)
        if self.use_tcp and self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _TcpPort(self), LOOPBACK, self.tcp_port, reuse_address=True
            )
            self.tcp_port = self._server.sockets[0].getsockname()[1]

    async def unplug(self) -> None:
        """Pull the cable: the pty closes, the TCP server and its connections go away."""
        if self.pty is not None:
            self.pty.close()
            self.pty = None
        if self._server is not None:
            self._server.close()
            for port in list(self.tcp_ports):
                port.close()
            await self._server.wait_closed()
            self._server = None
        self.meter.streaming = False

    # ------------------------------------------------------------------ pulses

    def start_pulses(self, rate: float | None = None) -> None:
        """Produce pulses at ``rate`` Hz from now on (exact schedule, no drift)."""
        self.stop_pulses()
        if rate is not None:
            self.rate = rate
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        self._pulse_start = loop.time()
        self._pulse_number = 0
        self._schedule_pulse(loop)

    def stop_pulses(self) -> None:
        """Stop producing pulses."""
        if self._pulse_handle is not None:
            self._pulse_handle.cancel()
            self._pulse_handle = None

    def _schedule_pulse(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pulse_number += 1
        when = self._pulse_start + self._pulse_number / self.rate
        self._pulse_handle = loop.call_at(when, self._pulse, loop)

    def _pulse(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pulse()
        self._schedule_pulse(loop)

    def pulse(self) -> Measurement | None:
        """Produce one pulse now (streamed if the meter streams)."""
        measurement = self.meter.measure()
        if measurement is not None and measurement.streamed and not self.silent:
            measurement.damaged = self._damage_next
            self._send_line(measurement.text)
        return measurement

    @property
    def streamed_values(self) -> list[float | None]:
        """Return the values that went out as intact stream lines."""
        return [m.value for m in self.meter.produced if m.streamed and not m.damaged]

    # ------------------------------------------------------------------ faults

    def inject(self, data: bytes) -> None:
        """Put raw bytes on the wire."""
        self._send(data)

    def inject_garbage(self, size: int = 24) -> None:
        """Send a line of random bytes (any value but CR/LF), then CR LF."""
        rng = random.Random(size)
        garbage = bytes(
            rng.choice([*range(10), 11, 12, *range(14, 256)]) for _ in range(size)
        )
        self._send(garbage + b"\r\n")

    def inject_wrong_encoding(self) -> None:
        """Send a value line in UTF-16 (not ASCII)."""
        self._send("1.000000e-03\r\n".encode("utf-16"))

    def inject_half_line(self) -> None:
        """Send the first half of a value line without its end; the next line merges with it."""
        self._send(b"9.8765")
        self._damage_next = True

    def inject_oversized_line(self, size: int = 4096) -> None:
        """Send a very long line of digits without a line end, then one line end."""
        self._send(b"1" * size + b"\r\n")

    # ------------------------------------------------------------------ I/O

    def received(self, port: _Port, data: bytes) -> None:
        """Handle bytes from a client."""
        self.bytes_in += len(data)
        for name, parameter in port.reader.feed(data):
            if self.silent:
                continue
            for line in self.meter.answer(name, parameter):
                self._send_line(line)

    def _send_line(self, text: str) -> None:
        if self._damage_next:
            self._damage_next = False
            self.damaged.append(text)
        self._send(text.encode("ascii") + b"\r\n")

    def _send(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self.pty is not None:
            self.pty.send(data)
        for port in list(self.tcp_ports):
            port.send(data)


# ---------------------------------------------------------------------------------- standalone


async def _serve(args: argparse.Namespace) -> None:
    meter = MaestroMeter(
        mode=MODE_POWER if args.power else MODE_ENERGY,
        base_value=args.value,
        noise=args.noise,
        seed=args.seed,
        legacy=args.legacy,
        manual_spacing=args.manual_spacing,
    )
    emulator = MaestroEmulator(
        rate=args.rate,
        pty=not args.no_pty,
        tcp=args.tcp_port is not None,
        tcp_port=args.tcp_port or 0,
        link=Path(args.link) if args.link else None,
        meter=meter,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await emulator.start()
    parts = ["READY"]
    if emulator.pty is not None:
        parts.append(f"pty={emulator.pty_path}")
    if emulator.link is not None:
        parts.append(f"link={emulator.link}")
    if emulator.use_tcp:
        parts.append(f"tcp={emulator.tcp_port}")
    print(" ".join(parts), flush=True)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--link", help="symlink to the pty (like /dev/serial/by-id/...)"
    )
    parser.add_argument("--no-pty", action="store_true", help="no pseudo-terminal")
    parser.add_argument(
        "--tcp-port", type=int, help="also listen on 127.0.0.1:PORT (0: any)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="pulses per second")
    parser.add_argument(
        "--value", type=float, default=1.0e-3, help="mean reading (J or W)"
    )
    parser.add_argument(
        "--noise", type=float, default=0.05, help="relative noise (sigma)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--power", action="store_true", help="a power head (W) instead of energy (J)"
    )
    parser.add_argument(
        "--legacy", action="store_true", help="*CVU answers 'Current Value : x'"
    )
    parser.add_argument(
        "--manual-spacing",
        action="store_true",
        help="'Mode : 0' as the manual prints it",
    )
    args = parser.parse_args(argv)
    if args.rate > MAX_STREAM_HZ or math.isnan(args.rate):
        parser.error(f"--rate must be at most {MAX_STREAM_HZ:g}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
