"""The source's SDK events against the vendor SDK's own client, both watching one real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import json
import os
from pathlib import Path

import pytest

from custom_components.instrument_hub.events import EventData, Reading
from custom_components.instrument_hub.sources.scrutiny import ScrutinySource
from tests.peers import (
    ROOT,
    ScrutinyPeer,
    peer_python,
    scrutiny_env,
    scrutiny_sdk,
    scrutiny_server,
)
from tests.sources.conftest import EventRecorder

pytestmark = pytest.mark.peer

SDK_NAMES = {
    "DeviceReadyEvent": "device_ready",
    "DeviceGoneEvent": "device_gone",
    "SFDLoadedEvent": "sfd_loaded",
    "SFDUnLoadedEvent": "sfd_unloaded",
    "DataloggingStateChanged": "datalogging_state_changed",
}
SDK_STATES = {
    "NA": "unavailable",
    "Standby": "standby",
    "WaitForTrigger": "waiting_for_trigger",
    "Acquiring": "acquiring",
    "Downloading": "downloading",
    "Error": "error",
}
LISTEN_SECONDS = 40.0


@pytest.fixture(name="peer")
def peer_fixture(socket_enabled: None, tmp_path: Path) -> Iterator[ScrutinyPeer]:
    """Run the real server with its demo device on."""
    with scrutiny_server(tmp_path / "scrutiny") as peer:
        yield peer


def ours(recorder: EventRecorder) -> list[tuple[str, object]]:
    """Return the SDK-kind events the source fired, with what identifies each."""
    found: list[tuple[str, object]] = []
    for event in recorder.of_type(Reading):
        value = event.value
        if (
            not isinstance(value, EventData)
            or value.event_type not in SDK_NAMES.values()
        ):
            continue
        attributes = value.attributes
        found.append(
            (
                value.event_type,
                attributes.get("session_id")
                if value.event_type.startswith("device")
                else attributes.get("firmware_id")
                if value.event_type.startswith("sfd")
                else attributes.get("state"),
            )
        )
    return found


def theirs(lines: list[str]) -> list[tuple[str, object]]:
    """Return the SDK client's events in the same form."""
    found: list[tuple[str, object]] = []
    for line in lines:
        record = json.loads(line)
        kind = SDK_NAMES.get(record.get("event", ""))
        if kind is None:
            continue
        if kind.startswith("device"):
            found.append((kind, record["session_id"]))
        elif kind.startswith("sfd"):
            found.append((kind, record["firmware_id"]))
        else:
            found.append((kind, SDK_STATES[record["state"]]))
    return found


async def test_the_source_derives_what_the_sdk_reports(
    peer: ScrutinyPeer, recorder: EventRecorder, tmp_path: Path
) -> None:
    """Demo device off and on again: the same events, in the same order, with the same ids."""
    _host, port, _process = peer
    storage = tmp_path / "scrutiny"
    env = scrutiny_env(storage)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONHOME", None)
    sdk = await asyncio.create_subprocess_exec(
        str(peer_python()),
        "-m",
        "simulators.scrutiny_sdk",
        "--port",
        str(port),
        "events",
        str(LISTEN_SECONDS),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    source = ScrutinySource("127.0.0.1", port)
    lines: list[str] = []
    try:
        assert sdk.stdout is not None
        async with asyncio.timeout(20):
            assert json.loads(await sdk.stdout.readline()) == {"ready": True}
        await source.async_start(recorder)

        def count(kind: str) -> int:
            return sum(1 for found, _id in ours(recorder) if found == kind)

        async def until(kind: str, times: int) -> None:
            await recorder.wait_for(
                Reading,
                lambda e: isinstance(e.value, EventData)
                and e.value.event_type == kind
                and count(kind) >= times,
            )

        await until("sfd_loaded", 1)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, lambda: scrutiny_sdk(port, "demo", "off", storage=storage)
        )
        await until("datalogging_state_changed", 1)
        await loop.run_in_executor(
            None, lambda: scrutiny_sdk(port, "demo", "on", storage=storage)
        )
        await until("datalogging_state_changed", 2)
        # The SDK client polls every 2 s besides the pushes: let it catch up, then stop it.
        async with asyncio.timeout(20):
            while len(theirs(lines)) < len(ours(recorder)):
                line = await sdk.stdout.readline()
                if not line:
                    break
                lines.append(line.decode())
    finally:
        await source.async_stop()
        if sdk.returncode is None:
            os.kill(sdk.pid, 15)
        await sdk.wait()
    sequence = ours(recorder)
    assert [kind for kind, _id in sequence] == [
        "device_ready",
        "sfd_loaded",
        "device_gone",
        "sfd_unloaded",
        "datalogging_state_changed",
        "device_ready",
        "sfd_loaded",
        "datalogging_state_changed",
    ]
    assert theirs(lines) == sequence
