"""Real peer servers for the tests: started from .venv-peers, stopped again by their own PID.

The peers (indipyserver, ...) cannot share Home Assistant's venv, so scripts/setup installs them into
.venv-peers on the machine's own python3 and the tests run them as subprocesses listening on 127.0.0.1.

    with indi_thermostat(poll=0.2, logperiod=1.0) as (host, port, process):
        ...                                   # the simulator answers on host:port

    thermostat = indi_thermostat_fixture("thermostat", poll=0.2)   # in a conftest or test module

A test that talks to a peer needs sockets: the Home Assistant test plugin blocks them unless the test uses
pytest-socket's ``socket_enabled`` fixture (then connections are still limited to 127.0.0.1). The fixtures made
by indi_thermostat_fixture() request it themselves.

Stopping escalates: SIGTERM, up to 2 s to exit, then SIGKILL. Everything is signalled by the PID this module
started (each peer gets its own session and process group), never by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import math
import os
from pathlib import Path
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO, Self

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".venv-peers"
PEER_PYTHON = PEERS_VENV / "bin" / "python"
LOOPBACK = "127.0.0.1"

READY_TIMEOUT = 15.0  # seconds a peer gets to accept connections
READY_INTERVAL = 0.05  # seconds between two connection attempts
TERM_TIMEOUT = 2.0  # seconds a peer gets to exit after SIGTERM before SIGKILL
KILL_TIMEOUT = 5.0  # seconds to wait for the exit after SIGKILL
BIND_RETRIES = 3  # start attempts when free_port()'s port was taken in between

ThermostatPeer = tuple[str, int, "PeerProcess"]


class PeerError(RuntimeError):
    """A peer process could not be started or did not become ready."""


def peer_python() -> Path:
    """Return the interpreter of .venv-peers; fail loudly when scripts/setup has not created it."""
    if not os.access(PEER_PYTHON, os.X_OK):
        raise PeerError(
            f"{PEER_PYTHON} is missing: run scripts/setup, which creates .venv-peers"
        )
    return PEER_PYTHON


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_loopback(host: str) -> None:
    if host != LOOPBACK:
        raise ValueError(f"peers are only reached on {LOOPBACK}, not {host!r}")


def wait_ready(
    host: str,
    port: int,
    timeout: float = READY_TIMEOUT,
    *,
    process: PeerProcess | None = None,
    interval: float = READY_INTERVAL,
) -> float:
    """Poll TCP connects to host:port until one succeeds; return the seconds it took.

    The wait is bounded both in time and in the number of attempts. When *process* is given and it exits
    meanwhile, or when the time runs out, PeerError is raised with the tail of the process's log.
    """
    _check_loopback(host)
    started = time.monotonic()
    deadline = started + timeout
    attempts = max(1, math.ceil(timeout / interval)) + 1
    last_error: OSError | None = None
    for _ in range(attempts):
        if process is not None and not process.running:
            raise PeerError(
                f"{process.name} exited with status {process.returncode} before listening on {host}:{port}\n"
                f"{process.log_tail()}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(1.0, remaining)):
                return time.monotonic() - started
        except OSError as err:
            last_error = err
        # A poll inside the deadline loop: a port that starts listening sends no event.
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    tail = f"\n{process.log_tail()}" if process is not None else ""
    raise PeerError(
        f"nothing accepted connections on {host}:{port} within {timeout:g} s ({last_error}){tail}"
    )


class PeerProcess:
    """A peer server run by the .venv-peers interpreter in its own process group, output to a log file."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        port: int,
        name: str = "peer",
        host: str = LOOPBACK,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare (not start) ``.venv-peers/bin/python *args`` that will listen on host:port."""
        _check_loopback(host)
        self.args = list(args)
        self.host = host
        self.port = port
        self.name = name
        self._log_dir = log_dir
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path: Path | None = None
        self.stopped_by: str | None = (
            None  # "exit" (already gone), "SIGTERM" or "SIGKILL"
        )
        self.stop_seconds: float | None = None  # how long the last stop() took

    @property
    def pid(self) -> int:
        """Return the PID of the running (or last) process."""
        if self._proc is None:
            raise PeerError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Return True while the process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Return the exit status (negative: killed by that signal), None while running."""
        return None if self._proc is None else self._proc.poll()

    def program(self) -> Path:
        """Return the executable the arguments are given to (the .venv-peers interpreter)."""
        return peer_python()

    def command(self) -> list[str]:
        """Return the full command line."""
        return [str(self.program()), *self.args]

    def start(self) -> Self:
        """Start the process (stopping a previous one first); return self."""
        self.stop()
        command = self.command()
        log_dir = self._log_dir or Path(
            tempfile.mkdtemp(prefix="instrument-hub-peers-")
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        env = self.environment()
        self._log = self.log_path.open("ab")
        self._log.write(f"--- {' '.join(command)}\n".encode())
        self._log.flush()
        self.stopped_by = None
        self.stop_seconds = None
        try:
            self._proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: no terminal signals reach it
            )
        except OSError:
            self._close_log()
            raise
        return self

    def environment(self) -> dict[str, str]:
        """Return the environment the process starts with."""
        env = dict(os.environ if self._env is None else self._env)
        # The simulators are imported from the repository; nothing of the test venv may leak in.
        env.pop("PYTHONHOME", None)
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Wait until the peer accepts connections; return the seconds waited."""
        return wait_ready(self.host, self.port, timeout, process=self)

    def stop(
        self, term_timeout: float = TERM_TIMEOUT, kill_timeout: float = KILL_TIMEOUT
    ) -> None:
        """Stop the process by its PID: SIGTERM, wait, then SIGKILL and wait. Safe to call again."""
        proc = self._proc
        if proc is None:
            return
        started = time.monotonic()
        try:
            if proc.poll() is not None:
                if self.stopped_by is None:
                    self.stopped_by = "exit"
                return
            self.stopped_by = "SIGTERM"
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(term_timeout)
            except subprocess.TimeoutExpired:
                self.stopped_by = "SIGKILL"
                self._signal(proc, signal.SIGKILL)
                proc.wait(kill_timeout)
            self.stop_seconds = time.monotonic() - started
        finally:
            if proc.poll() is not None:
                self._kill_group_leftovers(proc.pid)
            self._close_log()

    def restart(self, timeout: float = READY_TIMEOUT) -> float:
        """Stop, start again with the same arguments and port, and wait until ready."""
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def log_text(self) -> str:
        """Return everything the process wrote so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the log, for error messages."""
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path}:\n" + "\n".join(tail)

    def __enter__(self) -> Self:
        """Start the process and wait until it is ready."""
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the process."""
        self.stop()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        # Only our own child, by its PID; it may have exited (and been reaped) in the meantime.
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    @staticmethod
    def _kill_group_leftovers(pgid: int) -> None:
        # The peer led its own process group (start_new_session): anything it forked and left behind is
        # still in that group, whose ID cannot be reused while a member exists.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def thermostat_args(
    port: int,
    *,
    poll: float = 0.2,
    logperiod: float = 1.0,
    extras: bool = False,
    cycle: float | None = None,
    target: float | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Return the interpreter arguments that run simulators.indi_thermostat on 127.0.0.1:*port*."""
    args = ["-m", "simulators.indi_thermostat", "--host", LOOPBACK, "--port", str(port)]
    args += ["--poll", repr(poll), "--logperiod", repr(logperiod)]
    if extras:
        args.append("--extras")
    if cycle is not None:
        args += ["--cycle", repr(cycle)]
    if target is not None:
        args += ["--target", repr(target)]
    args += extra_args
    return args


@contextlib.contextmanager
def indi_thermostat(
    *,
    poll: float = 0.2,
    logperiod: float = 1.0,
    extras: bool = False,
    cycle: float | None = None,
    target: float | None = None,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ThermostatPeer]:
    """Run the INDI thermostat simulator; yield (host, port, process) once it accepts connections.

    Without *port* a free one is chosen (and another one tried if it was taken before the simulator bound it).
    The process is stopped, with escalation, when the block ends, whatever happened inside.
    """
    attempts = 1 if port is not None else BIND_RETRIES
    process: PeerProcess | None = None
    try:
        for attempt in range(1, attempts + 1):
            chosen = port if port is not None else free_port()
            args = thermostat_args(
                chosen,
                poll=poll,
                logperiod=logperiod,
                extras=extras,
                cycle=cycle,
                target=target,
                extra_args=extra_args,
            )
            process = PeerProcess(
                args, port=chosen, name="indi_thermostat", log_dir=log_dir
            ).start()
            try:
                process.wait_ready(ready_timeout)
                break
            except PeerError:
                process.stop()
                if (
                    attempt == attempts
                    or "address already in use" not in process.log_text()
                ):
                    raise
        assert process is not None
        yield LOOPBACK, process.port, process
    finally:
        if process is not None:
            process.stop()


def indi_thermostat_fixture(
    name: str = "indi_thermostat",
    *,
    poll: float = 0.2,
    logperiod: float = 1.0,
    extras: bool = False,
    cycle: float | None = None,
    target: float | None = None,
    extra_args: Sequence[str] = (),
) -> Callable[..., Iterator[ThermostatPeer]]:
    """Make a pytest fixture *name* yielding (host, port, process) of a thermostat simulator.

    Assign it to a module attribute of a conftest or test module, e.g.
    ``thermostat = indi_thermostat_fixture("thermostat", poll=0.2, extras=True)``. The fixture enables
    sockets (127.0.0.1 only) for the tests using it and keeps the simulator's log in the test's tmp_path.
    """

    @pytest.fixture(name=name)
    def _thermostat(socket_enabled: None, tmp_path: Path) -> Iterator[ThermostatPeer]:
        with indi_thermostat(
            poll=poll,
            logperiod=logperiod,
            extras=extras,
            cycle=cycle,
            target=target,
            extra_args=extra_args,
            log_dir=tmp_path,
        ) as peer:
            yield peer

    return _thermostat


# --------------------------------------------------------------------------------------------------
# Scrutiny: the real scrutinydebugger server (its CLI, as a user starts it) and the vendor's SDK client

ScrutinyPeer = tuple[str, int, "PeerProcess"]
SCRUTINY_SDK_TIMEOUT = (
    60.0  # seconds one SDK command (simulators/scrutiny_sdk.py) may take
)


def scrutiny_server_args(port: int) -> list[str]:
    """Return the interpreter arguments of ``scrutiny server`` on 127.0.0.1:*port* (default bind: 0.0.0.0)."""
    return [
        "-m",
        "scrutiny",
        "server",
        "--port",
        str(port),
        "--options",
        f"api.client_interface_config.host={LOOPBACK}",
    ]


def scrutiny_env(storage: Path) -> dict[str, str]:
    """Return an environment whose HOME/XDG_DATA_HOME keep the server's SFDs and datalog DB in *storage*."""
    storage.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["HOME"] = str(storage)
    env["XDG_DATA_HOME"] = str(storage)
    return env


