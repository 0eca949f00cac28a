"""Config flow: a menu of source kinds, one step per kind; reconfigure; options."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers import selector
import probatio

from .blob_store import is_safe_relative_folder
from .const import (
    CONF_BLOB_FOLDER,
    CONF_BLOB_KEEP,
    CONF_BLOB_MAX_MB,
    CONF_BLOBS_ENABLED,
    CONF_SOURCE_KIND,
    DEFAULT_BLOB_FOLDER,
    DEFAULT_BLOB_KEEP,
    DEFAULT_BLOB_MAX_MB,
    DEFAULT_BLOBS_ENABLED,
    DEFAULT_INDI_PORT,
    DOMAIN,
    SOURCE_INDI,
)
from .sources.base import CannotConnect
from .sources.probe import tcp_probe

PORT_SELECTOR = selector.NumberSelector(
    selector.NumberSelectorConfig(
        min=1, max=65535, step=1, mode=selector.NumberSelectorMode.BOX
    )
)
INDI_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_HOST): selector.TextSelector(),
        probatio.Required(CONF_PORT, default=DEFAULT_INDI_PORT): PORT_SELECTOR,
    }
)
OPTIONS_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_BLOBS_ENABLED): selector.BooleanSelector(),
        probatio.Required(CONF_BLOB_FOLDER): selector.TextSelector(),
        probatio.Required(CONF_BLOB_MAX_MB): selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=1,
                max=1024,
                step=1,
                unit_of_measurement="MiB",
                mode=selector.NumberSelectorMode.BOX,
            )
        ),
        probatio.Required(CONF_BLOB_KEEP): selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=1, max=100000, step=1, mode=selector.NumberSelectorMode.BOX
            )
        ),
    }
)


def _endpoint(user_input: dict[str, Any]) -> tuple[str, int]:
    return str(user_input[CONF_HOST]).strip(), int(user_input[CONF_PORT])


def _indi_unique_id(host: str, port: int) -> str:
    return f"{SOURCE_INDI}:{host.lower()}:{port}"


async def _async_validate_endpoint(host: str, port: int) -> dict[str, str]:
    """Test the connection; return the form errors (empty when it works)."""
    if not host:
        return {CONF_HOST: "invalid_host"}
    try:
        await tcp_probe(host, port)
    except CannotConnect:
        return {"base": "cannot_connect"}
    return {}


class InstrumentHubConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an endpoint: choose its kind, give its address, and it is tested before it is added."""

    VERSION = 1

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Offer the kinds of source."""
        return self.async_show_menu(step_id="user", menu_options=[SOURCE_INDI])

    async def async_step_indi(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add an INDI server."""
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = _endpoint(user_input)
            await self.async_set_unique_id(_indi_unique_id(host, port))
            self._abort_if_unique_id_configured()
            errors = await _async_validate_endpoint(host, port)
            if not errors:
                return self.async_create_entry(
                    title=f"INDI server {host}:{port}",
                    data={
                        CONF_SOURCE_KIND: SOURCE_INDI,
                        CONF_HOST: host,
                        CONF_PORT: port,
                    },
                )
        return self.async_show_form(
            step_id="indi",
            data_schema=self.add_suggested_values_to_schema(INDI_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the address of an endpoint; its devices and entities stay."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = _endpoint(user_input)
            unique_id = _indi_unique_id(host, port)
            if unique_id != entry.unique_id:
                await self.async_set_unique_id(unique_id)
                self._abort_if_unique_id_configured()
            errors = await _async_validate_endpoint(host, port)
            if not errors:
                return self.async_update_reload_and_abort(
                    entry,
                    unique_id=unique_id,
                    title=f"INDI server {host}:{port}",
                    data_updates={CONF_HOST: host, CONF_PORT: port},
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                INDI_SCHEMA, user_input or dict(entry.data)
            ),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> InstrumentHubOptionsFlow:
        """Return the options flow."""
        return InstrumentHubOptionsFlow()


class InstrumentHubOptionsFlow(OptionsFlowWithReload):
    """BLOB handling: on/off, the folder under the config folder, a size cap and how many to keep."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show and check the options; the entry reloads when they change."""
        errors: dict[str, str] = {}
        if user_input is not None:
            folder = str(user_input[CONF_BLOB_FOLDER]).strip()
            if not is_safe_relative_folder(folder):
                errors[CONF_BLOB_FOLDER] = "invalid_folder"
            else:
                return self.async_create_entry(
                    data={
                        CONF_BLOBS_ENABLED: bool(user_input[CONF_BLOBS_ENABLED]),
                        CONF_BLOB_FOLDER: folder,
                        CONF_BLOB_MAX_MB: int(user_input[CONF_BLOB_MAX_MB]),
                        CONF_BLOB_KEEP: int(user_input[CONF_BLOB_KEEP]),
                    }
                )
        current = {
            CONF_BLOBS_ENABLED: DEFAULT_BLOBS_ENABLED,
            CONF_BLOB_FOLDER: DEFAULT_BLOB_FOLDER,
            CONF_BLOB_MAX_MB: DEFAULT_BLOB_MAX_MB,
            CONF_BLOB_KEEP: DEFAULT_BLOB_KEEP,
            **self.config_entry.options,
        }
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                OPTIONS_SCHEMA, user_input or current
            ),
            errors=errors,
        )
