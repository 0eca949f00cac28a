"""Tests of the peer launcher (tests/peers.py) with the INDI thermostat simulator from .venv-peers."""

from __future__ import annotations

import asyncio
import base64
import codecs
from collections import deque
from collections.abc import AsyncIterator, Callable
import contextlib
import os
from pathlib import Path
import socket
import time
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring
import pytest

from tests.peers import (
    LOOPBACK,
    PeerError,
    PeerProcess,
    ThermostatPeer,
    free_port,
    indi_thermostat,
    indi_thermostat_fixture,
    wait_ready,
)

pytestmark = pytest.mark.peer

thermostat = indi_thermostat_fixture("thermostat", poll=0.2, logperiod=1.0)
thermostat_extras = indi_thermostat_fixture(
    "thermostat_extras", poll=0.2, extras=True, cycle=0.5
)
steady_extras = indi_thermostat_fixture(
    "steady_extras", poll=0.2, extras=True, cycle=0.1, extra_args=("--steady",)
)

GET_PROPERTIES = '<getProperties version="1.7"/>'
WAIT = 5.0  # seconds allowed for an expected message (the simulator answers within milliseconds)


class IndiClient:
    """A raw INDI client: writes XML text, splits the reply stream into top-level elements."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Use an open connection."""
        self._reader = reader
        self._writer = writer
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._depth = 0  # tag depth at position _scan
        self._scan = 0  # position in _buffer up to which the tags were counted
        self._received: deque[Element] = deque()  # complete elements not looked at yet

    async def send(self, xml: str) -> None:
        """Send one or more INDI elements."""
        self._writer.write(xml.encode())
        await self._writer.drain()

    async def element(
        self, matches: Callable[[Element], bool], timeout: float = WAIT
    ) -> Element:
        """Return the next received element for which *matches* is true, dropping the others before it."""
        async with asyncio.timeout(timeout):
            while True:
                while self._received:
                    element = self._received.popleft()
                    if matches(element):
                        return element
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self._buffer += self._decoder.decode(data)
                self._split()

    async def elements(
        self, matches: Callable[[Element], bool], count: int, timeout: float = WAIT
    ) -> list[Element]:
        """Return the next *count* elements for which *matches* is true."""
        async with asyncio.timeout(timeout):
            return [await self.element(matches, timeout) for _ in range(count)]

    def _split(self) -> None:
        # The INDI stream has no root element: count the tag depth to find where each top-level element
        # ends, then parse just that element. (The simulator sends no comments, CDATA or processing
        # instructions, and ElementTree escapes "<" and ">" in text and attribute values.)
        while (lt := self._buffer.find("<", self._scan)) != -1:
            gt = self._buffer.find(">", lt)
            if gt == -1:
                return  # the rest of this tag has not arrived yet
            tag = self._buffer[lt : gt + 1]
            if tag.startswith("</"):
                self._depth -= 1
            elif not tag.endswith("/>"):
                self._depth += 1
            self._scan = gt + 1
            if self._depth == 0:
                self._received.append(fromstring(self._buffer[: self._scan]))
                self._buffer = self._buffer[self._scan :]
                self._scan = 0


@contextlib.asynccontextmanager
async def indi_client(host: str, port: int) -> AsyncIterator[IndiClient]:
    """Open a raw INDI connection; it is closed (client side first) when the block ends."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield IndiClient(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def vector(tag: str, device: str, name: str) -> Callable[[Element], bool]:
    """Match an element by tag, device and vector name."""
    return (
        lambda element: element.tag == tag
        and element.get("device") == device
        and element.get("name") == name
    )


def new_target(value: str) -> str:
    """Return the newNumberVector that writes *value* to the thermostat's target."""
    return (
        '<newNumberVector device="Thermostat" name="targetvector">'
        f'<oneNumber name="target">{value}</oneNumber></newNumberVector>'
    )


