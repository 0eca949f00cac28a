"""Saving BLOBs pushed by devices as files under the Home Assistant config folder.

Pure functions, run in the executor by the hub: names come from the device (untrusted), so every path
component is sanitized and the final path is checked to stay inside the configured folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path, PurePosixPath
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_COMPONENT = 80
_MAX_SUFFIX = 16


def safe_component(name: str) -> str:
    """Return a file-name component made only of safe characters (never '.', '..' or empty)."""
    cleaned = _UNSAFE.sub("_", name).strip(".")[:_MAX_COMPONENT]
    return cleaned or "_"


def safe_suffix(blob_format: str) -> str:
    """Return the device's format (".csv", ".fits") as a safe file suffix, or ".bin"."""
    cleaned = re.sub(r"[^A-Za-z0-9.]", "", blob_format)[:_MAX_SUFFIX].strip(".")
    return f".{cleaned}" if cleaned else ".bin"


def is_safe_relative_folder(folder: str) -> bool:
    """Tell whether a user-given folder is relative and cannot climb out of the config folder."""
    if not folder.strip():
        return False
    path = PurePosixPath(folder.strip().replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and ":" not in folder


def blob_path(
    base: Path,
    entry_part: str,
    device_key: str,
    channel_key: str,
    blob_format: str,
    when: datetime,
) -> Path:
    """Return where one BLOB is saved: <base>/<entry>/<device>/<channel>/<UTC time><suffix>."""
    stamp = when.strftime("%Y%m%dT%H%M%S_%fZ")
    path = (
        base
        / safe_component(entry_part)
        / safe_component(device_key)
        / safe_component(channel_key)
        / f"{stamp}{safe_suffix(blob_format)}"
    )
    # Defence in depth: sanitizing already removed separators; refuse anything that still escapes.
    if not path.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"BLOB path escapes {base}")
    return path


def write_blob(path: Path, data: bytes, keep: int) -> None:
    """Write one BLOB (blocking: run in the executor) and keep only the newest ``keep`` files beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)  # readers never see a half-written file
    siblings = sorted(
        p for p in path.parent.iterdir() if p.is_file() and not p.name.endswith(".part")
    )
    for old in siblings[: max(len(siblings) - keep, 0)]:
        old.unlink(missing_ok=True)
