"""A household of emulated Powersensor plugs and sensors on loopback (stdlib only; Python 3.11+).

What it emulates, from the reference note (powersensor-local 2.4.0, its fixtures, the DiUS mock):

* **Plugs** on their own 127.x address, UDP port 49476 (the vendor's client hard-codes it). Each
  answers ``discover()`` with ``{"type": "discovery", "ip": ..., "mac": ...}`` (the fields the
  vendor's scan reads; ``type`` is inferred from the client skipping such lines) and serves the
  subscription protocol: ``subscribe(N)`` leases the stream to the sender's address for N s
  (``subscribe(0)`` ends it; at most 5 at a time, a 6th is ignored), a
  ``{"type":"subscription","subtype":"warning"}`` line goes out 10 s (at most N/6 s) before the
  lease ends, ``..."expiry"}`` when it has ended. Every ``--plug-interval`` s (about 1 s on real
  plugs) each subscriber gets one datagram: the plug's own ``instant_power`` report, then the lines
  of the sensors it relays that reported since, newline-separated (the shapes of the vendor's
  fixtures: ``device``, ``mac``, ``role``, ``starttime``, ``duration``, ``power``, ``unit``,
  ``summation``/``summation_start``, plug ``voltage``/``current``/``active_current``/
  ``reactive_current``; sensors ``batteryMicrovolt``, ``rssi``, ``raw_rssi``; water
  ``average_flow``/``summation_volume``).
* **Sensors** relayed by a plug: house mains (``house-net``: consumption minus solar, negative when
  exporting), ``solar`` (negative generation) and ``water``, all reporting together every
  ``--sensor-interval`` s on whole-second windows (so house and solar start times match, as the
  vendor's household view expects).
* **A broadcast segment**: a socket on ``--broadcast`` (a 127.x address standing for the LAN's
  broadcast address; nothing is ever broadcast) where every plug hears ``discover()`` and answers
  from its own address, as plugs on one LAN do.

It is driven through a JSON-lines control port (``--control-port`` on 127.0.0.1): ``silence`` /
``resume`` a plug (it says nothing and answers nothing, its subscriptions kept) or a sensor (a flat
battery), ``reboot`` (its subscriptions forgotten), ``move`` a sensor to another plug, ``also`` (a
second plug in range relays the same reports too), ``address`` (the plug moves to another
127.x address, as after a DHCP change), ``inject`` raw bytes into a plug's stream (malformed lines),
``warn`` / ``expire`` subscriptions now, ``export`` on/off, ``reset`` a meter (its summation
restarts at a small non-zero value and ``summation_start`` is now), ``uncalibrated`` on/off (unit
``U``), ``invalid`` (the next report has unit ``I`` and no power), ``hold`` on/off (values stop
changing, for exact comparisons) and ``state`` (counters, subscribers and the last message of every
device). Every address it binds or sends to is checked to be in 127.0.0.0/8.

    python -m simulators.powersensor_plugs --control-port 7650
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field
import ipaddress
import json
import logging
import math
import random
import signal
import sys
import time
from typing import Any, cast

_LOGGER = logging.getLogger("powersensor_plugs")

PORT = 49476
MAX_SUBSCRIBERS = 5
WARN_BEFORE = 10.0
DEFAULT_PLUGS = (("246f280487a4", "127.0.0.11"), ("a4cf1276fc70", "127.0.0.12"))
DEFAULT_SENSORS = (
    ("bcddc247d1f5", "house-net", "246f280487a4"),
    ("bcddc247d289", "solar", "a4cf1276fc70"),
    ("bcddc247d338", "water", "a4cf1276fc70"),
)
DEFAULT_BROADCAST = "127.0.0.255"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def check_loopback(address: str) -> str:
    """Return ``address`` if it is in 127.0.0.0/8; the emulator never talks to anything else."""
    if ipaddress.IPv4Address(address) not in LOOPBACK:
        raise ValueError(f"{address} is not a loopback address (127.0.0.0/8)")
    return address


@dataclass
class Weather:
    """What the house does: consumption, solar generation, water use (seeded random walks)."""

    rng: random.Random
    consumption: float = 820.0
    solar: float = 310.0
    flow: float = 4.0
    export: bool = False
    hold: bool = False

    def step(self) -> None:
        """Move every figure a little (not while held)."""
        if self.hold:
            return
        self.consumption = min(
            4000.0, max(150.0, self.consumption + self.rng.gauss(0, 40))
        )
        target = 2600.0 if self.export else 310.0
        self.solar = max(
            0.0, self.solar + (target - self.solar) * 0.5 + self.rng.gauss(0, 15)
        )
        self.flow = min(12.0, max(0.0, self.flow + self.rng.gauss(0, 0.8)))


@dataclass
class Meter:
    """A summation and the time it last restarted."""

    start: float
    value: float

    def reset(self, now: float, value: float) -> None:
        """Restart the meter now, at a small value that is not zero (as real meters do)."""
        self.start = now
        self.value = value


@dataclass
class Sensor:
    """A battery sensor relayed by a plug."""

    mac: str
    role: str
    relay: str
    rng: random.Random
    meter: Meter
    volume: float = 132.1
    battery_uv: int = 3_803_104
    rssi: float = -89.0
    uncalibrated: bool = False
    invalid_next: bool = False
    silent: bool = False
    also: str | None = None
    """A second plug in range that relays the same reports too."""
    last: dict[str, Any] | None = None

    def report(self, starttime: int, duration: int, weather: Weather) -> dict[str, Any]:
        """Return the sensor's report for the window starting at ``starttime``."""
        if not weather.hold:
            self.battery_uv += self.rng.choice((-4096, 0, 0, 0, 4096))
            self.rssi = min(-60.0, max(-100.0, self.rssi + self.rng.gauss(0, 0.7)))
        raw_rssi = (
            round(self.rssi + self.rng.gauss(0, 1.5))
            if not weather.hold
            else round(self.rssi)
        )
        message: dict[str, Any] = {
            "starttime": starttime,
            "raw_rssi": raw_rssi,
            "device": "sensor",
            "rssi": self.rssi,
            "type": "instant_power",
            "summation_start": int(self.meter.start),
            "batteryMicrovolt": self.battery_uv,
            "mac": self.mac,
            "duration": duration,
            "role": self.role,
        }
        if self.invalid_next:
            self.invalid_next = False
            message["unit"] = "I"
        elif self.role == "water":
            flow = round(weather.flow, 1)
            if not weather.hold:
                self.volume += flow * duration / 60
            message.update(
                power=round(flow * 10),
                unit="L",
                summation=round(self.volume * 10),
                average_flow=flow,
                summation_volume=round(self.volume, 3),
            )
        else:
            watts = self._watts(weather)
            if not weather.hold:
                self.meter.value += watts * duration
            message.update(
                power=round(watts * 19.3) if self.uncalibrated else watts,
                unit="U" if self.uncalibrated else "w",
                summation=int(self.meter.value),
            )
        self.last = message
        return message

    def _watts(self, weather: Weather) -> int:
        if self.role == "solar":
            return -round(weather.solar)
        if self.role == "house-net":
            return round(weather.consumption - weather.solar)
        return round(weather.consumption / 10)