def port_is_free(port: int) -> bool:
    """Return True if a plain bind (no SO_REUSEADDR) to 127.0.0.1:*port* succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def pid_gone(pid: int) -> bool:
    """Return True if no process has this PID any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_definitions(thermostat: ThermostatPeer) -> None:
    """The simulator answers getProperties with the four Thermostat vectors."""
    host, port, _ = thermostat
    async with indi_client(host, port) as client:
        await client.send(GET_PROPERTIES)
        temperature = await client.element(
            vector("defNumberVector", "Thermostat", "temperaturevector")
        )
        target = await client.element(
            vector("defNumberVector", "Thermostat", "targetvector")
        )
        logs = await client.element(vector("defBLOBVector", "Thermostat", "logsvector"))
        switch = await client.element(
            vector("defSwitchVector", "Thermostat", "switchvector")
        )

    assert temperature.get("perm") == "ro"
    assert [
        (m.tag, m.get("name"), m.get("min"), m.get("max")) for m in temperature
    ] == [("defNumber", "temperature", "-50", "99")]
    assert target.get("perm") == "rw"
    target_member = target.find("defNumber")
    assert target_member is not None
    assert (
        target_member.get("name"),
        target_member.get("min"),
        target_member.get("max"),
    ) == ("target", "-50", "99")
    assert float(target_member.text or "nan") == 15.0
    assert logs.get("perm") == "ro"
    assert [(m.tag, m.get("name")) for m in logs] == [("defBLOB", "templogs")]
    assert (switch.get("perm"), switch.get("rule")) == ("rw", "AtMostOne")
    assert [(m.tag, m.get("name"), (m.text or "").strip()) for m in switch] == [
        ("defSwitch", "switchmember", "Off")
    ]


async def test_temperature_updates(thermostat: ThermostatPeer) -> None:
    """With --poll 0.2 temperature readings arrive every 0.2 s."""
    host, port, _ = thermostat
    async with indi_client(host, port) as client:
        await client.send(GET_PROPERTIES)
        started = time.monotonic()
        updates = await client.elements(
            vector("setNumberVector", "Thermostat", "temperaturevector"), 3, timeout=3.0
        )
        elapsed = time.monotonic() - started

    assert elapsed < 2.0
    for update in updates:
        assert update.get("state") == "Ok"
        member = update.find("oneNumber")
        assert member is not None and member.get("name") == "temperature"
        assert -50.0 <= float(member.text or "nan") <= 99.0


async def test_target_replies(thermostat: ThermostatPeer) -> None:
    """Invalid and out-of-range targets get state Alert; a valid (sexagesimal) one state Ok."""
    host, port, _ = thermostat
    reply = vector("setNumberVector", "Thermostat", "targetvector")
    async with indi_client(host, port) as client:
        await client.send(new_target("abc"))
        invalid = await client.element(reply)
        await client.send(new_target("abc"))
        invalid_again = await client.element(reply)
        await client.send(new_target("150"))
        out_of_range = await client.element(reply)
        await client.send(new_target("18:30"))
        accepted = await client.element(reply)

    for alert in (invalid, invalid_again):
        assert (alert.get("state"), alert.get("message")) == ("Alert", "Invalid target")
        assert alert.findtext("oneNumber") == "15.00"  # unchanged
    assert (out_of_range.get("state"), out_of_range.get("message")) == (
        "Alert",
        "Target out of range",
    )
    assert out_of_range.findtext("oneNumber") == "15.00"
    assert accepted.get("state") == "Ok"
    assert accepted.findtext("oneNumber") == "18.50"


async def test_log_blobs(thermostat: ThermostatPeer) -> None:
    """Switching the logs on sends a message; with enableBLOB Also a .csv log file arrives per log period."""
    host, port, _ = thermostat
    async with indi_client(host, port) as client:
        await client.send('<enableBLOB device="Thermostat">Also</enableBLOB>')
        await client.send(
            '<newSwitchVector device="Thermostat" name="switchvector">'
            '<oneSwitch name="switchmember">On</oneSwitch></newSwitchVector>'
        )
        switched = await client.element(
            vector("setSwitchVector", "Thermostat", "switchvector")
        )
        message = await client.element(lambda element: element.tag == "message")
        blob = await client.element(
            vector("setBLOBVector", "Thermostat", "logsvector"), timeout=WAIT
        )

    assert (switched.get("state"), switched.findtext("oneSwitch")) == ("Ok", "On")
    assert message.get("message") == "Log reporting is now On"
    member = blob.find("oneBLOB")
    assert member is not None
    assert (member.get("name"), member.get("format")) == ("templogs", ".csv")
    content = base64.b64decode(member.text or "")
    assert int(member.get("size") or -1) == len(content)
    lines = content.decode().splitlines()
    assert lines
    for line in lines:
        stamp, temperature = line.split(",")
        assert stamp.startswith("20")
        float(temperature)


