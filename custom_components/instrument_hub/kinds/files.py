"""The file options shared by the kinds whose devices send files (INDI BLOBs, Scrutiny exports)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector
import probatio

from ..blob_store import FileStoreSettings, is_safe_relative_folder
from ..const import (
    CONF_BLOB_FOLDER,
    CONF_BLOB_KEEP,
    CONF_BLOB_MAX_MB,
    CONF_BLOBS_ENABLED,
    DEFAULT_BLOB_FOLDER,
    DEFAULT_BLOB_KEEP,
    DEFAULT_BLOB_MAX_MB,
    DEFAULT_BLOBS_ENABLED,
)
from .base import FlowFormError, OptionsForm

MIB: Final = 1024 * 1024

FILE_OPTIONS_SCHEMA = probatio.Schema(
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
FILE_OPTION_DEFAULTS: Final[Mapping[str, Any]] = {
    CONF_BLOBS_ENABLED: DEFAULT_BLOBS_ENABLED,
    CONF_BLOB_FOLDER: DEFAULT_BLOB_FOLDER,
    CONF_BLOB_MAX_MB: DEFAULT_BLOB_MAX_MB,
    CONF_BLOB_KEEP: DEFAULT_BLOB_KEEP,
}


def validate_file_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the file options to store; the folder must stay inside the configuration folder."""
    folder = str(user_input[CONF_BLOB_FOLDER]).strip()
    if not is_safe_relative_folder(folder):
        raise FlowFormError({CONF_BLOB_FOLDER: "invalid_folder"})
    return {
        CONF_BLOBS_ENABLED: bool(user_input[CONF_BLOBS_ENABLED]),
        CONF_BLOB_FOLDER: folder,
        CONF_BLOB_MAX_MB: int(user_input[CONF_BLOB_MAX_MB]),
        CONF_BLOB_KEEP: int(user_input[CONF_BLOB_KEEP]),
    }


FILE_OPTIONS_FORM: Final = OptionsForm(
    step_id="files",
    schema=FILE_OPTIONS_SCHEMA,
    defaults=FILE_OPTION_DEFAULTS,
    validate=validate_file_options,
)


def max_file_bytes(entry: ConfigEntry) -> int:
    """Return the largest file the entry saves, in bytes."""
    return int(entry.options.get(CONF_BLOB_MAX_MB, DEFAULT_BLOB_MAX_MB)) * MIB


def file_store_settings(
    hass: HomeAssistant, entry: ConfigEntry
) -> FileStoreSettings | None:
    """Return where the entry saves files, or None when the user turned saving off."""
    options = entry.options
    if not options.get(CONF_BLOBS_ENABLED, DEFAULT_BLOBS_ENABLED):
        return None
    return FileStoreSettings(
        folder=Path(
            hass.config.path(options.get(CONF_BLOB_FOLDER, DEFAULT_BLOB_FOLDER))
        ),
        max_bytes=max_file_bytes(entry),
        keep=int(options.get(CONF_BLOB_KEEP, DEFAULT_BLOB_KEEP)),
    )