class _Segment(asyncio.DatagramProtocol):
    """The LAN's broadcast address: every plug hears a ``discover()`` sent here."""

    def __init__(self, network: PlugNetwork) -> None:
        self.network = network

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data.strip() == b"discover()":
            for plug in self.network.plugs.values():
                plug.answer_discovery((addr[0], addr[1]))


@dataclass(repr=False)
class Plug(asyncio.DatagramProtocol):
    """One plug: its own readings, the subscription protocol, the sensors it relays."""

    mac: str
    ip: str
    network: PlugNetwork
    rng: random.Random
    meter: Meter
    base_watts: float
    transport: asyncio.DatagramTransport | None = None
    subscribers: dict[tuple[str, int], float] = field(default_factory=dict)
    leases: dict[tuple[str, int], float] = field(default_factory=dict)
    warned: set[tuple[str, int]] = field(default_factory=set)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    silent: bool = False
    watts: float = 0.0
    volts: float = 240.0
    last: dict[str, Any] | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "subscribes",
                "unsubscribes",
                "refused",
                "discover_answers",
                "datagrams_sent",
                "warnings",
                "expiries",
            ),
            0,
        )
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the plug's socket (a DatagramTransport; Python 3.11's does not subclass it)."""
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Answer discover() and subscribe(N) (nothing at all while silent)."""
        if self.silent:
            return
        peer = (str(addr[0]), int(addr[1]))
        for raw in data.splitlines():
            line = raw.strip()
            if line == b"discover()":
                self.answer_discovery(peer)
            elif line.startswith(b"subscribe(") and line.endswith(b")"):
                try:
                    lease = int(line[len(b"subscribe(") : -1])
                except ValueError:
                    continue
                self.subscribe(peer, lease)

    def subscribe(self, peer: tuple[str, int], lease: int) -> None:
        """Start, renew or (lease 0) end the subscription of ``peer``."""
        if lease <= 0:
            if self.subscribers.pop(peer, None) is not None:
                self.counters["unsubscribes"] += 1
            self.leases.pop(peer, None)
            self.warned.discard(peer)
            return
        if peer not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
            self.counters["refused"] += 1
            return
        self.counters["subscribes"] += 1
        self.subscribers[peer] = time.monotonic() + lease
        self.leases[peer] = float(lease)
        self.warned.discard(peer)

    def answer_discovery(self, peer: tuple[str, int]) -> None:
        """Answer a ``discover()`` from ``peer`` (from the plug's own address)."""
        if self.silent or self.transport is None:
            return
        self.counters["discover_answers"] += 1
        answer = {"type": "discovery", "ip": self.ip, "mac": self.mac}
        self._send((json.dumps(answer) + "\n").encode(), peer)

    def tick(self, weather: Weather, duration: float) -> None:
        """Send this period's datagram to every subscriber; run the leases."""
        if self.silent or self.transport is None:
            return
        self._run_leases()
        lines = [self._own_report(weather, duration), *self.outbox]
        self.outbox.clear()
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        for peer in list(self.subscribers):
            self._send(data, peer)

    def broadcast_raw(self, data: bytes) -> None:
        """Send raw bytes to every subscriber (malformed lines mid-stream)."""
        for peer in list(self.subscribers):
            self._send(data, peer)

    def notice(self, subtype: str) -> None:
        """Send a subscription notice now; an expiry also ends the subscriptions."""
        data = json.dumps({"type": "subscription", "subtype": subtype}).encode() + b"\n"
        for peer in list(self.subscribers):
            self._send(data, peer)
        if subtype == "expiry":
            self.counters["expiries"] += len(self.subscribers)
            self.subscribers.clear()
            self.warned.clear()
        else:
            self.counters["warnings"] += len(self.subscribers)

    def _run_leases(self) -> None:
        now = time.monotonic()
        for peer, end in list(self.subscribers.items()):
            remaining = end - now
            notice = None
            if remaining <= 0:
                notice = "expiry"
                del self.subscribers[peer]
                self.warned.discard(peer)
                self.counters["expiries"] += 1
            elif (
                remaining <= min(WARN_BEFORE, self.leases.get(peer, 60.0) / 6)
                and peer not in self.warned
            ):
                notice = "warning"
                self.warned.add(peer)
                self.counters["warnings"] += 1
            if notice is not None:
                data = (
                    json.dumps({"type": "subscription", "subtype": notice}).encode()
                    + b"\n"
                )
                self._send(data, peer)

    def _own_report(self, weather: Weather, period: float) -> dict[str, Any]:
        duration = (
            period * self.rng.choice((0.96, 1.04)) if not weather.hold else period
        )
        if not weather.hold:
            self.watts = max(
                0.0, self.base_watts + self.rng.gauss(0, self.base_watts * 0.03 + 0.2)
            )
            self.volts = self.rng.gauss(240.0, 1.2)
            self.meter.value += self.watts * duration
        elif not self.watts:
            self.watts, self.volts = self.base_watts, 240.0
        active = self.watts / self.volts
        reactive = 0.05 + self.base_watts / 2000
        message = {
            "reactive_current": reactive,
            "type": "instant_power",
            "summation_start": self.meter.start,
            "count": 13,
            "duration": duration,
            "role": "appliance",
            "power": self.watts,
            "unit": "W",
            "device": "plug",
            "source": "BLE",
            "active_current": active,
            "mac": self.mac,
            "voltage": self.volts,
            "starttime": time.time() - duration,
            "current": math.hypot(active, reactive),
            "borrowed_summation": 0,
            "summation": self.meter.value,
        }
        self.last = message
        return message

    def _send(self, data: bytes, peer: tuple[str, int]) -> None:
        check_loopback(peer[0])
        if self.transport is not None:
            self.transport.sendto(data, peer)
            self.counters["datagrams_sent"] += 1

    def state(self) -> dict[str, Any]:
        """Return what a test may check: address, subscribers, counters, the last report."""
        return {
            "mac": self.mac,
            "ip": self.ip,
            "silent": self.silent,
            "subscribers": [f"{host}:{port}" for host, port in self.subscribers],
            "counters": dict(self.counters),
            "last": self.last,
        }


