"""The plug emulator as a separate process (started from .venv-peers, stopped by its own PID).

Its plugs bind the test's 127.x subnet on UDP 49476; its control port is on 127.0.0.1 (so
``PeerProcess.wait_ready`` can tell when it is up).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from pathlib import Path

from .peers import PeerProcess, free_port
from .powersensor_net import PLUG_A, PLUG_B, ControlClient, Subnet


def emulator_args(subnet: Subnet, control_port: int) -> list[str]:
    """Return the interpreter arguments running simulators.powersensor_plugs on the subnet."""
    return [
        "-m",
        "simulators.powersensor_plugs",
        "--plug",
        f"{PLUG_A}@{subnet.plug_a}",
        "--plug",
        f"{PLUG_B}@{subnet.plug_b}",
        "--broadcast",
        subnet.broadcast,
        "--control-port",
        str(control_port),
        "--plug-interval",
        "0.2",
        "--sensor-interval",
        "1",
    ]


@contextlib.contextmanager
def plug_emulator(
    subnet: Subnet, log_dir: Path
) -> Iterator[tuple[PeerProcess, ControlClient]]:
    """Run the emulator process until the block ends (SIGTERM, then SIGKILL, by its PID)."""
    port = free_port()
    process = PeerProcess(
        emulator_args(subnet, port),
        port=port,
        name="powersensor_plugs",
        log_dir=log_dir,
    )
    with process:
        yield process, ControlClient(process.host, port)
