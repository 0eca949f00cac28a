"""Saving files pushed by devices (INDI BLOBs, exports) under the Home Assistant config folder.

Pure, blocking functions without Home Assistant imports; the hub runs them in the executor.
Everything a device sends is untrusted: its names become sanitized, distinct path components, the
folders below the configured base are walked with directory file descriptors that never follow a
symbolic link, and no file is ever overwritten: each received file is kept as its own file, named by
its arrival time, until retention removes the oldest of the store's own files.

Large files are not held in memory: a source writes them as they arrive into the spool folder
``<base>/.incoming/`` (``create_spool_file``), on the same file system as the store, and the store then
links the finished spool file into its final place (``save_spooled_file``) with the guarantees of
``save_file``. Spool files a crash left behind are removed after an hour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
import errno
import hashlib
import logging
import os
from pathlib import Path, PurePosixPath
import re
import secrets
import stat
import time

_LOGGER = logging.getLogger(__name__)

_MAX_COMPONENT = 64
# File systems limit a name to 255 bytes; 64 four-byte letters would exceed that.
_MAX_COMPONENT_BYTES = 200
_HASH_DIGITS = 8
_HASH_MARK = "~"
_SAFE_PUNCTUATION = frozenset("._-")
_MAX_SUFFIX = 16
_MAX_COUNTER = 10_000
_TEMP_ATTEMPTS = 100
_TEMP_PREFIX = ".instrument_hub-"
_TEMP_SUFFIX = ".part"
_TEMP_NAME = re.compile(r"\.instrument_hub-[0-9a-f]{16}\.part")
_STALE_TEMP_SECONDS = 3600
SPOOL_FOLDER_NAME = ".incoming"
"""Below the base folder; ``safe_component`` never makes a name with a leading dot, so no device's folder is it."""
_COPY_PIECE_BYTES = 1024 * 1024
_STAMP_FORMAT = "%Y%m%dT%H%M%S_%fZ"
# <arrival stamp>Z[-<counter from 2>]<suffix as safe_suffix makes it>
_STORED_NAME = re.compile(
    r"(?P<stamp>[0-9]{8}T[0-9]{6}_[0-9]{6}Z)(?:-(?P<counter>[2-9]|[1-9][0-9]+))?\.[A-Za-z0-9.]+"
)
# Errors of link() that mean "this file system has no hard links", not "you may not".
_LINK_UNSUPPORTED = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileRefused(Exception):
    """A file was not saved because its path is unsafe (``reason`` says why, briefly)."""

    def __init__(self, reason: str) -> None:
        """Keep the human-readable reason."""
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileStoreSettings:
    """Where and how received files are saved (from the entry's options)."""

    folder: Path  # absolute base folder, inside the Home Assistant config folder
    max_bytes: int
    keep: int


def safe_component(name: str) -> str:
    """Return ``name`` as one safe path component, distinct for distinct names.

    Unicode letters and digits and ``._-`` are kept, every other run of characters becomes ``_``,
    leading dots go and the length is capped. A name that had to change gets ``~`` and 8 hex digits
    of its SHA-256, so "a/b", "a?b" and "a_b" stay apart; ``~`` is never kept from a name, so a hashed
    result cannot equal a kept one. Never '', '.', '..' or anything with a separator.
    """
    pieces: list[str] = []
    in_run = False
    for char in name:
        if char.isalnum() or char in _SAFE_PUNCTUATION:
            pieces.append(char)
            in_run = False
        elif not in_run:
            pieces.append("_")
            in_run = True
    cleaned = "".join(pieces).lstrip(".")
    if (
        cleaned == name
        and cleaned
        and len(cleaned) <= _MAX_COMPONENT
        and len(cleaned.encode()) <= _MAX_COMPONENT_BYTES
    ):
        return cleaned
    # surrogatepass: a lone surrogate (not kept anyway) must not make hashing fail.
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    tail = _HASH_MARK + digest[:_HASH_DIGITS]
    head = cleaned[: _MAX_COMPONENT - len(tail)]
    while len(head.encode()) > _MAX_COMPONENT_BYTES - len(tail):
        head = head[:-1]
    return head + tail


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