class PlugNetwork:
    """Plugs, sensors and the broadcast segment; ``command`` drives them (also in-process)."""

    def __init__(
        self,
        plugs: tuple[tuple[str, str], ...] = DEFAULT_PLUGS,
        sensors: tuple[tuple[str, str, str], ...] = DEFAULT_SENSORS,
        *,
        broadcast: str = DEFAULT_BROADCAST,
        port: int = PORT,
        plug_interval: float = 1.0,
        sensor_interval: int = 3,
        seed: int = 7,
        hold: bool = False,
    ) -> None:
        """Describe the household; nothing is bound before ``start``."""
        self.port = port
        self.broadcast = check_loopback(broadcast)
        self.plug_interval = plug_interval
        self.sensor_interval = max(1, int(sensor_interval))
        rng = random.Random(seed)
        self.weather = Weather(random.Random(rng.random()), hold=hold)
        self.plugs: dict[str, Plug] = {}
        for index, (mac, ip) in enumerate(plugs):
            self.plugs[mac] = Plug(
                mac,
                check_loopback(ip),
                self,
                random.Random(rng.random()),
                Meter(1770501947.113085, 5103988.143331 * (index + 1)),
                base_watts=(60.0, 4.5, 1200.0)[index % 3],
            )
        self.sensors: dict[str, Sensor] = {
            mac: Sensor(
                mac,
                role,
                relay,
                random.Random(rng.random()),
                Meter(
                    (1769972064, 1770530454, 1769972151)[index % 3],
                    (-281230401.0, -906357844.0, 1321.0)[index % 3],
                ),
            )
            for index, (mac, role, relay) in enumerate(sensors)
        }
        self._segment: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_window: int | None = None

    async def start(self) -> None:
        """Bind every plug and the segment, then start the clock."""
        loop = asyncio.get_running_loop()
        for plug in self.plugs.values():
            await self._bind(plug)
        self._segment, _ = await loop.create_datagram_endpoint(
            lambda: _Segment(self), local_addr=(self.broadcast, self.port)
        )
        self._task = loop.create_task(self._run(), name="powersensor emulator")

    async def close(self) -> None:
        """Stop the clock and close every socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for plug in self.plugs.values():
            if plug.transport is not None:
                plug.transport.close()
                plug.transport = None
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        await asyncio.sleep(0)  # let the transports call connection_lost

    async def _bind(self, plug: Plug) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: plug, local_addr=(check_loopback(plug.ip), self.port)
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            self._sensor_window()
            self.weather.step()
            for plug in self.plugs.values():
                plug.tick(self.weather, self.plug_interval)
            next_tick += self.plug_interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    def _sensor_window(self) -> None:
        """Every sensor reports once per window of ``sensor_interval`` whole seconds."""
        window = int(time.time()) // self.sensor_interval
        if self._last_window is None:
            self._last_window = window
            return
        if window == self._last_window:
            return
        self._last_window = window
        starttime = (window - 1) * self.sensor_interval
        for sensor in self.sensors.values():
            if sensor.silent:
                continue  # a flat battery, out of range
            report = sensor.report(starttime, self.sensor_interval, self.weather)
            for mac in dict.fromkeys((sensor.relay, sensor.also)):
                relay = self.plugs.get(mac) if mac is not None else None
                if relay is not None and not relay.silent:
                    relay.outbox.append(report)

    # ------------------------------------------------------------------ control

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one control command; return ``{"ok": True, ...}`` or ``{"ok": False, "error": ...}``."""
        try:
            return {"ok": True, **(await self._command(request))}
        except (KeyError, ValueError, OSError) as err:
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}

    async def _command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "state":
            return {
                "plugs": [plug.state() for plug in self.plugs.values()],
                "sensors": [
                    {"mac": s.mac, "role": s.role, "relay": s.relay, "last": s.last}
                    for s in self.sensors.values()
                ],
                "weather": {
                    "export": self.weather.export,
                    "hold": self.weather.hold,
                },
            }
        if cmd in ("export", "hold"):
            setattr(self.weather, cmd, bool(request["on"]))
            return {}
        if cmd in ("silence", "resume") and "sensor" in request:
            self.sensors[request["sensor"]].silent = cmd == "silence"
            return {}
        if cmd == "also":
            plug = request.get("plug")
            self.sensors[request["sensor"]].also = (
                None if plug is None else self.plugs[plug].mac
            )
            return {}
        if cmd in (
            "silence",
            "resume",
            "reboot",
            "warn",
            "expire",
            "inject",
            "address",
        ):
            plug = self.plugs[request["plug"]]
            if cmd == "silence":
                plug.silent = True
            elif cmd == "resume":
                plug.silent = False
            elif cmd == "reboot":
                plug.subscribers.clear()
                plug.warned.clear()
            elif cmd == "warn":
                plug.notice("warning")
            elif cmd == "expire":
                plug.notice("expiry")
            elif cmd == "inject":
                plug.broadcast_raw(bytes.fromhex(request["hex"]))
            else:
                await self._move_plug(plug, check_loopback(request["ip"]))
            return {}
        if cmd == "move":
            sensor = self.sensors[request["sensor"]]
            sensor.relay = self.plugs[request["plug"]].mac
            return {}
        if cmd == "reset":
            target = request["mac"]
            now = time.time()
            if target in self.sensors:
                self.sensors[target].meter.reset(now, 1234.0)
                self.sensors[target].volume = 0.4
            else:
                self.plugs[target].meter.reset(now, 21.0)
            return {}
        if cmd == "uncalibrated":
            self.sensors[request["sensor"]].uncalibrated = bool(request["on"])
            return {}
        if cmd == "invalid":
            self.sensors[request["sensor"]].invalid_next = True
            return {}
        raise ValueError(f"unknown command {cmd!r}")

    async def _move_plug(self, plug: Plug, ip: str) -> None:
        """Give the plug a new address: its old socket closes, its subscriptions are gone."""
        if plug.transport is not None:
            plug.transport.close()
            plug.transport = None
        plug.subscribers.clear()
        plug.warned.clear()
        plug.ip = ip
        await self._bind(plug)


