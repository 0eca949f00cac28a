"""What the Home Assistant side needs to know about one kind of source.

Each kind (INDI server, Powersensor network, hololinked Thing, ...) is one module in this package with
one :class:`SourceKind`; ``__init__``, ``config_flow``, ``diagnostics`` and ``services`` only ever talk
to that interface, so adding a kind never edits them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from homeassistant.config_entries import ConfigEntry, ConfigFlowResult
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
import probatio

from ..blob_store import FileStoreSettings
from ..sources.base import Source

if TYPE_CHECKING:
    import asyncio

    from ..config_flow import InstrumentHubConfigFlow
    from ..hub import InstrumentHubConfigEntry

type TaskFactory = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
"""Creates a named background task bound to the entry (``entry.async_create_background_task``)."""
type FlowStep = Callable[[InstrumentHubConfigFlow, Any], Awaitable[ConfigFlowResult]]
"""A config-flow step of a kind beyond its first form: called with the flow and the step's input."""
type ActionHandler = Callable[
    [ServiceCall, InstrumentHubConfigEntry], Awaitable[ServiceResponse]
]


class FlowFormError(Exception):
    """User input the form refuses: ``errors`` maps a field (or "base") to a translation key."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        """Keep the form errors."""
        super().__init__(", ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a config-flow form described: the entry's unique id, default title and data.

    ``unique_id`` may be None until the endpoint answered (a Thing's id comes from its description).
    ``found`` is what the check found there (placeholders of the translation
    ``config.create_entry.<kind>``), shown to the user when the entry is created; empty: nothing.
    """

    unique_id: str | None
    title: str
    data: Mapping[str, Any]
    found: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KindAction:
    """An action (service) of a kind: registered once, dispatched to the entry's kind."""

    name: str
    schema: probatio.Schema
    handler: ActionHandler
    returns_response: bool = False


@dataclass(frozen=True, slots=True)
class OptionsForm:
    """A kind's options form: its step id (which names its translations), schema, defaults and check."""

    step_id: str
    schema: probatio.Schema
    defaults: Mapping[str, Any]
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    """Return the options to store; raise FlowFormError for refused input."""


class SourceKind(ABC):
    """The Home Assistant side of one kind of source (see the module doc)."""

    name: ClassVar[str]
    """The kind's key: its menu option and config-flow step id, stored in the entry data."""
    entry_model: ClassVar[str]
    """The model shown on the entry's own device (the endpoint)."""
    redact: ClassVar[frozenset[str]] = frozenset()
    """Keys of entry data and diagnostics that identify the user's equipment or hold secrets."""
    actions: ClassVar[tuple[KindAction, ...]] = ()
    flow_steps: ClassVar[Mapping[str, FlowStep]] = {}
    """Further config-flow steps of the kind (step id -> step), e.g. a credentials step.

    The steps ``zeroconf`` and ``usb`` receive that discovery's service info (the first kind
    whose ``accepts_discovery`` takes it), ``reauth`` the entry data of the entry to reauthenticate. A step ends with
    ``flow.async_finish(kind, endpoint)`` (create, or update the entry being reconfigured) or any
    other flow result; ``flow.async_claim_unique_id`` aborts on an endpoint that is already added.
    """

    @abstractmethod
    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the form of the kind's step (also shown, prefilled, to reconfigure an entry)."""

    async def async_schema(
        self, hass: HomeAssistant, values: Mapping[str, Any]
    ) -> probatio.Schema:
        """Return the form when building it needs I/O (listing serial ports); default: schema()."""
        return self.schema(values)

    @abstractmethod
    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Check the form's input without any I/O and describe the endpoint (FlowFormError if refused)."""

    @abstractmethod
    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Talk to the endpoint before the entry is created; return it completed, or FlowFormError."""

    @abstractmethod
    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> Source:
        """Build the entry's source from its data and options."""

    def default_title(self, data: Mapping[str, Any]) -> str:
        """Return the title the flow gives an entry with this data (kept when the user renamed it)."""
        return self.endpoint(data).title

    def file_settings(
        self, hass: HomeAssistant, entry: ConfigEntry
    ) -> FileStoreSettings | None:
        """Return where the entry's received files go; None: the kind receives no files."""
        return None

    def options_form(self, entry: ConfigEntry) -> OptionsForm | None:
        """Return the options form of an entry of this kind; None: the kind has no options."""
        return None

    def accepts_discovery(self, source: str, discovery_info: object) -> bool:
        """Tell whether a discovery (``zeroconf``, ``usb``) is this kind's to handle.

        The default takes every discovery of a source the kind has a step for; a kind sharing a
        discovery source with others narrows it (its zeroconf service type, its USB ids).
        """
        return source in self.flow_steps
