"""Diagnostics download: configuration (redacted), the hub's model, queue figures and source state."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant

from .hub import InstrumentHubConfigEntry

# The host says where the user's equipment lives; the title repeats it.
TO_REDACT = {CONF_HOST, "host", "title"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> dict[str, Any]:
    """Return the diagnostics of one entry."""
    return {
        "entry": async_redact_data(
            {
                "title": entry.title,
                "data": dict(entry.data),
                "options": dict(entry.options),
            },
            TO_REDACT,
        ),
        "hub": async_redact_data(entry.runtime_data.diagnostics(), TO_REDACT),
    }