def save_file(
    base: Path,
    parts: Sequence[str],
    file_format: str,
    data: bytes,
    *,
    keep: int,
    received: datetime,
) -> Path:
    """Save one file under base/<safe parts...>/<arrival stamp><suffix>; return its path. Blocking.

    The name is the UTC arrival time with microseconds (``20261121T050001_250000Z.fits``); when
    files with that stamp exist it gets ``-2``, ``-3``, ..., one more than the highest counter the
    folder has for the stamp, so that (stamp, counter) orders the files by arrival. Nothing is ever
    overwritten. Only the newest ``keep`` (at least 1) of the store's own files in that folder stay,
    the new one always; files whose names the store does not make are never touched. Raises
    FileRefused when a symbolic link or a non-folder is in the way below ``base``, OSError when the
    file system fails.
    """
    return _store(
        base,
        parts,
        file_format,
        lambda folder_fd, stamp, suffix, counter: _write_new_file(
            folder_fd, stamp, suffix, data, counter
        ),
        keep=keep,
        received=received,
    )


type _Writer = Callable[[int, str, str, int], str]
"""(folder fd, stamp, suffix, first free counter) -> the name the file got in the folder."""


def _store(
    base: Path,
    parts: Sequence[str],
    file_format: str,
    write: _Writer,
    *,
    keep: int,
    received: datetime,
) -> Path:
    """Name, place and prune as ``save_file`` says; ``write`` puts the file under its new name."""
    if received.tzinfo is None or received.utcoffset() is None:
        raise ValueError("received must be an aware datetime")
    stamp = received.astimezone(UTC).strftime(_STAMP_FORMAT)
    suffix = safe_suffix(file_format)
    names = [safe_component(part) for part in parts]
    folder_fd = _open_folder(base, names)
    try:
        listing = _scan(folder_fd, stamp)
        name = write(folder_fd, stamp, suffix, listing.next_counter)
        _prune(folder_fd, listing, keep=keep)
    finally:
        os.close(folder_fd)
    return base.joinpath(*names, name)


def spool_folder(base: Path) -> Path:
    """Return the folder a source spools files of the store at ``base`` into (created when first used)."""
    return base / SPOOL_FOLDER_NAME


def create_spool_file(folder: Path) -> tuple[int, Path]:
    """Create a new spool file in ``folder`` (from ``spool_folder``) for writing; return its fd and path. Blocking.

    The folder is created when missing and never followed if it is a symbolic link; the file is created
    exclusively under a random name. Spool files older than an hour (left by a crash) are removed.
    """
    folder_fd = _open_folder(folder.parent, [folder.name])
    try:
        _remove_stale_temps(folder_fd)
        fd, name = _create_temp(folder_fd)
    finally:
        os.close(folder_fd)
    return fd, folder / name


def discard_spooled(path: Path) -> None:
    """Remove a spool file that will not be saved (missing already is fine). Blocking; never raises."""
    try:
        folder_fd = os.open(path.parent, _DIR_FLAGS | os.O_NOFOLLOW)
    except OSError as err:
        _LOGGER.warning("Could not remove %s: %s", path, err)
        return
    try:
        _unlink_quietly(folder_fd, path.name)
    finally:
        os.close(folder_fd)


def save_spooled_file(
    base: Path,
    parts: Sequence[str],
    file_format: str,
    spooled: Path,
    *,
    keep: int,
    received: datetime,
) -> Path:
    """Move a finished spool file into its place like ``save_file`` saves bytes; return its path. Blocking.

    Same names, the same exclusive final name (nothing is ever overwritten), links never followed below
    ``base``, the same retention and errors (FileRefused, OSError). The spool file must be one
    ``create_spool_file`` made for this store; it is hard-linked into place (the same file system), or
    copied where the file system has no hard links, and is gone afterwards whatever happened.
    """
    if spooled.parent != spool_folder(base) or not _TEMP_NAME.fullmatch(spooled.name):
        raise FileRefused("not a spool file of this store")  # and it is left alone
    try:
        return _move_spooled(
            base, parts, file_format, spooled, keep=keep, received=received
        )
    except BaseException:
        discard_spooled(spooled)
        raise


def _move_spooled(
    base: Path,
    parts: Sequence[str],
    file_format: str,
    spooled: Path,
    *,
    keep: int,
    received: datetime,
) -> Path:
    spool_fd = _open_folder(base, [SPOOL_FOLDER_NAME])
    try:
        return _store(
            base,
            parts,
            file_format,
            lambda folder_fd, stamp, suffix, counter: _link_new_file(
                spool_fd, spooled.name, folder_fd, stamp, suffix, counter
            ),
            keep=keep,
            received=received,
        )
    finally:
        _unlink_quietly(spool_fd, spooled.name)
        os.close(spool_fd)


