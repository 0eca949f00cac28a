"""Diagnostics download: configuration (redacted), the hub's model, queue figures and source state."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .hub import InstrumentHubConfigEntry
from .kinds import kind_of

# The title usually names the endpoint's address; each kind adds what identifies its equipment.
BASE_REDACT: Final = frozenset({"title", "unique_id"})


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: InstrumentHubConfigEntry
) -> dict[str, Any]:
    """Return the diagnostics of one entry."""
    to_redact = BASE_REDACT | kind_of(entry).redact
    return {
        "entry": async_redact_data(
            {
                "title": entry.title,
                "unique_id": entry.unique_id,
                "data": dict(entry.data),
                "options": dict(entry.options),
            },
            to_redact,
        ),
        "hub": async_redact_data(entry.runtime_data.diagnostics(), to_redact),
    }
