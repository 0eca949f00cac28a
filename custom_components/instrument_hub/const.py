"""Constants of the Instrument Hub integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "instrument_hub"

CONF_SOURCE_KIND: Final = "source_kind"
SOURCE_INDI: Final = "indi"

DEFAULT_INDI_PORT: Final = 7624

# Options (behaviour, not connection data)
CONF_BLOBS_ENABLED: Final = "blobs_enabled"
CONF_BLOB_FOLDER: Final = "blob_folder"
CONF_BLOB_MAX_MB: Final = "blob_max_mb"
CONF_BLOB_KEEP: Final = "blob_keep"
DEFAULT_BLOBS_ENABLED: Final = True
DEFAULT_BLOB_FOLDER: Final = "instrument_hub"
DEFAULT_BLOB_MAX_MB: Final = 50
DEFAULT_BLOB_KEEP: Final = 100

# Keys of the channels the hub adds itself (never clash with a source's keys: those never start with "_")
HUB_DEVICE_KEY: Final = ""
LINK_CHANNEL: Final = "_link"
MESSAGE_CHANNEL: Final = "_messages"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_DEVICE: Final = "device"
ATTR_PROPERTY: Final = "property"
ATTR_VALUES: Final = "values"
SERVICE_SET_PROPERTY: Final = "set_property"

BLOB_EVENT_RECEIVED: Final = "received"