async def test_extras_device(thermostat_extras: ThermostatPeer) -> None:
    """With --extras the Extras device defines a Light, a rw Text and a sexagesimal Number."""
    host, port, _ = thermostat_extras
    async with indi_client(host, port) as client:
        await client.send(GET_PROPERTIES)
        light = await client.element(vector("defLightVector", "Extras", "heaterlight"))
        text = await client.element(vector("defTextVector", "Extras", "notevector"))
        number = await client.element(vector("defNumberVector", "Extras", "havector"))
        await client.send(
            '<newTextVector device="Extras" name="notevector"><oneText name="note">a &amp; b</oneText></newTextVector>'
        )
        echoed = await client.element(vector("setTextVector", "Extras", "notevector"))
        deleted = await client.element(
            lambda e: e.tag == "delProperty" and e.get("device") == "Extras"
        )

    assert light.findtext("defLight") == "Idle"
    assert text.get("perm") == "rw"
    assert text.findtext("defText") == "hello"
    member = number.find("defNumber")
    assert member is not None and member.get("format") == "%010.6m"
    assert (echoed.get("state"), echoed.findtext("oneText")) == ("Ok", "a & b")
    assert deleted.get("name") == "havector"


async def test_a_steady_extras_device_stays(steady_extras: ThermostatPeer) -> None:
    """With --steady the Extras device updates its light every cycle and never deletes itself."""
    host, port, _ = steady_extras
    async with indi_client(host, port) as client:
        await client.send(GET_PROPERTIES)
        await client.element(vector("defNumberVector", "Extras", "havector"))
        # Eight cycles: a churning device would have deleted a vector and itself twice meanwhile.
        lights = await client.elements(
            lambda e: e.tag in ("setLightVector", "delProperty")
            and e.get("device") == "Extras",
            count=8,
        )
    assert {e.tag for e in lights} == {"setLightVector"}
    assert [e.findtext("oneLight") for e in lights[:2]] in (
        ["Ok", "Alert"],
        ["Alert", "Ok"],
    )


def test_stop_frees_port(socket_enabled: None, tmp_path: Path) -> None:
    """stop() ends the simulator by SIGTERM, the PID is gone and the port can be bound again; stop is idempotent."""
    with indi_thermostat(log_dir=tmp_path) as (host, port, process):
        wait_ready(host, port, 2.0)
        pid = process.pid
        process.stop()
        assert process.stopped_by == "SIGTERM"
        assert process.stop_seconds is not None and process.stop_seconds < 2.0
        assert process.returncode == 0
        assert pid_gone(pid)
        assert port_is_free(port)
        process.stop()  # again: nothing to do
        assert process.stopped_by == "SIGTERM"
    assert "serving on 127.0.0.1:" in process.log_text()
    assert "SIGTERM received" in process.log_text()


def test_stop_escalates_to_sigkill(socket_enabled: None, tmp_path: Path) -> None:
    """A peer that ignores SIGTERM is killed after the grace period; the port is free again."""
    port = free_port()
    listener = (
        "import signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"server = socket.create_server(('127.0.0.1', {port}))\n"
        "print('listening', flush=True)\n"
        "time.sleep(300)\n"
    )
    process = PeerProcess(
        ["-c", listener], port=port, name="stubborn", log_dir=tmp_path
    )
    try:
        process.start()
        process.wait_ready(10.0)
        pid = process.pid
        started = time.monotonic()
        process.stop(term_timeout=0.5)
        assert time.monotonic() - started < 3.0
        assert process.stopped_by == "SIGKILL"
        assert process.returncode == -9
        assert pid_gone(pid)
        assert port_is_free(port)
    finally:
        process.stop()


def test_restart_same_port(socket_enabled: None, tmp_path: Path) -> None:
    """restart() runs a new process on the same port."""
    with indi_thermostat(log_dir=tmp_path) as (_, port, process):
        first = process.pid
        process.restart()
        assert process.pid != first
        assert pid_gone(first)
        assert process.running
        assert process.port == port
    assert not process.running


def test_wait_ready_reports_a_dead_peer(socket_enabled: None, tmp_path: Path) -> None:
    """A simulator that cannot bind its port exits; wait_ready fails at once with the log tail."""
    # Bound but not listening: connection attempts are refused, and the simulator's bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        started = time.monotonic()
        with (
            pytest.raises(PeerError, match="address already in use"),
            indi_thermostat(port=port, log_dir=tmp_path),
        ):
            pass
        assert time.monotonic() - started < 10.0


def test_wait_ready_is_bounded(socket_enabled: None) -> None:
    """Nothing listening: wait_ready gives up after its timeout."""
    port = free_port()
    started = time.monotonic()
    with pytest.raises(PeerError, match="nothing accepted connections"):
        wait_ready(LOOPBACK, port, 0.3)
    assert time.monotonic() - started < 2.0
    with pytest.raises(ValueError, match="only reached on 127.0.0.1"):
        wait_ready("localhost", port, 0.1)