async def _serve_control(network: PlugNetwork, host: str, port: int) -> asyncio.Server:
    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                except ValueError:
                    response: dict[str, Any] = {"ok": False, "error": "not JSON"}
                else:
                    response = await network.command(request)
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    # A command may carry a whole datagram (hex): room for the largest one.
    return await asyncio.start_server(handle, check_loopback(host), port, limit=1 << 20)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--plug",
        action="append",
        metavar="MAC@IP",
        help="a plug (repeat for more); default: two plugs on 127.0.0.11 and 127.0.0.12",
    )
    parser.add_argument(
        "--broadcast",
        default=DEFAULT_BROADCAST,
        help="the segment's 127.x broadcast stand-in",
    )
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--control-host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--plug-interval", type=float, default=1.0)
    parser.add_argument("--sensor-interval", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def _plug_arg(item: str) -> tuple[str, str]:
    mac, _, ip = item.partition("@")
    return mac.lower(), check_loopback(ip)


async def _main(args: argparse.Namespace) -> int:
    plugs: tuple[tuple[str, str], ...] = DEFAULT_PLUGS
    sensors: tuple[tuple[str, str, str], ...] = DEFAULT_SENSORS
    if args.plug:
        plugs = tuple(_plug_arg(item) for item in args.plug)
        relays = [mac for mac, _ip in plugs]
        sensors = tuple(
            (mac, role, relays[min(index, len(relays) - 1)])
            for index, (mac, role, _relay) in enumerate(DEFAULT_SENSORS)
        )
    network = PlugNetwork(
        plugs,
        sensors,
        broadcast=args.broadcast,
        port=args.port,
        plug_interval=args.plug_interval,
        sensor_interval=args.sensor_interval,
        seed=args.seed,
    )
    await network.start()
    server = await _serve_control(network, args.control_host, args.control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listing = ", ".join(
        f"{plug.mac}@{plug.ip}:{network.port}" for plug in network.plugs.values()
    )
    print(f"plugs {listing}; broadcast {network.broadcast}", flush=True)
    print(f"serving on {args.control_host}:{args.control_port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await network.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO)
    return asyncio.run(_main(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