def _link_new_file(
    spool_fd: int,
    spool_name: str,
    folder_fd: int,
    stamp: str,
    suffix: str,
    first_counter: int,
) -> str:
    """Give the spool file a new name in the folder, never replacing anything; return the name."""
    return _link_first_free(
        spool_fd,
        spool_name,
        folder_fd,
        stamp,
        suffix,
        first_counter,
        lambda counter: _copy_without_links(
            spool_fd, spool_name, folder_fd, stamp, suffix, counter
        ),
    )


def _link_first_free(
    source_fd: int,
    source_name: str,
    folder_fd: int,
    stamp: str,
    suffix: str,
    first_counter: int,
    without_links: Callable[[int], str],
) -> str:
    """Hard-link a file under the folder's first free name; return it.

    Where the file system has no hard links, ``without_links`` is given the counter reached and
    stores the file its own way. Raises FileRefused when every counter is taken.
    """
    for counter in range(first_counter, _MAX_COUNTER + 1):
        name = _stored_name(stamp, counter, suffix)
        try:
            # link() fails when the name exists, whatever it is (a planted link included).
            os.link(
                source_name,
                name,
                src_dir_fd=source_fd,
                dst_dir_fd=folder_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            continue
        except OSError as err:
            if err.errno not in _LINK_UNSUPPORTED:
                raise
            return without_links(counter)
        return name
    raise FileRefused(f"too many files received at {stamp}")


def _copy_without_links(
    spool_fd: int,
    spool_name: str,
    folder_fd: int,
    stamp: str,
    suffix: str,
    first_counter: int,
) -> str:
    """Where hard links are unsupported: copy the spool file into an exclusively created name, in pieces."""
    source = os.open(
        spool_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=spool_fd
    )
    try:
        for counter in range(first_counter, _MAX_COUNTER + 1):
            name = _stored_name(stamp, counter, suffix)
            try:
                fd = os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=folder_fd)
            except FileExistsError:
                continue
            written = False
            try:
                while piece := os.read(source, _COPY_PIECE_BYTES):
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
                written = True
            finally:
                os.close(fd)
                if not written:
                    _unlink_quietly(folder_fd, name)
            return name
    finally:
        os.close(source)
    raise FileRefused(f"too many files received at {stamp}")


def _remove_stale_temps(folder_fd: int) -> None:
    """Remove temporary files older than an hour (what a crashed save or spool left)."""
    stale_before = time.time() - _STALE_TEMP_SECONDS
    with os.scandir(folder_fd) as entries:
        stale = [
            entry.name
            for entry in entries
            if _TEMP_NAME.fullmatch(entry.name) and _older_file(entry, stale_before)
        ]
    for name in stale:
        _unlink_quietly(folder_fd, name)


def _open_folder(base: Path, names: Sequence[str]) -> int:
    """Create and open base/<names...>, never following a link below base; return its fd."""
    # The base is the user's choice (it may be a symbolic link); what lies below it is not.
    try:
        base.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise FileRefused(f"not a folder: {base.name}") from err
    fd = os.open(base, _DIR_FLAGS)
    for name in names:
        try:
            if name in {"", ".", ".."} or "/" in name or "\0" in name:
                # Defence in depth: safe_component never returns these.
                raise FileRefused(f"not a plain name: {name!r}")
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=fd)
            child = _open_child_folder(fd, name)
        finally:
            os.close(fd)
        fd = child
    return fd


def _open_child_folder(parent_fd: int, name: str) -> int:
    """Open the folder ``name`` in ``parent_fd``; a link or a non-folder there is refused."""
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as err:
        # O_NOFOLLOW reports a link and a file alike (ENOTDIR or ELOOP): look to tell which.
        try:
            mode = os.lstat(name, dir_fd=parent_fd).st_mode
        except OSError:
            raise err from None
        if stat.S_ISLNK(mode):
            raise FileRefused(f"a symbolic link is in the way: {name}") from err
        if not stat.S_ISDIR(mode):
            raise FileRefused(f"not a folder: {name}") from err
        raise


def _stored_name(stamp: str, counter: int, suffix: str) -> str:
    return f"{stamp}{suffix}" if counter == 1 else f"{stamp}-{counter}{suffix}"


