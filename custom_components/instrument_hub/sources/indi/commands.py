"""What a write sends, and the commands waiting for their answer.

A write sends a new*Vector with ALL members of the vector: the given ones coerced, the others as
they are now. The answer is the next set*Vector of that vector that carries a state; commands of one
vector are answered oldest first. What counts as the answer depends on how long the caller waits:

* until accepted (entity writes, button presses): Ok, Idle or Busy resolve (Busy: the device took it and
  is working on it, e.g. a 70 s exposure or a slew), Alert rejects;
* until finished (``set_property`` with a timeout): Busy is progress, Ok/Idle resolve, Alert rejects.

indilib drivers give their reason for an Alert in a separate message ("[ERROR] Requested exposure value
(5000) seconds out of bounds"), usually just before the Alert: the device's messages since the command
was sent become the refusal's reason, and an Alert without any waits a moment for one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
import contextlib
from enum import Enum
import math

from ...events import MessageLevel
from ..base import (
    CommandRejected,
    CommandResult,
    CommandTimeout,
    InvalidValue,
    SourceError,
)
from .model import STATE_ALERT, STATE_BUSY, STATE_IDLE, STATE_OK, Member, Vector
from .protocol import (
    SWITCH_OFF,
    SWITCH_ON,
    SetVector,
    VectorKind,
    forbidden_xml_char,
    format_number,
    parse_number,
)

COMMAND_TIMEOUT_MIN = 5.0
"""Shortest wait for a command's answer (also used when the vector's timeout is 0 or absent)."""
COMMAND_TIMEOUT_MAX = 60.0
"""Longest wait for a command's answer, whatever the vector's timeout says."""
FINISH_TIMEOUT_MAX = 86400.0
"""Longest wait a caller may ask for until a command finishes (set_property's timeout)."""
MESSAGES_KEPT = 16
"""Messages of its device a waiting command keeps (the last ones give a refusal's reason)."""
ALERT_REASON_WAIT = 0.25
"""Seconds an Alert without any message waits for the device's message giving the reason."""


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
    for name, value in wire.items():
        if (char := forbidden_xml_char(value)) is not None:
            raise InvalidValue(
                f"the value of {name} contains U+{ord(char):04X}, a character INDI (XML) cannot carry",
                value=value.encode("utf-8", "backslashreplace").decode(
                    "ascii", "backslashreplace"
                ),
            )
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


class Until(Enum):
    """What a command waits for."""

    ACCEPTED = "accepted"
    """Ok, Idle or Busy (the device took it); Alert rejects."""
    FINISHED = "finished"
    """Ok or Idle (the device is done); Busy is progress; Alert rejects."""


class _Waiting:
    """One command sent and not answered yet; a ghost once its sender gave up (timed out).

    INDI answers carry no request id: the next answer of the vector answers its oldest command. A
    write that timed out may still be answered late, so it stays as a ghost that takes (and drops)
    that answer instead of letting it resolve a later write. Answers carry the vector's values: one
    that reports what a later write sent is that write's, so a device that dropped the timed-out
    write does not make the next one fail too. A ghost expires after one more timeout.
    """

    __slots__ = ("expires", "future", "messages", "sent", "until")

    def __init__(
        self,
        future: asyncio.Future[CommandResult],
        sent: Mapping[str, str],
        until: Until,
    ) -> None:
        self.future = future
        self.sent = sent
        self.until = until
        self.expires: float | None = None
        self.messages: deque[tuple[MessageLevel, str]] = deque(maxlen=MESSAGES_KEPT)
        """The device's last messages since the command was sent (the reason of a refusal)."""

    def matches(self, update: SetVector) -> bool:
        """Tell whether the answer reports exactly the values this command sent (for members both name)."""
        common = [member for member in update.members if member.name in self.sent]
        return bool(common) and all(
            _same_value(member.value, self.sent[member.name]) for member in common
        )

    def answered_by(self, state: str | None) -> bool:
        """Tell whether an answer in this state ends the wait (Busy only ends waiting for acceptance)."""
        if state in (STATE_OK, STATE_IDLE, STATE_ALERT):
            return True
        return state == STATE_BUSY and self.until is Until.ACCEPTED

    def stale(self, now: float) -> bool:
        """Return True for an entry no answer should go to: finished, or an expired ghost."""
        if self.expires is None:
            return self.future.done()
        return self.expires <= now

    def reason(self) -> str | None:
        """Return the device's most telling message since sending: its last error, else warning, else any."""
        for wanted in (MessageLevel.ERROR, MessageLevel.WARNING, None):
            for level, text in reversed(self.messages):
                if wanted is None or level is wanted:
                    return text
        return None


class PendingCommands:
    """The commands sent and not answered yet, oldest first for each vector."""

    def __init__(self) -> None:
        """Start with no command waiting."""
        self._waiting: dict[PendingKey, deque[_Waiting]] = {}
        # Rejected commands whose Alert came without a reason: waiting a moment for the device's message.
        self._alerting: dict[str, list[tuple[_Waiting, str, asyncio.TimerHandle]]] = {}
        self.late_answers = 0
        """Answers taken by ghosts: late answers to writes that had timed out."""

    @property
    def waiting(self) -> bool:
        """Return True while a command waits for its answer (answers are looked for only then)."""
        return bool(self._waiting)

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
        *,
        until: Until = Until.ACCEPTED,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send a command with ``send`` and wait for the answer to it, all within the timeout.

        The send is inside the timeout: a server that stopped reading makes the command fail at its
        timeout instead of holding it until the connection drops. Waiting for acceptance takes the
        vector's own timeout (clamped to 5..60 s); waiting for the finish takes the caller's.
        """
        key = (device, vector.name)
        loop = asyncio.get_running_loop()
        entry = _Waiting(loop.create_future(), sent, until)
        self._waiting.setdefault(key, deque()).append(entry)
        if timeout is None:
            timeout = command_timeout(vector.timeout)
        timeout = min(max(timeout, 0.0), FINISH_TIMEOUT_MAX)
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
            if self._drop_alerting(entry):
                # Refused, and its reason did not come before the caller's time ran out.
                raise CommandRejected(
                    STATE_ALERT, device=device, channel=vector.name
                ) from None
            waited = "did not answer" if until is Until.ACCEPTED else "did not finish"
            raise CommandTimeout(
                f"{device}.{vector.name} {waited} within {timeout:g} s",
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
                self._drop_alerting(entry)

    def note_message(self, device: str, level: MessageLevel, text: str) -> None:
        """Record a device's message for its waiting commands; it is the reason of an Alert waiting for one."""
        for (name, _vector), waiting in self._waiting.items():
            if name == device:
                for entry in waiting:
                    if entry.expires is None:
                        entry.messages.append((level, text))
        for entry, vector, timer in self._alerting.pop(device, []):
            timer.cancel()
            self._reject(entry, device, vector, text)

    def resolve(self, device: str, vector: Vector, update: SetVector) -> None:
        """Answer the oldest pending command of the vector the answer ends (see Until)."""
        if update.state is None:
            return  # values only: not an answer
        key = (device, vector.name)
        waiting = self._waiting.get(key)
        if not waiting:
            return
        now = asyncio.get_running_loop().time()
        while waiting and waiting[0].stale(now):
            waiting.popleft()
        entry = self._answered(waiting, update)
        if entry is None:
            if not waiting:
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
            reason = update.message or entry.reason()
            if reason is None:
                # indilib's reason often comes as a message of its own: give it a moment to arrive.
                timer = asyncio.get_running_loop().call_later(
                    ALERT_REASON_WAIT,
                    self._reject_without_reason,
                    entry,
                    device,
                    vector.name,
                )
                self._alerting.setdefault(device, []).append(
                    (entry, vector.name, timer)
                )
                return
            self._reject(entry, device, vector.name, reason)
            return
        entry.future.set_result(
            CommandResult(
                update.state,
                update.message or entry.reason(),
                vector.current_values(),
            )
        )

    @staticmethod
    def _answered(waiting: deque[_Waiting], update: SetVector) -> _Waiting | None:
        """Return the command an answer belongs to, None when it ends no wait (progress, Busy).

        Without ghosts, the oldest. With ghosts, the oldest live write whose values the answer
        reports; failing that, the oldest entry (a ghost: the late answer it waits for).
        """
        if not waiting:
            return None
        if all(entry.expires is None for entry in waiting):
            oldest = waiting[0]
            return oldest if oldest.answered_by(update.state) else None
        matching = (
            entry
            for entry in waiting
            if entry.expires is None
            and entry.answered_by(update.state)
            and entry.matches(update)
        )
        found = next(matching, None)
        if found is not None:
            return found
        oldest = waiting[0]
        return oldest if oldest.answered_by(update.state) else None

    def _reject(self, entry: _Waiting, device: str, vector: str, reason: str) -> None:
        if not entry.future.done():
            entry.future.set_exception(
                CommandRejected(reason, device=device, channel=vector)
            )

    def _reject_without_reason(self, entry: _Waiting, device: str, vector: str) -> None:
        alerting = self._alerting.get(device, [])
        alerting[:] = [item for item in alerting if item[0] is not entry]
        if not alerting:
            self._alerting.pop(device, None)
        self._reject(entry, device, vector, STATE_ALERT)

    def _drop_alerting(self, entry: _Waiting) -> bool:
        """Stop waiting for an Alert's reason; return True when the entry was waiting for one."""
        found = False
        for device, alerting in list(self._alerting.items()):
            for item in [item for item in alerting if item[0] is entry]:
                item[2].cancel()
                alerting.remove(item)
                found = True
            if not alerting:
                del self._alerting[device]
        return found

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
        for device, alerting in list(self._alerting.items()):
            for entry, vector, timer in [
                item for item in alerting if matches((device, item[1]))
            ]:
                timer.cancel()
                alerting.remove((entry, vector, timer))
                if not entry.future.done():
                    entry.future.set_exception(error())
            if not alerting:
                del self._alerting[device]

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
