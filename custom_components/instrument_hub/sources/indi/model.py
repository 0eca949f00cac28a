"""The client-side model of what an INDI server defined: devices -> vectors -> members.

A vector is an INDI property; its members keep their raw values as the server sent them. A vector
stays in its device after a delProperty (disabled), so a redefinition can keep its memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import re
from types import MappingProxyType
from typing import Final

from ...events import join_key
from .protocol import SWITCH_ON, DefMember, DefVector, VectorKind, parse_number
from .standard import COMMAND_VECTORS, COMMAND_WORDS, DRIVER_INFO_VECTOR

LIGHT_OPTIONS: Final = ("idle", "ok", "busy", "alert")
STATE_ATTRIBUTE: Final = "property_state"
"""The attribute every entity of a vector carries its state in."""
"""INDI's four states, as a Light member's value and as every property's state (lower case)."""
DRIVER_NAME_MEMBER: Final = "DRIVER_NAME"
DRIVER_VERSION_MEMBER: Final = "DRIVER_VERSION"

STATE_OK: Final = "Ok"
STATE_IDLE: Final = "Idle"
STATE_BUSY: Final = "Busy"
STATE_ALERT: Final = "Alert"
EXCLUSIVE_RULES: Final = frozenset({"OneOfMany", "AtMostOne"})
PERM_RO: Final = "ro"
PERM_WO: Final = "wo"
_WORD_SEPARATORS: Final = re.compile(r"[^A-Z0-9]+")


@dataclass(slots=True)
class Member:
    """A vector member with its current raw value (as the server sent it)."""

    name: str
    label: str
    value: str
    format: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    channel_key: str = ""
    """The channel this member's value appears on (set by its vector)."""
    number: float | None = None
    """A number member's value, parsed once when it arrives (None: it does not parse)."""

    @classmethod
    def from_def(cls, member: DefMember, kind: VectorKind) -> Member:
        """Build a member from its definition."""
        return cls(
            member.name,
            member.label,
            member.value,
            member.format,
            member.minimum,
            member.maximum,
            member.step,
            number=parse_number(member.value) if kind is VectorKind.NUMBER else None,
        )

    @property
    def is_on(self) -> bool:
        """Return True for a switch member that is On."""
        return self.value == SWITCH_ON

    @property
    def value_range(self) -> tuple[float, float] | None:
        """Return (minimum, maximum), or None when the device defines no range (min == max)."""
        if self.minimum is None or self.maximum is None or self.minimum == self.maximum:
            return None
        return min(self.minimum, self.maximum), max(self.minimum, self.maximum)