def scrutiny_sdk(port: int, *args: str, storage: Path) -> str:
    """Run one command of simulators/scrutiny_sdk.py (the vendor's SDK client) and return its output."""
    env = scrutiny_env(storage)
    env.pop("PYTHONHOME", None)
    env["PYTHONPATH"] = str(ROOT)
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            str(peer_python()),
            "-m",
            "simulators.scrutiny_sdk",
            "--port",
            str(port),
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=SCRUTINY_SDK_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        raise PeerError(
            f"scrutiny_sdk {' '.join(args)} failed ({completed.returncode}):\n"
            f"{completed.stdout.decode(errors='replace')}{completed.stderr.decode(errors='replace')}"
        )
    return completed.stdout.decode()


@contextlib.contextmanager
def scrutiny_server(
    storage: Path, *, demo: bool = True, ready_timeout: float = READY_TIMEOUT
) -> Iterator[ScrutinyPeer]:
    """Run a Scrutiny server on a free port of 127.0.0.1 with its storage in *storage*; yield (host, port, process).

    With *demo* the fixture switches the built-in demo device on (the ``demo_mode`` request, sent by the SDK).
    The process is stopped by its PID when the block ends.
    """
    process: PeerProcess | None = None
    try:
        for attempt in range(1, BIND_RETRIES + 1):
            port = free_port()
            process = PeerProcess(
                scrutiny_server_args(port),
                port=port,
                name="scrutiny_server",
                log_dir=storage,
                env=scrutiny_env(storage),
            ).start()
            try:
                process.wait_ready(ready_timeout)
                break
            except PeerError:
                process.stop()
                if attempt == BIND_RETRIES or "in use" not in process.log_text():
                    raise
        assert process is not None
        if demo:
            scrutiny_sdk(process.port, "demo", "on", storage=storage)
        yield LOOPBACK, process.port, process
    finally:
        if process is not None:
            process.stop()


def scrutiny_server_fixture(
    name: str = "scrutiny_peer", *, demo: bool = True
) -> Callable[..., Iterator[ScrutinyPeer]]:
    """Make a pytest fixture *name* yielding (host, port, process) of a real Scrutiny server (demo device on)."""

    @pytest.fixture(name=name)
    def _scrutiny(socket_enabled: None, tmp_path: Path) -> Iterator[ScrutinyPeer]:
        with scrutiny_server(tmp_path / "scrutiny", demo=demo) as peer:
            yield peer

    return _scrutiny