def _temp_name() -> str:
    return f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    # Durable before it gets its final name: a crash must not leave an empty "saved" file.
    os.fsync(fd)


def _write_new_file(
    folder_fd: int, stamp: str, suffix: str, data: bytes, first_counter: int
) -> str:
    """Write ``data`` to a new file of the folder, never replacing anything; return its name."""
    fd, temp_name = _create_temp(folder_fd)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return _link_first_free(
            folder_fd,
            temp_name,
            folder_fd,
            stamp,
            suffix,
            first_counter,
            lambda counter: _write_without_links(
                folder_fd, stamp, suffix, data, counter
            ),
        )
    finally:
        _unlink_quietly(folder_fd, temp_name)


def _create_temp(folder_fd: int) -> tuple[int, str]:
    """Create a new temporary file exclusively (a random name, links not followed)."""
    for _ in range(_TEMP_ATTEMPTS):
        name = _temp_name()
        try:
            return os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=folder_fd), name
        except FileExistsError:
            continue
    raise FileRefused("no free temporary name")


def _write_without_links(
    folder_fd: int, stamp: str, suffix: str, data: bytes, first_counter: int
) -> str:
    """Save where hard links are unsupported: create the final name exclusively and write into it.

    Readers may see the file while it is written; it is still never put over an existing one.
    """
    for counter in range(first_counter, _MAX_COUNTER + 1):
        name = _stored_name(stamp, counter, suffix)
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, 0o644, dir_fd=folder_fd)
        except FileExistsError:
            continue
        written = False
        try:
            _write_all(fd, data)
            written = True
        finally:
            os.close(fd)
            if not written:
                # This call created the name: a half-written file is not worth keeping.
                _unlink_quietly(folder_fd, name)
        return name
    raise FileRefused(f"too many files received at {stamp}")


def _unlink_quietly(folder_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder_fd)
    except FileNotFoundError:
        pass
    except OSError as err:
        _LOGGER.warning("Could not remove %s: %s", name, err)


@dataclass(slots=True)
class _Listing:
    """What a folder held before a save."""

    # Regular files with the store's names, with their (stamp, counter).
    stored: list[tuple[tuple[str, int], str]]
    # Temporary files of saves that crashed.
    stale: list[str]
    # The first counter to try for the new file's stamp.
    next_counter: int


def _scan(folder_fd: int, stamp: str) -> _Listing:
    """List the store's own files, the stale temporary files and the counter for ``stamp``."""
    listing = _Listing(stored=[], stale=[], next_counter=1)
    stale_before = time.time() - _STALE_TEMP_SECONDS
    with os.scandir(folder_fd) as entries:
        for entry in entries:
            if key := _sort_key(entry.name):
                # Any entry takes its name (even one that is not ours): count past it.
                if key[0] == stamp:
                    listing.next_counter = max(listing.next_counter, key[1] + 1)
                # Only regular files the store made itself are pruned; links and folders stay.
                if entry.is_file(follow_symlinks=False):
                    listing.stored.append((key, entry.name))
            elif _TEMP_NAME.fullmatch(entry.name) and _older_file(entry, stale_before):
                listing.stale.append(entry.name)
    return listing


def _older_file(entry: os.DirEntry[str], before: float) -> bool:
    """Tell whether ``entry`` is a regular file last modified before ``before``."""
    try:
        return (
            entry.is_file(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_mtime < before
        )
    except FileNotFoundError:  # removed meanwhile, by a save running beside this one
        return False


def _prune(folder_fd: int, listing: _Listing, *, keep: int) -> None:
    """Keep the newest ``keep`` files by arrival, the one just saved included; drop stale temps.

    Failures are logged, not raised: the file itself has been saved.
    """
    stored = sorted(listing.stored, reverse=True)
    # The file just saved (not listed) always stays, even if the clock went back and it is older.
    for _, name in stored[max(keep, 1) - 1 :]:
        _unlink_quietly(folder_fd, name)
    for name in listing.stale:
        _unlink_quietly(folder_fd, name)


def _sort_key(name: str) -> tuple[str, int] | None:
    """Return (arrival stamp, counter) of a name the store made, or None for any other name."""
    match = _STORED_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        datetime.strptime(match["stamp"], _STAMP_FORMAT)  # validates only
    except ValueError:
        return None
    return match["stamp"], int(match["counter"] or 1)
