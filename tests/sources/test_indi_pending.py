"""Which pending INDI command an answer belongs to, when an earlier write timed out (its "ghost").

INDI answers name no request: these tests pin the rule on the pending-command table directly,
without a server. A timed-out write's late answer never becomes a later write's result; an answer
that reports exactly what the later write sent is that write's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from custom_components.instrument_hub.events import MessageLevel
from custom_components.instrument_hub.sources.base import (
    CommandRejected,
    CommandResult,
    CommandTimeout,
)
from custom_components.instrument_hub.sources.indi import commands
from custom_components.instrument_hub.sources.indi.commands import (
    PendingCommands,
    Until,
)
from custom_components.instrument_hub.sources.indi.model import Vector
from custom_components.instrument_hub.sources.indi.protocol import (
    DefMember,
    DefVector,
    SetMember,
    SetVector,
    VectorKind,
)

TARGET = Vector.from_def(
    DefVector(
        VectorKind.NUMBER,
        "Dev",
        "TARGET",
        "Target",
        None,
        "Idle",
        "rw",
        None,
        0,
        None,
        None,
        (DefMember("VALUE", "Value", "1"),),
    )
)


def _answer(value: str, state: str = "Ok") -> SetVector:
    return SetVector(
        VectorKind.NUMBER,
        "Dev",
        "TARGET",
        state,
        None,
        None,
        None,
        (SetMember("VALUE", value),),
    )


async def _nothing() -> None:
    return None


def _write(
    pending: PendingCommands, value: str, until: Until = Until.ACCEPTED
) -> Callable[[], Coroutine[Any, Any, CommandResult]]:
    async def write() -> CommandResult:
        return await pending.send_and_wait(
            "Dev", TARGET, _nothing, {"VALUE": value}, until=until
        )

    return write


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a write without an answer time out after 0.05 s."""
    monkeypatch.setattr(commands, "COMMAND_TIMEOUT_MIN", 0.05)


async def _timed_out(pending: PendingCommands, value: str) -> None:
    with pytest.raises(CommandTimeout):
        await _write(pending, value)()


async def test_the_late_answer_goes_to_the_ghost() -> None:
    """Write 10 times out; its answer arrives while write 12 waits: 12 waits on for its own."""
    pending = PendingCommands()
    await _timed_out(pending, "10")
    later = asyncio.create_task(_write(pending, "12")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("10"))
    await asyncio.sleep(0)
    assert not later.done()
    pending.resolve("Dev", TARGET, _answer("12.00"))
    result = await later
    assert result.state == "Ok"
    assert pending.late_answers == 1


async def test_a_dropped_write_does_not_fail_the_next() -> None:
    """The device never answers write 10; its answer to write 12 reports 12: it is write 12's."""
    pending = PendingCommands()
    await _timed_out(pending, "10")
    later = asyncio.create_task(_write(pending, "12")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("12"))
    assert (await later).state == "Ok"
    assert pending.late_answers == 0


async def test_an_answer_that_reports_other_values_goes_to_the_ghost() -> None:
    """An answer reporting neither write's values (the device clamped it) is the ghost's."""
    pending = PendingCommands()
    await _timed_out(pending, "10")
    later = asyncio.create_task(_write(pending, "150")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("100"))
    await asyncio.sleep(0)
    assert not later.done()
    assert pending.late_answers == 1
    with pytest.raises(CommandTimeout):
        await later


async def test_busy_answers_nothing_and_ghosts_expire() -> None:
    """Waiting for the finish, Busy answers nothing; once a ghost expired, even a clamped answer is the live write's."""
    pending = PendingCommands()
    await _timed_out(pending, "10")
    loop = asyncio.get_running_loop()
    expired = loop.create_future()
    # What is tested is the expiry itself (one more timeout, 0.05 s): waiting past it is the point.
    loop.call_later(0.06, expired.set_result, None)
    await expired
    later = asyncio.create_task(_write(pending, "150", until=Until.FINISHED)())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("100", state="Busy"))
    await asyncio.sleep(0)
    assert not later.done()
    pending.resolve("Dev", TARGET, _answer("100"))
    assert (await later).state == "Ok"
    assert pending.late_answers == 0
    assert pending.count() == 0


async def test_busy_is_acceptance_unless_waiting_for_the_finish() -> None:
    """A write waiting to be accepted takes Busy as its answer; one waiting to finish takes Ok, not Busy."""
    pending = PendingCommands()
    accepted = asyncio.create_task(_write(pending, "5")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("5", state="Busy"))
    assert (await accepted).state == "Busy"

    finishing = asyncio.create_task(_write(pending, "6", until=Until.FINISHED)())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("6", state="Busy"))
    pending.resolve(
        "Dev",
        TARGET,
        SetVector(VectorKind.NUMBER, "Dev", "TARGET", None, None, None, None, ()),
    )
    await asyncio.sleep(0)
    assert not finishing.done()  # progress, and a set without state, answer nothing
    pending.resolve("Dev", TARGET, _answer("6", state="Idle"))
    assert (await finishing).state == "Idle"


async def test_an_alert_takes_the_devices_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Indilib logs the reason as a message before the Alert (or just after): it is the refusal's message."""
    monkeypatch.setattr(commands, "ALERT_REASON_WAIT", 0.01)
    pending = PendingCommands()
    before = asyncio.create_task(_write(pending, "5000")())
    await asyncio.sleep(0)
    pending.note_message("Dev", MessageLevel.INFO, "Starting")
    pending.note_message(
        "Dev", MessageLevel.ERROR, "Requested value (5000) out of bounds"
    )
    pending.note_message("Other", MessageLevel.ERROR, "not about Dev")
    pending.resolve("Dev", TARGET, _answer("1", state="Alert"))
    with pytest.raises(
        CommandRejected, match=r"Requested value \(5000\) out of bounds"
    ):
        await before

    after = asyncio.create_task(_write(pending, "7000")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("1", state="Alert"))
    await asyncio.sleep(0)
    assert not after.done()  # waits a moment for the reason
    pending.note_message("Dev", MessageLevel.WARNING, "Too far")
    with pytest.raises(CommandRejected, match="Too far"):
        await after

    silent = asyncio.create_task(_write(pending, "9")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("1", state="Alert"))
    with pytest.raises(CommandRejected, match="Alert"):
        await silent  # no reason within ALERT_REASON_WAIT: the state is all there is

    monkeypatch.setattr(commands, "ALERT_REASON_WAIT", 10)
    out_of_time = asyncio.create_task(_write(pending, "9")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("1", state="Alert"))
    with pytest.raises(CommandRejected, match="Alert"):
        await (
            out_of_time
        )  # the command's time ran out first: still a refusal, not a timeout


async def test_a_failure_ends_an_alert_waiting_for_its_reason() -> None:
    """The link drops while an Alert waits for its reason: the command fails with the link's error."""
    pending = PendingCommands()
    write = asyncio.create_task(_write(pending, "9")())
    await asyncio.sleep(0)
    pending.resolve("Dev", TARGET, _answer("1", state="Alert"))
    pending.fail(lambda _key: True, lambda: CommandTimeout("gone"))
    with pytest.raises(CommandTimeout, match="gone"):
        await write
    pending.note_message("Dev", MessageLevel.ERROR, "late reason, for nobody")
