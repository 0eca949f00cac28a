"""indilib's own INDI server for the tests: ``indiserver`` with its simulator drivers, on 127.0.0.1.

scripts/setup unpacks Debian's indi-bin (1.9.9) into .indi/ and writes .indi/env: where the programs and
libraries are, and a preload library that makes indiserver bind 127.0.0.1 (indiserver 1.9.9 has no option for its
listening address and would listen on every interface).

    with indiserver(tmp_path, SIMULATORS) as server:      # server.port on 127.0.0.1, drivers running
        ...

    telescope = indiserver_fixture("telescope", ["indi_simulator_telescope"])   # in a test module

Each server gets a private HOME (the drivers write their configuration there) and its own local-domain socket
name. Stopping signals indiserver by its PID (SIGTERM, then SIGKILL), then every driver it started, by PID: a
killed indiserver leaves its drivers behind for a moment (they exit on end of input), and in a container whose
init does not reap orphans they would stay as zombies. So the test process makes itself the reaper of orphaned
descendants (PR_SET_CHILD_SUBREAPER) and reaps each driver by its PID. ``leftovers()`` lists what is still running
in a server's session (``ps``), for the check after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import ctypes
from dataclasses import dataclass
import os
from pathlib import Path
import shlex
import signal
import subprocess
import time

import pytest

from .peers import LOOPBACK, ROOT, PeerError, PeerProcess, free_port

INDI_DIR = ROOT / ".indi"
INDI_ENV = INDI_DIR / "env"

TELESCOPE = "indi_simulator_telescope"
CCD = "indi_simulator_ccd"
FOCUSER = "indi_simulator_focus"
DOME = "indi_simulator_dome"
WEATHER = "indi_simulator_weather"
WHEEL = "indi_simulator_wheel"
GPS = "indi_simulator_gps"
SIMULATORS = (TELESCOPE, CCD, FOCUSER, DOME, WEATHER, WHEEL, GPS)
"""The seven simulator drivers an astronomer tries first; their devices are named "<Kind> Simulator"."""

REAP_TIMEOUT = 5.0  # seconds for a killed driver to be gone
REAP_INTERVAL = 0.02
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class IndilibEnv:
    """Where scripts/setup put indilib: its programs, its libraries and the loopback preload library."""

    bin: Path
    library_path: str
    preload: Path


def indilib_env() -> IndilibEnv:
    """Read .indi/env; fail loudly when scripts/setup has not provided indilib."""
    if not INDI_ENV.is_file():
        raise PeerError(
            f"{INDI_ENV} is missing: run scripts/setup, which provides indilib"
        )
    values: dict[str, str] = {}
    for line in INDI_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = "".join(shlex.split(value))
    return IndilibEnv(
        Path(values["INDI_BIN"]),
        values["INDI_LIBRARY_PATH"],
        Path(values["INDI_PRELOAD"]),
    )


def _become_subreaper() -> None:
    """Make orphaned descendants (the drivers of a killed indiserver) children of this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name (state first), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def session_members(sid: int) -> list[int]:
    """Return the processes (zombies included) of a session: a server started with its own session and its drivers."""
    members = []
    for pid in _all_pids():
        fields = _stat(pid)
        if fields is not None and int(fields[3]) == sid:
            members.append(pid)
    return members


