"""A source and a source kind that need no protocol: the hub's tests drive it event by event.

``FakeSource`` is what a protocol client looks like to the hub: it is started with an event sink,
the test pushes normalized events through it, and its writes and actions are answered by handlers
the test installs (immediately, after a gate opens, or with an error). ``FakeKind`` registers it as
the kind "fake" for the duration of a test, so a real config entry goes through the integration's
whole setup path (registry, hub, platforms, services, diagnostics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from unittest.mock import patch

from homeassistant.config_entries import ConfigFlowResult
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
from homeassistant.helpers import config_validation as cv, selector
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.const import (
    ATTR_CONFIG_ENTRY_ID,
    CONF_SOURCE_KIND,
    DOMAIN,
)
from custom_components.instrument_hub.events import Event
from custom_components.instrument_hub.hub import InstrumentHubConfigEntry
from custom_components.instrument_hub.kinds import KINDS
from custom_components.instrument_hub.kinds.base import (
    Endpoint,
    FlowFormError,
    FlowStep,
    KindAction,
    SourceKind,
    TaskFactory,
)
from custom_components.instrument_hub.sources.base import (
    CannotConnect,
    CommandResult,
    EventSink,
    Source,
    SourceError,
)

FAKE: Final = "fake"
FAKE_ENTRY_ID: Final = "01JFAKEENTRY0000000000000A"
"""A fixed entry id: unique ids of devices without a hardware id contain it (stable snapshots)."""
WAIT_SECONDS: Final = 5.0

type WriteHandler = Callable[[str, str, object], Awaitable[CommandResult]]


@dataclass
class Write:
    """One write (or action: ``value`` is ``ACTION``) the hub sent to the source."""

    device_key: str
    channel_key: str
    value: object


ACTION: Final = object()


@dataclass
class FakeSource(Source):
    """A source whose events come from the test and whose commands the test answers."""

    initial: list[Event] = field(default_factory=list)
    """Events delivered as soon as the source starts (what a server says on connect)."""
    refuse_start: bool = False
    start_error: SourceError | None = None
    """Raised by async_start instead of connecting (e.g. AuthenticationFailed)."""
    writes: list[Write] = field(default_factory=list)
    handler: WriteHandler | None = None
    sink: EventSink | None = None
    stopped: bool = False
    _written: asyncio.Event = field(default_factory=asyncio.Event)

    async def async_start(self, sink: EventSink) -> None:
        """Connect: refuse when told to, else deliver the initial events."""
        if self.refuse_start:
            raise CannotConnect("refused by the test", host="fake")
        if self.start_error is not None:
            raise self.start_error
        self.sink = sink
        self.push(*self.initial)

    async def async_stop(self) -> None:
        """Nothing to close."""
        self.stopped = True
        self.sink = None

    def push(self, *events: Event) -> None:
        """Deliver events to the hub, as a protocol callback would."""
        assert self.sink is not None, "the source is not started"
        for event in events:
            self.sink(event)

    async def async_write(
        self, device_key: str, channel_key: str, value: object
    ) -> CommandResult:
        """Record the write and answer it with the test's handler (Ok by default)."""
        return await self._command(Write(device_key, channel_key, value))

    async def async_run_action(
        self, device_key: str, channel_key: str
    ) -> CommandResult:
        """Record the action and answer it like a write."""
        return await self._command(Write(device_key, channel_key, ACTION))

    async def _command(self, write: Write) -> CommandResult:
        self.writes.append(write)
        self._written.set()
        if self.handler is None:
            return CommandResult("Ok")
        return await self.handler(write.device_key, write.channel_key, write.value)

    async def wait_writes(self, count: int) -> None:
        """Wait (bounded) until ``count`` commands reached the source."""
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.writes) < count:
                self._written.clear()
                await self._written.wait()

    def diagnostics(self) -> dict[str, Any]:
        """Return what diagnostics show of a source (with a host, to be redacted)."""
        return {"host": "fake.local", "writes": len(self.writes)}


