"""The Maestro emulator as its own process: a field client (QCoDeS) reads it; SIGKILL and restart."""

from __future__ import annotations

from collections.abc import Iterator
import json
import logging
import os
from pathlib import Path
import signal
import subprocess
import time

from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.instrument_hub.const import DOMAIN

from .gentec_support import add_gentec_entry
from .helpers import wait_for_state
from .peers import ROOT, PeerProcess, free_port, peer_python

pytestmark = pytest.mark.peer
_LOGGER = logging.getLogger(__name__)

READING = "sensor.gentec_eo_maestro_reading"
UNPLUG_BOUND = 2.0
FIELD_CLIENT_TIMEOUT = 60


@pytest.fixture
def maestro_process(
    socket_enabled: None, tmp_path: Path
) -> Iterator[tuple[PeerProcess, Path]]:
    """Run simulators.gentec_maestro from .venv-peers: a pty behind a link, and TCP; stopped by PID."""
    port = free_port()
    link = tmp_path / "usb-Gentec-EO_MAESTRO_M0123-if00"
    process = PeerProcess(
        [
            "-m",
            "simulators.gentec_maestro",
            "--link",
            str(link),
            "--tcp-port",
            str(port),
            "--rate",
            "20",
        ],
        port=port,
        name="gentec_maestro",
        log_dir=tmp_path,
    )
    with process:
        yield process, link


def _field_client(address: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONHOME", None)
    done = subprocess.run(
        [str(peer_python()), "-m", "simulators.gentec_field_client", address],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=FIELD_CLIENT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


@pytest.mark.parametrize("over", ["serial", "tcp"])
def test_qcodes_driver_reads_the_emulator(
    maestro_process: tuple[PeerProcess, Path], over: str
) -> None:
    """QCoDeS' Gentec_Maestro (pyvisa-py) parses every reply: *VER, *CVU, *GWL, *PWC, *GZO."""
    process, link = maestro_process
    address = (
        f"ASRL{link}::INSTR"
        if over == "serial"
        else f"TCPIP::127.0.0.1::{process.port}::SOCKET"
    )
    seen = _field_client(address)
    assert seen["idn"] == {
        "vendor": "Gentec",
        "model": "MAESTRO",
        "firmware": "1.00.18",
    }
    power = seen["power"]
    assert isinstance(power, float)
    assert 0.5e-3 < power < 1.5e-3
    assert seen["zero_offset_enabled"] is False
    assert seen["wavelength_after_set"] == 1550


async def test_sigkill_then_restart(
    hass: HomeAssistant, maestro_process: tuple[PeerProcess, Path]
) -> None:
    """The meter's process killed: unavailable within 2 s; started again: back, same entities."""
    process, link = maestro_process
    await add_gentec_entry(hass, str(link))
    connected = "binary_sensor.maestro_usb_gentec_eo_maestro_m0123_if00_connected"
    await wait_for_state(
        hass,
        READING,
        lambda s: s is not None and s.state not in (STATE_UNKNOWN, STATE_UNAVAILABLE),
    )
    entities = len(er.async_get(hass).entities)
    killed = time.monotonic()
    os.kill(process.pid, signal.SIGKILL)
    await wait_for_state(
        hass, READING, lambda s: s is not None and s.state == STATE_UNAVAILABLE
    )
    down = time.monotonic() - killed
    assert down < UNPLUG_BOUND
    assert hass.states.get(connected).state == STATE_OFF  # type: ignore[union-attr]
    process.stop()
    restarted = time.monotonic()
    await hass.async_add_executor_job(process.restart)
    await wait_for_state(
        hass,
        READING,
        lambda s: s is not None and s.state not in (STATE_UNKNOWN, STATE_UNAVAILABLE),
        timeout=15,
    )
    back = time.monotonic() - restarted
    assert hass.states.get(connected).state == STATE_ON  # type: ignore[union-attr]
    assert len(er.async_get(hass).entities) == entities
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    _LOGGER.warning(
        "Gentec SIGKILL: unavailable after %.3f s; back %.3f s after restart",
        down,
        back,
    )