def ps(pids: Sequence[int]) -> str:
    """Return ``ps`` lines for some processes (for failure messages)."""
    if not pids:
        return ""
    result = subprocess.run(
        ["ps", "-o", "pid,ppid,sid,stat,args", "-p", ",".join(map(str, pids))],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout


class IndiServer(PeerProcess):
    """``indiserver -p PORT DRIVER...`` on 127.0.0.1 with a private HOME; drivers stopped and reaped by PID."""

    def __init__(
        self,
        drivers: Sequence[str],
        *,
        port: int,
        home: Path,
        log_dir: Path | None = None,
        max_restarts: int = 0,
        verbose: bool = False,
    ) -> None:
        """Prepare (not start) the server; *home* becomes the drivers' HOME."""
        self.indilib = indilib_env()
        self.home = home
        self.drivers = tuple(drivers)
        args = ["-p", str(port), "-r", str(max_restarts)]
        # The local-domain socket name is abstract (no file); one per server, so servers never clash.
        args += ["-u", str(home / "indiserver.socket")]
        if verbose:
            args.append("-v")
        super().__init__(
            [*args, *drivers], port=port, name="indiserver", log_dir=log_dir or home
        )
        self.driver_pids: set[int] = set()
        self.sessions: set[int] = set()

    def program(self) -> Path:
        """Return indiserver from .indi/."""
        return self.indilib.bin / "indiserver"

    def environment(self) -> dict[str, str]:
        """Return the environment: indilib's folders first, the loopback preload, a private HOME."""
        env = super().environment()
        env["PATH"] = f"{self.indilib.bin}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = self.indilib.library_path
        env["LD_PRELOAD"] = str(self.indilib.preload)
        env["HOME"] = str(self.home)
        return env

    def start(self) -> IndiServer:
        """Start indiserver (stopping a previous one first)."""
        self.home.mkdir(parents=True, exist_ok=True)
        _become_subreaper()
        super().start()
        self.sessions.add(self.pid)
        return self

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Wait until indiserver accepts connections, then note the PIDs of its drivers."""
        waited = super().wait_ready(timeout)
        self.note_drivers()
        return waited

    def note_drivers(self) -> set[int]:
        """Note (and return) the drivers running now: the children of indiserver."""
        if self.running:
            for pid in _all_pids():
                fields = _stat(pid)
                if fields is not None and int(fields[1]) == self.pid:
                    self.driver_pids.add(pid)
        return set(self.driver_pids)

    def stop(self, term_timeout: float = 2.0, kill_timeout: float = 5.0) -> None:
        """Stop indiserver by its PID, then every driver it started (and anything left in its session)."""
        self.note_drivers()
        try:
            super().stop(term_timeout, kill_timeout)
        finally:
            for sid in self.sessions:
                self.driver_pids.update(session_members(sid))
            for pid in sorted(self.driver_pids):
                _kill_and_reap(pid)
            self.driver_pids.clear()

    def leftovers(self) -> list[int]:
        """Return the processes still in the sessions of this server's runs (empty once stopped)."""
        return [pid for sid in self.sessions for pid in session_members(sid)]

    def listening_addresses(self) -> list[str]:
        """Return the local addresses the server's port is listened on (from /proc/net/tcp and tcp6)."""
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    address, port = local.rsplit(":", 1)
                    if state == "0A" and int(port, 16) == self.port:  # 0A: LISTEN
                        found.append(_address(address))
        return found


def _address(hex_address: str) -> str:
    """Return a /proc/net/tcp address (little-endian hex) in dotted or IPv6 form."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))


def _kill_and_reap(pid: int) -> None:
    """SIGKILL one process by its PID and reap it if it is ours (a child, or an orphan we reap)."""
    deadline = time.monotonic() + REAP_TIMEOUT
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if _stat(pid) is None:
            return
        # A poll inside the deadline loop: a process going away gives no event here.
        time.sleep(REAP_INTERVAL)
    raise PeerError(f"process {pid} is still there after SIGKILL:\n{ps([pid])}")


@contextlib.contextmanager
def indiserver(
    home: Path, drivers: Sequence[str] = SIMULATORS, *, port: int | None = None
) -> Iterator[IndiServer]:
    """Run indiserver with *drivers* on 127.0.0.1 (a free port unless given); stop everything afterwards."""
    server = IndiServer(drivers, port=port or free_port(), home=home)
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def indiserver_fixture(
    name: str, drivers: Sequence[str] = SIMULATORS
) -> Callable[..., Iterator[IndiServer]]:
    """Make a pytest fixture *name* yielding a running indiserver; after the test nothing of it may run.

    It enables sockets (127.0.0.1 only), gives the drivers the test's tmp_path as HOME, and checks with ps that
    neither indiserver nor any of its drivers (a killed server's included) is left once it was stopped.
    """

    @pytest.fixture(name=name)
    def _server(socket_enabled: None, tmp_path: Path) -> Iterator[IndiServer]:
        server = IndiServer(drivers, port=free_port(), home=tmp_path / "indi-home")
        try:
            server.start()
            server.wait_ready()
            yield server
        finally:
            server.stop()
        left = server.leftovers()
        assert not left, f"left running after the test:\n{ps(left)}"

    return _server


__all__ = [
    "CCD",
    "DOME",
    "FOCUSER",
    "GPS",
    "LOOPBACK",
    "SIMULATORS",
    "TELESCOPE",
    "WEATHER",
    "WHEEL",
    "IndiServer",
    "indiserver",
    "indiserver_fixture",
]