async def _fake_ping(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Answer a kind's own action with the entry's title."""
    return {"title": entry.title}


async def _step_fake_second(
    flow: Any, user_input: dict[str, Any] | None
) -> ConfigFlowResult:
    """Finish a kind's further step with an endpoint whose unique id the step decides."""
    return await flow.async_finish(  # type: ignore[no-any-return]
        FAKE_KIND_INSTANCE,
        Endpoint(unique_id="fake:second", title="Second", data={CONF_HOST: "second"}),
    )


async def _step_fake_zeroconf(
    flow: Any, discovery_info: ZeroconfServiceInfo
) -> ConfigFlowResult:
    """Offer the announced endpoint: its unique id from the announcement, then the finish."""
    host = str(discovery_info.ip_address)
    await flow.async_claim_unique_id(f"fake:{host}")
    return await flow.async_finish(  # type: ignore[no-any-return]
        FAKE_KIND_INSTANCE,
        Endpoint(
            unique_id=f"fake:{host}", title=f"Fake {host}", data={CONF_HOST: host}
        ),
    )


async def _step_fake_reauth(
    flow: Any, entry_data: Mapping[str, Any]
) -> ConfigFlowResult:
    """Reauthenticate: nothing to ask in this fake, the entry is reloaded as it is."""
    return flow.async_update_reload_and_abort(  # type: ignore[no-any-return]
        flow._get_reauth_entry(), data=dict(entry_data)
    )


class FakeKind(SourceKind):
    """The kind "fake": a host name, checked without I/O; its sources are handed out by the test."""

    name = FAKE
    entry_model = "Fake endpoint"
    redact = frozenset({CONF_HOST, "host"})
    actions = (
        KindAction(
            "fake_ping",
            probatio.Schema({probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string}),
            _fake_ping,
            returns_response=True,
        ),
    )
    flow_steps: ClassVar[Mapping[str, FlowStep]] = {
        "fake_second": _step_fake_second,
        "zeroconf": _step_fake_zeroconf,
        "reauth": _step_fake_reauth,
    }

    def __init__(self) -> None:
        """Keep the sources the next entries will pick up, and those in use."""
        self.next_sources: list[FakeSource] = []
        self.sources: dict[str, FakeSource] = {}

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return a form with a host name."""
        return probatio.Schema({probatio.Required(CONF_HOST): selector.TextSelector()})

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Refuse an empty host; the unique id of host "later" is only known after the check."""
        host = str(user_input[CONF_HOST]).strip()
        if not host:
            raise FlowFormError({CONF_HOST: "invalid_host"})
        return Endpoint(
            unique_id=None if host == "later" else f"fake:{host}",
            title=f"Fake {host}",
            data={CONF_HOST: host},
        )

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Host "down" cannot be reached; "later" learns its unique id here; "chatty" tells what it found."""
        if endpoint.data[CONF_HOST] == "down":
            raise FlowFormError({"base": "cannot_connect"})
        if endpoint.unique_id is None:
            return Endpoint("fake:learned", "Fake learned", endpoint.data)
        if endpoint.data[CONF_HOST] == "chatty":
            return Endpoint(
                endpoint.unique_id,
                endpoint.title,
                endpoint.data,
                {"what": "a fake device"},
            )
        return endpoint

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> FakeSource:
        """Hand out the source the test prepared (a fresh one if none)."""
        source = self.next_sources.pop(0) if self.next_sources else FakeSource()
        self.sources[entry.entry_id] = source
        return source


FAKE_KIND_INSTANCE: Final = FakeKind()


def registered_fake_kind() -> Iterator[FakeKind]:
    """Register the fake kind (next to the real ones) for one test."""
    kind = FAKE_KIND_INSTANCE
    kind.next_sources.clear()
    kind.sources.clear()
    with patch.dict(KINDS, {FAKE: kind}):
        yield kind


def fake_entry(
    hass: HomeAssistant,
    *,
    entry_id: str = FAKE_ENTRY_ID,
    title: str = "Fake bench",
    host: str = "bench",
) -> MockConfigEntry:
    """Add (not set up) an entry of the fake kind."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title=title,
        unique_id=f"fake:{host}",
        data={CONF_SOURCE_KIND: FAKE, CONF_HOST: host},
    )
    entry.add_to_hass(hass)
    return entry
