"""INDI commands as a user meets them: they never wait behind each other, and they always end.

Against the scripted INDI server on 127.0.0.1: an Abort goes out (and completes) while a slew waits
for its mount; a server that stopped reading fails a command at its timeout; a late answer to a
write that timed out is never reported as the next write's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import logging

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
import pytest

from custom_components.instrument_hub.sources.indi import commands

from .fake_indi import FakeIndiServer
from .helpers import (
    indi_entry,
    set_property,
    setup_indi_entry,
    state_is,
    wait_for_entity,
    wait_for_state,
)

MOUNT = "Telescope Simulator"
SLEW_DEF = (
    f'<defNumberVector device="{MOUNT}" name="EQUATORIAL_EOD_COORD" label="Eq. Coordinates" group="Main" '
    'state="Idle" perm="rw" timeout="60"><defNumber name="RA" label="RA" format="%10.6m" min="0" max="24" step="0">'
    '3.5</defNumber><defNumber name="DEC" label="DEC" format="%10.6m" min="-90" max="90" step="0">10</defNumber>'
    "</defNumberVector>"
)
ABORT_DEF = (
    f'<defSwitchVector device="{MOUNT}" name="TELESCOPE_ABORT_MOTION" label="Abort Motion" group="Main" '
    'state="Idle" perm="rw" rule="AtMostOne" timeout="60"><defSwitch name="ABORT" label="Abort">Off</defSwitch>'
    "</defSwitchVector>"
)
NOTE_DEF = (
    f'<defTextVector device="{MOUNT}" name="NOTE" label="Note" group="Main" state="Idle" perm="rw" timeout="0">'
    '<defText name="TEXT" label="Text">-</defText></defTextVector>'
)
TARGET_DEF = (
    f'<defNumberVector device="{MOUNT}" name="TARGET" label="Target" group="Main" state="Idle" perm="rw" '
    'timeout="0"><defNumber name="VALUE" label="Value" format="%g" min="0" max="100" step="1">1</defNumber>'
    "</defNumberVector>"
)


def _uid(entry_id: str, channel: str) -> str:
    return f"{entry_id}:{MOUNT}:{channel}"


def _target_ok(value: int) -> bytes:
    return (
        f'<setNumberVector device="{MOUNT}" name="TARGET" state="Ok"><oneNumber name="VALUE">{value}'
        "</oneNumber></setNumberVector>"
    ).encode()


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make commands of vectors without a timeout wait 0.4 s (instead of 5 s)."""
    monkeypatch.setattr(commands, "COMMAND_TIMEOUT_MIN", 0.4)


async def test_abort_goes_out_while_a_slew_waits_for_the_mount(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The Abort button's press completes at once while the slew's write still waits for its answer."""
    indi_server.definitions = [SLEW_DEF, ABORT_DEF]
    indi_server.reply_rules.append(
        lambda element: (
            f'<setSwitchVector device="{MOUNT}" name="TELESCOPE_ABORT_MOTION" state="Ok">'
            '<oneSwitch name="ABORT">Off</oneSwitch></setSwitchVector>'
        ).encode()
        if b"TELESCOPE_ABORT_MOTION" in element
        else None
    )
    entry = await setup_indi_entry(hass, indi_server)
    ra = await wait_for_entity(
        hass, "number", _uid(entry.entry_id, "EQUATORIAL_EOD_COORD.RA")
    )
    abort = await wait_for_entity(
        hass, "button", _uid(entry.entry_id, "TELESCOPE_ABORT_MOTION.ABORT")
    )

    slew = hass.async_create_task(
        hass.services.async_call(
            "number", "set_value", {"entity_id": ra, "value": 5.25}, blocking=True
        )
    )
    await indi_server.wait_received(b"<newNumberVector")
    async with asyncio.timeout(5):
        await hass.services.async_call(
            "button", "press", {"entity_id": abort}, blocking=True
        )
    assert b'<oneSwitch name="ABORT">On</oneSwitch>' in indi_server.received
    assert not slew.done()

    # The mount stops where it is and says so: the slew's write ends with that answer.
    await indi_server.push(
        f'<setNumberVector device="{MOUNT}" name="EQUATORIAL_EOD_COORD" state="Ok">'
        '<oneNumber name="RA">4.1</oneNumber><oneNumber name="DEC">10</oneNumber></setNumberVector>'
    )
    async with asyncio.timeout(5):
        await slew
    await wait_for_state(hass, ra, state_is("4.1"))


class _DeafServer:
    """An INDI server that sends its definitions, then stops reading (its client's sends pile up)."""

    def __init__(self, definitions: list[str]) -> None:
        self.definitions = definitions
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.append(writer)
        await reader.readuntil(b"/>")  # getProperties
        writer.write("".join(self.definitions).encode())
        await writer.drain()
        transport = writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()


@pytest.fixture
async def deaf_server(socket_enabled: None) -> AsyncIterator[_DeafServer]:
    """Serve the mount's definitions on 127.0.0.1 and then read nothing more."""
    server = _DeafServer([NOTE_DEF, TARGET_DEF])
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.mark.usefixtures("short_timeouts")
async def test_a_server_that_stopped_reading_fails_commands_at_their_timeout(
    hass: HomeAssistant, deaf_server: _DeafServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 12 MB write to a server that reads nothing fails at its timeout; so does the next command.

    Neither hangs until the connection drops, and the log carries no payload.
    """
    entry = indi_entry(hass, deaf_server.port)
    assert await hass.config_entries.async_setup(entry.entry_id)
    target = await wait_for_entity(hass, "number", _uid(entry.entry_id, "TARGET.VALUE"))
    caplog.set_level(logging.DEBUG, logger="custom_components.instrument_hub")

    async with asyncio.timeout(10):
        with pytest.raises(HomeAssistantError) as err:
            await set_property(
                hass, entry.entry_id, MOUNT, "NOTE", {"TEXT": "x" * 12_000_000}
            )
        assert err.value.translation_key == "command_timeout"
        with pytest.raises(HomeAssistantError) as err:
            await hass.services.async_call(
                "number", "set_value", {"entity_id": target, "value": 7}, blocking=True
            )
        assert err.value.translation_key == "command_timeout"
    assert max(len(record.getMessage()) for record in caplog.records) < 2000
    with contextlib.suppress(asyncio.CancelledError):
        assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("short_timeouts")
async def test_a_late_answer_is_not_the_next_writes_result(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A write times out; its late Ok arrives just before the answer to the next write: each goes home."""
    indi_server.definitions = [TARGET_DEF]
    answers: list[list[bytes]] = [[], [_target_ok(10), _target_ok(12)]]
    indi_server.reply_rules.append(
        lambda element: b"".join(answers.pop(0))
        if b"<newNumberVector" in element and answers
        else None
    )
    entry = await setup_indi_entry(hass, indi_server)
    await wait_for_entity(hass, "number", _uid(entry.entry_id, "TARGET.VALUE"))

    with pytest.raises(HomeAssistantError) as err:
        await set_property(hass, entry.entry_id, MOUNT, "TARGET", {"VALUE": 10})
    assert err.value.translation_key == "command_timeout"
    response = await set_property(hass, entry.entry_id, MOUNT, "TARGET", {"VALUE": 12})
    assert response is not None
    values = response["values"]
    assert isinstance(values, dict)
    assert values["VALUE"] == 12
    diagnostics = entry.runtime_data.source.diagnostics()
    assert diagnostics["late_answers"] == 1