@dataclass(slots=True)
class Vector:
    """An INDI property: its definition, current member values and whether it is defined now."""

    kind: VectorKind
    name: str
    label: str
    group: str | None
    perm: str | None
    rule: str | None
    timeout: float | None
    state: str | None
    members: dict[str, Member]
    enabled: bool = True
    last_message: str | None = None
    blob_warned: bool = False
    channel_keys: tuple[str, ...] = ()
    setting: bool = False
    """Defined while its device was disconnected: a setting to make before connecting (stays usable)."""
    _attributes: Mapping[str, object] = field(
        default=MappingProxyType({}), init=False, repr=False, compare=False
    )
    _attributes_state: str | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # What the definition decides, worked out once (on the first set) instead of on every set: the
    # kind, perm, rule, name and members of a vector never change (a redefinition is a new Vector).
    _select: bool | None = field(default=None, init=False, repr=False, compare=False)
    _commands: bool | None = field(default=None, init=False, repr=False, compare=False)
    _options: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def from_def(cls, definition: DefVector) -> Vector:
        """Build a vector from its definition."""
        vector = cls(
            kind=definition.kind,
            name=definition.name,
            label=definition.label,
            group=definition.group,
            perm=definition.perm,
            rule=definition.rule,
            timeout=definition.timeout,
            state=definition.state,
            members={
                member.name: Member.from_def(member, definition.kind)
                for member in definition.members
            },
        )
        # Keys are escaped names (see events.join_key): computed once here, not per reading.
        select_key = join_key(vector.name) if vector.is_select else None
        for member in vector.members.values():
            member.channel_key = select_key or join_key(vector.name, member.name)
        return vector

    @property
    def writable(self) -> bool:
        """Return True when a client may send new values (Lights and BLOB downloads never)."""
        if self.kind in (VectorKind.LIGHT, VectorKind.BLOB):
            return False
        return self.perm != PERM_RO

    @property
    def write_only(self) -> bool:
        """Return True for a vector a client writes but whose values the driver never reports."""
        return self.perm == PERM_WO

    @property
    def exclusive(self) -> bool:
        """Return True for a switch vector of which at most one member may be On."""
        return self.kind is VectorKind.SWITCH and self.rule in EXCLUSIVE_RULES

    @property
    def commands(self) -> bool:
        """Return True for a switch vector whose members are commands (buttons), not states.

        Write-only switches (their state is never reported), indilib's all-command vectors
        (CONFIG_PROCESS, *_PARK_OPTION) and one-member switches named for an action (ABORT,
        REFRESH, RESET, Scan Ports, ...) that the driver flips back off by itself.
        """
        commands = self._commands
        if commands is None:
            commands = self._commands = self._are_commands()
        return commands

    def _are_commands(self) -> bool:
        if self.kind is not VectorKind.SWITCH or not self.writable:
            return False
        if self.write_only or self.name in COMMAND_VECTORS:
            return True
        if len(self.members) != 1 or not self.exclusive:
            return False
        (member,) = self.members.values()
        words = set(_WORD_SEPARATORS.split(f"{self.name} {member.name}".upper()))
        return not words.isdisjoint(COMMAND_WORDS)

    @property
    def is_select(self) -> bool:
        """Return True when the vector is one enum channel rather than a channel per member."""
        select = self._select
        if select is None:
            select = self._select = (
                self.exclusive and len(self.members) >= 2 and not self.commands
            )
        return select

    def state_attributes(self) -> Mapping[str, object]:
        """Return what every entity of the vector carries: its state (read-only, shared by its readings)."""
        if self._attributes_state != self.state or not self._attributes:
            self._attributes_state = self.state
            self._attributes = MappingProxyType({STATE_ATTRIBUTE: self.state_option})
        return self._attributes

    @property
    def state_option(self) -> str | None:
        """Return the vector's state as an option of LIGHT_OPTIONS ("busy"), None when unknown."""
        state = (self.state or "").lower()
        return state if state in LIGHT_OPTIONS else None

    def options(self) -> dict[str, str]:
        """Map member name -> option: the labels, or the names when labels are not unique."""
        return dict(self._member_options())

    def _member_options(self) -> dict[str, str]:
        options = self._options
        if options is None:
            labels = [member.label for member in self.members.values()]
            if len(set(labels)) == len(labels):
                options = {m.name: m.label for m in self.members.values()}
            else:
                options = {name: name for name in self.members}
            self._options = options
        return options

    def select_value(self) -> str | None:
        """Return the option of the member that is On (None when none is)."""
        for member in self.members.values():
            if member.value == SWITCH_ON:
                return self._member_options()[member.name]
        return None

    def member_value(self, member: Member) -> object:
        """Return a member's value as a channel carries it (none for write-only vectors: never reported)."""
        if self.perm == PERM_WO:
            return None
        match self.kind:
            case VectorKind.NUMBER:
                return member.number
            case VectorKind.SWITCH:
                return member.is_on
            case VectorKind.LIGHT:
                light = member.value.lower()
                return light if light in LIGHT_OPTIONS else None
            case VectorKind.BLOB:
                return None
            case _:
                return member.value

    def current_values(self) -> dict[str, object]:
        """Return every member's current value (the values of a CommandResult)."""
        return {
            member.name: self.member_value(member) for member in self.members.values()
        }

    def member_of(self, channel_key: str) -> Member | None:
        """Return the member a per-member channel shows (None for the select of a whole vector)."""
        return next(
            (m for m in self.members.values() if m.channel_key == channel_key), None
        )


@dataclass(slots=True)
class Device:
    """An INDI device: its vectors, whether it exists now and the details last announced."""

    name: str
    vectors: dict[str, Vector] = field(default_factory=dict)
    present: bool = False
    announced: tuple[str | None, str | None] | None = None
    channels: dict[str, str] = field(default_factory=dict)
    """channel key -> vector name."""
    connected: bool | None = None
    """indilib's CONNECTION switch: CONNECT On (True), Off (False), or no such switch yet (None)."""
    state_summary: object = None
    """What the device's property-state channel last showed (value and attributes)."""

    def driver_info(self) -> tuple[str | None, str | None]:
        """Return (model, sw_version) from indilib's standard DRIVER_INFO text vector."""
        vector = self.vectors.get(DRIVER_INFO_VECTOR)
        if vector is None or vector.kind is not VectorKind.TEXT:
            return None, None

        def text(member_name: str) -> str | None:
            member = vector.members.get(member_name)
            return (member.value.strip() or None) if member else None

        return text(DRIVER_NAME_MEMBER), text(DRIVER_VERSION_MEMBER)
