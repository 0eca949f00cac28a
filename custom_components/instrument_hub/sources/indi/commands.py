"""What a write sends, and the commands waiting for their answer.

A write sends a new*Vector with ALL members of the vector: the given ones coerced, the others as
they are now. The answer is the next set*Vector of that vector with a final state (Ok/Idle resolve,
Alert rejects); commands of one vector are answered oldest first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
import contextlib
import math

from ..base import (
    CommandRejected,
    CommandResult,
    CommandTimeout,
    InvalidValue,
    SourceError,
)
from .model import STATE_ALERT, STATE_IDLE, STATE_OK, Member, Vector
from .protocol import (
    SWITCH_OFF,
    SWITCH_ON,
    SetVector,
    VectorKind,
    format_number,
    parse_number,
)

COMMAND_TIMEOUT_MIN = 5.0
"""Shortest wait for a command's answer (also used when the vector's timeout is 0 or absent)."""
COMMAND_TIMEOUT_MAX = 60.0
"""Longest wait for a command's answer, whatever the vector's timeout says."""


def _same_value(reported: str, sent: str) -> bool:
    """Compare a value an answer reports with one a command sent (numbers as numbers)."""
    if reported.strip() == sent.strip():
        return True
    reported_number, sent_number = parse_number(reported), parse_number(sent)
    return (
        reported_number is not None
        and sent_number is not None
        and math.isclose(reported_number, sent_number, rel_tol=1e-9, abs_tol=1e-9)
    )


def command_timeout(vector_timeout: float | None) -> float:
    """Return how long to wait for a command's answer: the vector's timeout, clamped."""
    return min(max(vector_timeout or 0.0, COMMAND_TIMEOUT_MIN), COMMAND_TIMEOUT_MAX)


# --------------------------------------------------------------------------------------------------
# Command values


def _coerce_number(value: object, member: Member) -> str:
    """Return a number command value as a plain decimal; checks the member's range."""
    number: float | None = None
    if isinstance(value, str):
        number = parse_number(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond float's range
            number = float(value)
    if number is None or not math.isfinite(number):
        raise InvalidValue(f"{value!r} is not a number", value=str(value))
    value_range = member.value_range
    if value_range is not None and not value_range[0] <= number <= value_range[1]:
        raise InvalidValue(
            f"{number:g} is outside {value_range[0]:g}..{value_range[1]:g} for {member.name}",
            value=str(value),
        )
    return format_number(number)


def _coerce_switch(value: object) -> str:
    """Return On/Off for a bool or the strings On/Off (any case)."""
    if isinstance(value, bool):
        return SWITCH_ON if value else SWITCH_OFF
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return SWITCH_ON if value.strip().lower() == "on" else SWITCH_OFF
    raise InvalidValue(f"{value!r} is not On/Off", value=str(value))


def _coerce_text(value: object) -> str:
    """Return a text command value (strings, and numbers written as text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidValue(f"{value!r} is not a text", value=str(value))


def _current_wire_value(vector: Vector, member: Member) -> str:
    """Return a member's current value to resend: numbers as plain decimals when they parse."""
    if vector.kind is VectorKind.NUMBER:
        number = parse_number(member.value)
        if number is not None:
            return format_number(number)
    return member.value


def _raw_number(value: object) -> str:
    """Return a number for the raw action: strings verbatim (the device judges), numbers plain."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError, ValueError):
            return format_number(value)
    raise InvalidValue(f"{value!r} is not a number", value=str(value))


def merged_values(
    vector: Vector, given: Mapping[str, object], *, raw: bool = False
) -> dict[str, str]:
    """Return wire values for ALL members: the given ones coerced, the others as they are now.

    For an exclusive switch vector, turning one member On turns the unspecified ones Off. With
    ``raw`` (the set_property action) number strings go out verbatim and unchecked, so a driver's
    own parsing (sexagesimal, its Alert for nonsense) decides, as with any other INDI client.
    """
    wire: dict[str, str] = {}
    for name, value in given.items():
        member = vector.members[name]
        match vector.kind:
            case VectorKind.NUMBER if raw:
                wire[name] = _raw_number(value)
            case VectorKind.NUMBER:
                wire[name] = _coerce_number(value, member)
            case VectorKind.SWITCH:
                wire[name] = _coerce_switch(value)
            case _:
                wire[name] = _coerce_text(value)
    turned_on = [name for name, value in wire.items() if value == SWITCH_ON]
    if vector.exclusive and len(turned_on) > 1:
        raise InvalidValue(
            f"only one member of {vector.name} can be On", value=", ".join(turned_on)
        )
    exclusive_on = vector.exclusive and bool(turned_on)
    for member in vector.members.values():
        if member.name not in wire:
            wire[member.name] = (
                SWITCH_OFF if exclusive_on else _current_wire_value(vector, member)
            )
    return {name: wire[name] for name in vector.members}  # in the device's member order


def _select_member(vector: Vector, option: object) -> str:
    """Return the member an enum option names (options first, then member names)."""
    options = vector.options()
    for name, label in options.items():
        if option == label:
            return name
    if isinstance(option, str) and option in vector.members:
        return option
    raise InvalidValue(
        f"{option!r} is not one of {', '.join(options.values())}", value=str(option)
    )


def select_values(vector: Vector, option: object) -> dict[str, str]:
    """Return wire values for an enum write: the member the option names On, all others Off."""
    chosen = _select_member(vector, option)
    return {
        name: SWITCH_ON if name == chosen else SWITCH_OFF for name in vector.members
    }


# --------------------------------------------------------------------------------------------------
# Pending commands


type PendingKey = tuple[str, str]
"""(device name, vector name)."""


class _Waiting:
    """One command sent and not answered yet; a ghost once its sender gave up (timed out).

    INDI answers carry no request id: the next final state of the vector answers its oldest
    command. A write that timed out may still be answered late, so it stays as a ghost that takes
    (and drops) that answer instead of letting it resolve a later write. Answers carry the vector's
    values: one that reports what a later write sent is that write's, so a device that dropped the
    timed-out write does not make the next one fail too. A ghost expires after one more timeout.
    """

    __slots__ = ("expires", "future", "sent")

    def __init__(
        self, future: asyncio.Future[CommandResult], sent: Mapping[str, str]
    ) -> None:
        self.future = future
        self.sent = sent
        self.expires: float | None = None

    def matches(self, update: SetVector) -> bool:
        """Tell whether the answer reports exactly the values this command sent (for members both name)."""
        common = [member for member in update.members if member.name in self.sent]
        return bool(common) and all(
            _same_value(member.value, self.sent[member.name]) for member in common
        )

    def stale(self, now: float) -> bool:
        """Return True for an entry no answer should go to: finished, or an expired ghost."""
        if self.expires is None:
            return self.future.done()
        return self.expires <= now


class PendingCommands:
    """The commands sent and not answered yet, oldest first for each vector."""

    def __init__(self) -> None:
        """Start with no command waiting."""
        self._waiting: dict[PendingKey, deque[_Waiting]] = {}
        self.late_answers = 0
        """Answers taken by ghosts: late answers to writes that had timed out."""

    def count(self) -> int:
        """Return how many commands wait for their answer (ghosts not counted)."""
        return sum(
            1
            for waiting in self._waiting.values()
            for entry in waiting
            if entry.expires is None
        )

    async def send_and_wait(
        self,
        device: str,
        vector: Vector,
        send: Callable[[], Awaitable[None]],
        sent: Mapping[str, str],
    ) -> CommandResult:
        """Send a command with ``send`` and wait for the answer to it, all within the timeout.

        The send is inside the (clamped vector) timeout: a server that stopped reading makes the
        command fail at its timeout instead of holding it until the connection drops.
        """
        key = (device, vector.name)
        loop = asyncio.get_running_loop()
        entry = _Waiting(loop.create_future(), sent)
        self._waiting.setdefault(key, deque()).append(entry)
        timeout = command_timeout(vector.timeout)
        not_sent = False
        try:
            async with asyncio.timeout(timeout):
                try:
                    await send()
                except SourceError:
                    not_sent = True
                    raise
                return await entry.future
        except TimeoutError:
            raise CommandTimeout(
                f"{device}.{vector.name} did not answer within {timeout:g} s",
                device=device,
                channel=vector.name,
            ) from None
        finally:
            future = entry.future
            if not_sent or (future.done() and not future.cancelled()):
                self._forget(key, entry)
            else:
                # Sent (at least into the socket's buffer) and given up on (timed out, or the caller
                # was cancelled): an answer may still come, for nobody. The ghost needs no future.
                future.cancel()
                entry.expires = loop.time() + timeout

    def resolve(self, device: str, vector: Vector, update: SetVector) -> None:
        """Answer the oldest pending command of the vector: Ok/Idle resolve, Alert rejects."""
        if update.state not in (STATE_OK, STATE_IDLE, STATE_ALERT):
            return  # Busy (or no state): the device is still working on it
        key = (device, vector.name)
        waiting = self._waiting.get(key)
        if not waiting:
            return
        now = asyncio.get_running_loop().time()
        while waiting and waiting[0].stale(now):
            waiting.popleft()
        entry = self._answered(waiting, update)
        if entry is None:
            del self._waiting[key]
            return
        waiting.remove(entry)
        if not waiting:
            del self._waiting[key]
        if entry.expires is not None:
            # The late answer to a write that timed out: nobody's result.
            self.late_answers += 1
            return
        if update.state == STATE_ALERT:
            entry.future.set_exception(
                CommandRejected(
                    update.message or STATE_ALERT,
                    device=device,
                    channel=vector.name,
                )
            )
        else:
            entry.future.set_result(
                CommandResult(update.state, update.message, vector.current_values())
            )

    @staticmethod
    def _answered(waiting: deque[_Waiting], update: SetVector) -> _Waiting | None:
        """Return the command an answer belongs to.

        Without ghosts, the oldest. With ghosts, the oldest live write whose values the answer
        reports; failing that, the oldest entry (a ghost: the late answer it waits for).
        """
        if not waiting:
            return None
        if all(entry.expires is None for entry in waiting):
            return waiting[0]
        matching = (e for e in waiting if e.expires is None and e.matches(update))
        return next(matching, waiting[0])

    def fail(
        self,
        matches: Callable[[PendingKey], bool],
        error: Callable[[], SourceError],
    ) -> None:
        """Fail the pending commands of the matching vectors (each with its own exception).

        Ghosts go too: after a lost link or a deleted vector no late answer can come.
        """
        for key in [key for key in self._waiting if matches(key)]:
            for entry in self._waiting.pop(key):
                if not entry.future.done():
                    entry.future.set_exception(error())

    def _forget(self, key: PendingKey, entry: _Waiting) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                del self._waiting[key]
        future = entry.future
        if future.done() and not future.cancelled():
            future.exception()  # mark it retrieved: the caller may have been cancelled meanwhile
