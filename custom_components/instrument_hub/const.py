"""Constants of the Instrument Hub integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "instrument_hub"

CONF_SOURCE_KIND: Final = "source_kind"
"""Entry data key naming the entry's source kind (a key of the registry in ``kinds``)."""

# File options (behaviour, not connection data) of the kinds whose devices send files
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
LAST_MESSAGE_CHANNEL: Final = "_last_message"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"

BLOB_EVENT_RECEIVED: Final = "received"
