"""What every source offers the hub. No Home Assistant imports."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import Event

type EventSink = Callable[[Event], None]
"""Where a source delivers its events; called on the event loop, must not block."""


class SourceError(Exception):
    """Base of the errors a source raises; ``translation_key`` names the user-facing message."""

    translation_key = "command_failed"

    def __init__(self, message: str, **placeholders: str) -> None:
        """Keep the message and the placeholders for the translated error."""
        super().__init__(message)
        self.message = message
        self.placeholders = {"message": message, **placeholders}


class CannotConnect(SourceError):
    """The endpoint could not be reached."""

    translation_key = "cannot_connect"


class AuthenticationFailed(SourceError):
    """The endpoint refused the credentials (or wants some); the entry needs new ones (reauth)."""

    translation_key = "invalid_auth"


class NotConnected(SourceError):
    """A command was sent while the link is down."""

    translation_key = "not_connected"


class UnknownTarget(SourceError):
    """A command named a device, channel or property the endpoint does not have."""

    translation_key = "unknown_target"


class InvalidValue(SourceError):
    """A command carried a value the channel cannot take (checked before sending)."""

    translation_key = "invalid_value"


class CommandRejected(SourceError):
    """The device answered the command with an error (INDI state Alert, ...)."""

    translation_key = "command_rejected"


class CommandTimeout(SourceError):
    """The device did not confirm the command in time."""

    translation_key = "command_timeout"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a device answered to a command: its state, its message and the values it reports now."""

    state: str
    message: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)


class Source(ABC):
    """A protocol client run by one hub (one config entry)."""

    @abstractmethod
    async def async_start(self, sink: EventSink) -> None:
        """Connect (raising CannotConnect when the endpoint is unreachable) and start pushing events.

        After a successful start the source keeps itself connected, reconnecting with back-off, until
        ``async_stop``; it reports link changes as LinkUp/LinkDown events.
        """

    @abstractmethod
    async def async_stop(self) -> None:
        """Stop every task and close every connection; pending commands fail with NotConnected."""

    @abstractmethod
    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Write one channel and return once the device confirmed it (or raise a SourceError)."""

    async def async_run_action(
        self, device_key: str, channel_key: str
    ) -> CommandResult:
        """Run an ACTION channel (a command without a value) and return once the device confirmed it."""
        raise UnknownTarget(
            f"{device_key} has no action {channel_key}",
            device=device_key,
            channel=channel_key,
        )

    def command_lane(self, device_key: str, channel_key: str) -> Hashable:
        """Return what a command to this channel must stay in order with (default: the channel).

        Commands of different lanes run at the same time; a source whose writes address something
        larger than a channel (an INDI vector: all its members are sent together) widens the lane.
        """
        return (device_key, channel_key)

    @abstractmethod
    def diagnostics(self) -> dict[str, Any]:
        """Return connection state and counters for the diagnostics download (no secrets, no raw payloads)."""
