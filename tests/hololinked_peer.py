"""Real hololinked 0.4.2 Things for the tests: simulators/hololinked_things.py run from .venv-peers.

    with hololinked_thing("maestro", gap=0.2) as thing:
        thing.url                  # http://127.0.0.1:<port>/energy-meter
        thing.pushed("data_point_event")   # every payload the Thing pushed so far, in order
        thing.kill()               # SIGKILL by its PID
        thing.restart()            # same port and arguments, waits until it serves again

The process is stopped by its own PID (SIGTERM, then SIGKILL) when the block ends, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass
import json
import os
from pathlib import Path
import signal
import time

import pytest
import pytest_socket

from .peers import LOOPBACK, PeerError, PeerProcess, free_port

READY_TIMEOUT = (
    30.0  # hololinked imports pydantic, tornado, ...: a few seconds on a busy machine
)
READY_POLL = 0.05
IDS = {"maestro": "energy-meter", "bench": "thermal-stage"}
PASSWORD_ENV = "HOLOLINKED_SIM_PASSWORD"
API_KEY_ENV = "HOLOLINKED_SIM_API_KEY"


@dataclass
class ThingPeer:
    """A running simulated Thing."""

    process: PeerProcess
    thing_id: str

    @property
    def port(self) -> int:
        """Return the port it serves on."""
        return self.process.port

    @property
    def url(self) -> str:
        """Return the Thing's base URL."""
        return f"http://{LOOPBACK}:{self.port}/{self.thing_id}"

    def pushed(self, event: str) -> list[object]:
        """Return every payload of ``event`` the Thing printed as pushed, in order (all runs)."""
        prefix = f"pushed {event} "
        return [
            json.loads(line[len(prefix) :])
            for line in self.process.log_text().splitlines()
            if line.startswith(prefix)
        ]

    def wait_serving(self, runs: int = 1, timeout: float = READY_TIMEOUT) -> None:
        """Wait (bounded) until the log says "serving on" ``runs`` times."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / READY_POLL) + 1):
            if self.process.log_text().count("serving on ") >= runs:
                return
            if not self.process.running:
                raise PeerError(f"the Thing exited\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                break
            # A poll inside the deadline loop: the log gives no event.
            time.sleep(READY_POLL)
        raise PeerError(
            f"the Thing did not serve within {timeout:g} s\n{self.process.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL the Thing by its PID (no clean shutdown: sockets die with it)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.stop()

    def restart(self, env: Mapping[str, str] | None = None) -> None:
        """Start it again on the same port (with changed environment variables) until it serves."""
        runs = self.process.log_text().count("serving on ") + 1
        if env is not None:
            self.process._env = {**(self.process._env or os.environ), **env}
        self.process.start()
        self.wait_serving(runs)


def thing_args(
    thing: str,
    port: int,
    *,
    gap: float | None = None,
    nan_every: int | None = None,
    autostart: bool = True,
    basic_user: str | None = None,
    api_key: bool = False,
    seed: int | None = 7,
) -> list[str]:
    """Return the interpreter arguments that run one simulated Thing on 127.0.0.1:port."""
    args = ["-m", "simulators.hololinked_things", "--thing", thing]
    args += ["--host", LOOPBACK, "--port", str(port)]
    if gap is not None:
        args += ["--gap", repr(gap)]
    if nan_every is not None:
        args += ["--nan-every", str(nan_every)]
    if not autostart:
        args.append("--no-autostart")
    if basic_user is not None:
        args += ["--basic-user", basic_user]
    if api_key:
        args += ["--api-key-env", API_KEY_ENV]
    if seed is not None:
        args += ["--seed", str(seed)]
    return args


@contextlib.contextmanager
def hololinked_thing(
    thing: str = "maestro",
    *,
    gap: float | None = None,
    nan_every: int | None = None,
    autostart: bool = True,
    basic_user: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    log_dir: Path | None = None,
    port: int | None = None,
) -> Iterator[ThingPeer]:
    """Run a simulated Thing; yield it once it serves; stop it by its PID afterwards."""
    env = dict(os.environ)
    if password is not None:
        env[PASSWORD_ENV] = password
    if api_key is not None:
        env[API_KEY_ENV] = api_key
    port = port or free_port()
    process = PeerProcess(
        thing_args(
            thing,
            port,
            gap=gap,
            nan_every=nan_every,
            autostart=autostart,
            basic_user=basic_user,
            api_key=api_key is not None,
        ),
        port=port,
        name=f"hololinked_{thing}",
        log_dir=log_dir,
        env=env,
    )
    peer = ThingPeer(process, IDS[thing])
    try:
        process.start()
        peer.wait_serving()
        yield peer
    finally:
        process.stop()


def hololinked_fixture(
    name: str, thing: str = "maestro", **kwargs: object
) -> Callable[..., Iterator[ThingPeer]]:
    """Make a pytest fixture ``name`` yielding a running simulated Thing (sockets enabled)."""

    @pytest.fixture(name=name)
    def _thing(socket_enabled: None, tmp_path: Path) -> Iterator[ThingPeer]:
        with hololinked_thing(thing, log_dir=tmp_path, **kwargs) as peer:  # type: ignore[arg-type]
            yield peer

    return _thing


def shared_hololinked_fixture(
    name: str, thing: str = "maestro", **kwargs: object
) -> Callable[..., Iterator[ThingPeer]]:
    """Make a module-wide fixture ``name``: one Thing for the module's tests (which enable sockets).

    For tests that only read what the Thing defines (snapshots): one start instead of one per test.
    """

    @pytest.fixture(name=name, scope="module")
    def _thing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingPeer]:
        log_dir = tmp_path_factory.mktemp(name)
        # Outside a test's socket_enabled: lift the test plugin's socket block just to pick a port.
        pytest_socket.enable_socket()
        try:
            port = free_port()
        finally:
            pytest_socket.disable_socket(allow_unix_socket=True)
        with hololinked_thing(thing, log_dir=log_dir, port=port, **kwargs) as peer:  # type: ignore[arg-type]
            yield peer

    return _thing


__all__: Sequence[str] = [
    "ThingPeer",
    "hololinked_fixture",
    "hololinked_thing",
    "thing_args",
]
