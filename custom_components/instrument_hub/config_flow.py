"""Config flow: a menu of source kinds, one step per kind; reconfigure and options through the kind.

Nothing here names a kind: the menu lists the registry, ``async_step_<kind>`` is the kind's form
(the same step, prefilled, reconfigures an entry), and further steps a kind declares in
``flow_steps`` are found by their step id. Discovery (``zeroconf``, ``usb``) goes to the first kind
that declares a step of that name and accepts it (``accepts_discovery``: its service type, its USB
ids), reauthentication to the entry's kind's ``reauth`` step.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USB,
    SOURCE_ZEROCONF,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.core import callback
from homeassistant.helpers.service_info.usb import UsbServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.helpers.typing import UNDEFINED, UndefinedType

from .const import CONF_SOURCE_KIND, DOMAIN
from .kinds import KINDS, find_kind, kind_of
from .kinds.base import Endpoint, FlowFormError, OptionsForm, SourceKind

STEP_PREFIX = "async_step_"
REAUTH = "reauth"
"""The step id of a kind's reauthentication step in its ``flow_steps``."""


class InstrumentHubConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an endpoint: choose its kind, describe it, and it is tested before it is added."""

    VERSION = 1

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Offer the kinds of source."""
        return self.async_show_menu(step_id="user", menu_options=list(KINDS))

    # Dynamic steps, hidden from mypy so that real attributes stay checked.
    if not TYPE_CHECKING:  # pragma: no branch

        def __getattr__(self, name: str) -> Any:
            """Return the step ``async_step_<id>``: a kind's form or a step a kind declares."""
            step_id = name.removeprefix(STEP_PREFIX)
            if step_id != name:
                if (kind := KINDS.get(step_id)) is not None:
                    return partial(self.async_step_kind, kind)
                for kind in KINDS.values():
                    if (step := kind.flow_steps.get(step_id)) is not None:
                        return partial(step, self)
            raise AttributeError(name)

    async def async_step_kind(
        self, kind: SourceKind, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show a kind's form; check what the user gave, then add (or update) the entry."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                endpoint = kind.endpoint(user_input)
                if endpoint.unique_id is not None:
                    # Before any I/O: an endpoint that is already added aborts at once.
                    await self.async_claim_unique_id(endpoint.unique_id)
                endpoint = await kind.async_check(self.hass, endpoint)
            except FlowFormError as err:
                errors = err.errors
            else:
                return await self.async_finish(kind, endpoint)
        values = user_input
        if values is None and self.source == SOURCE_RECONFIGURE:
            values = dict(self._get_reconfigure_entry().data)
        return self.async_show_form(
            step_id=kind.name,
            data_schema=self.add_suggested_values_to_schema(
                await kind.async_schema(self.hass, values or {}), values
            ),
            errors=errors,
        )

    async def async_claim_unique_id(self, unique_id: str) -> None:
        """Take the unique id, aborting when another entry has it (the entry being changed may)."""
        if (
            self.source == SOURCE_RECONFIGURE
            and unique_id == self._get_reconfigure_entry().unique_id
        ):
            return
        await self.async_set_unique_id(unique_id)
        self._abort_if_unique_id_configured()

    async def async_finish(
        self, kind: SourceKind, endpoint: Endpoint
    ) -> ConfigFlowResult:
        """Create the entry, or update the one being reconfigured (keeping a title the user chose)."""
        assert endpoint.unique_id is not None, "a checked endpoint has its unique id"
        await self.async_claim_unique_id(endpoint.unique_id)
        data = {CONF_SOURCE_KIND: kind.name, **endpoint.data}
        if self.source != SOURCE_RECONFIGURE:
            if endpoint.found:
                # What the check found, on the success dialog (config.create_entry.<kind>).
                return self.async_create_entry(
                    title=endpoint.title,
                    data=data,
                    description=kind.name,
                    description_placeholders=dict(endpoint.found),
                )
            return self.async_create_entry(title=endpoint.title, data=data)
        entry = self._get_reconfigure_entry()
        title: str | UndefinedType = UNDEFINED
        if entry.title == _default_title(kind, entry):
            title = endpoint.title
        return self.async_update_reload_and_abort(
            entry,
            unique_id=endpoint.unique_id,
            title=title,
            data=data,
            reason="reconfigure_successful",
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change how an entry reaches its endpoint: the kind's own form, prefilled."""
        return await self.async_step_kind(kind_of(self._get_reconfigure_entry()))

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Ask again for what the endpoint refused (credentials): the entry's kind's ``reauth`` step."""
        step = kind_of(self._get_reauth_entry()).flow_steps.get(REAUTH)
        if step is None:
            return self.async_abort(reason="not_supported")
        return await step(self, entry_data)

    async def async_step_zeroconf(
        self, discovery_info: ZeroconfServiceInfo
    ) -> ConfigFlowResult:
        """Hand a zeroconf announcement to the kind that declares the ``zeroconf`` step."""
        return await self._async_discovered(SOURCE_ZEROCONF, discovery_info)

    async def async_step_usb(self, discovery_info: UsbServiceInfo) -> ConfigFlowResult:
        """Hand a USB device that was plugged in to the kind that declares the ``usb`` step."""
        return await self._async_discovered(SOURCE_USB, discovery_info)

    async def _async_discovered(
        self, source: str, discovery_info: object
    ) -> ConfigFlowResult:
        for kind in KINDS.values():
            step = kind.flow_steps.get(source)
            if step is not None and kind.accepts_discovery(source, discovery_info):
                return await step(self, discovery_info)
        return self.async_abort(reason="not_supported")

    @classmethod
    @callback
    def async_supports_options_flow(cls, config_entry: ConfigEntry) -> bool:
        """Offer options only for the kinds that have some."""
        kind = find_kind(config_entry)
        return kind is not None and kind.options_form(config_entry) is not None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> InstrumentHubOptionsFlow:
        """Return the options flow."""
        return InstrumentHubOptionsFlow()


def _default_title(kind: SourceKind, entry: ConfigEntry) -> str | None:
    """Return the title the flow would have given the entry (None if its data no longer validates)."""
    try:
        return kind.default_title(entry.data)
    except FlowFormError:
        return None


class InstrumentHubOptionsFlow(OptionsFlowWithReload):
    """The options of the entry's kind; the entry reloads when they change."""

    def _form(self) -> OptionsForm:
        form = kind_of(self.config_entry).options_form(self.config_entry)
        assert form is not None  # only offered when there is one
        return form

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the kind's options form."""
        return await self.async_step_options()

    if not TYPE_CHECKING:  # pragma: no branch

        def __getattr__(self, name: str) -> Any:
            """Return the kind's options step (its step id names the form's translations)."""
            if (
                name.startswith(STEP_PREFIX)
                and name == STEP_PREFIX + self._form().step_id
            ):
                return self.async_step_options
            raise AttributeError(name)

    async def async_step_options(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and check the options."""
        form = self._form()
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                return self.async_create_entry(data=form.validate(user_input))
            except FlowFormError as err:
                errors = err.errors
        current = {**form.defaults, **self.config_entry.options}
        return self.async_show_form(
            step_id=form.step_id,
            data_schema=self.add_suggested_values_to_schema(
                form.schema, user_input or current
            ),
            errors=errors,
        )
