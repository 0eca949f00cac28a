"""The file store: names from devices are untrusted, and no received file is ever overwritten."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
import errno
import hashlib
import os
from pathlib import Path
import time

from hypothesis import given, strategies as st
import pytest

from custom_components.instrument_hub import blob_store
from custom_components.instrument_hub.blob_store import (
    FileRefused,
    create_spool_file,
    discard_spooled,
    is_safe_relative_folder,
    safe_component,
    safe_suffix,
    save_file,
    save_spooled_file,
    spool_folder,
)

WHEN = datetime(2026, 11, 21, 5, 0, 1, 250000, tzinfo=UTC)
NAME = "20261121T050001_250000Z.csv"  # what WHEN and ".csv" give
PARTS = ("entry", "Thermostat", "logsvector.templogs")


def _save(
    base: Path,
    data: bytes = b"x",
    *,
    parts: tuple[str, ...] = PARTS,
    keep: int = 100,
    received: datetime = WHEN,
    file_format: str = ".csv",
) -> Path:
    return save_file(base, parts, file_format, data, keep=keep, received=received)


def _hashed(kept: str, original: str) -> str:
    """Return what safe_component makes of a name it had to change."""
    return kept + "~" + hashlib.sha256(original.encode()).hexdigest()[:8]


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry below root: file contents, link targets, or "dir"."""
    tree: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            tree[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            tree[key] = "dir"
        else:
            tree[key] = path.read_bytes()
    return tree


def _fail_links(monkeypatch: pytest.MonkeyPatch, code: int = errno.EPERM) -> None:
    """Make every os.link fail with ``code`` (EPERM: a file system without hard links)."""

    def fail(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", fail)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Thermostat", "Thermostat"),
        ("logsvector.templogs", "logsvector.templogs"),
        ("a_b-c.d", "a_b-c.d"),
        ("Телескоп", "Телескоп"),
        ("望远镜", "望远镜"),
        ("CCD Simulator", _hashed("CCD_Simulator", "CCD Simulator")),
        ("../../x", _hashed("_.._x", "../../x")),
        ("..", _hashed("", "..")),
        (".", _hashed("", ".")),
        ("", _hashed("", "")),
        (".hidden", _hashed("hidden", ".hidden")),
        ("/etc/passwd", _hashed("_etc_passwd", "/etc/passwd")),
        ("a\\b:c", _hashed("a_b_c", "a\\b:c")),
        ("a\x00b", _hashed("a_b", "a\x00b")),
        ("a~b", _hashed("a_b", "a~b")),
        ("x" * 64, "x" * 64),
        ("x" * 65, _hashed("x" * 55, "x" * 65)),
    ],
)
def test_safe_component(name: str, expected: str) -> None:
    """Letters (any script), digits and ._- are kept; a changed name gets a hash of the original."""
    assert safe_component(name) == expected
    assert len(expected) <= 64


def test_safe_component_caps_bytes_too() -> None:
    """64 four-byte letters would pass the length cap but not the file system's 255 bytes."""
    name = (
        "\U0001d400" * 64
    )  # MATHEMATICAL BOLD CAPITAL A: a letter of 4 bytes in UTF-8
    assert name.isalnum()
    result = safe_component(name)
    assert len(result.encode()) <= 200
    assert result.endswith(_hashed("", name))


_TRICKY = st.text(alphabet="ab_~./\\?: \x00-Жé\u0301\U0001d400", max_size=70)


@given(st.sets(st.one_of(st.text(max_size=80), _TRICKY), max_size=60))
def test_safe_component_is_injective_and_never_a_path(names: set[str]) -> None:
    """Distinct names give distinct components, none empty, '.', '..' or with a separator."""
    results = {safe_component(name) for name in names}
    assert len(results) == len(names)
    for result in results:
        assert result not in {"", ".", ".."}
        assert "/" not in result
        assert "\x00" not in result
        assert not result.startswith(".")
        assert len(result) <= 64
        assert len(result.encode()) <= 200


@pytest.mark.parametrize(
    ("blob_format", "expected"),
    [
        (".csv", ".csv"),
        (".fits", ".fits"),
        ("fits", ".fits"),
        (".csv.z", ".csv.z"),
        ("/../../.sh", ".sh"),
        ("", ".bin"),
        ("...", ".bin"),
    ],
)
def test_safe_suffix(blob_format: str, expected: str) -> None:
    """The device's format becomes a harmless suffix."""
    assert safe_suffix(blob_format) == expected


@pytest.mark.parametrize(
    ("folder", "ok"),
    [
        ("instrument_hub", True),
        ("indi/logs", True),
        ("../x", False),
        ("/abs", False),
        ("a/../../b", False),
        ("", False),
        ("C:/x", False),
    ],
)
def test_is_safe_relative_folder(folder: str, ok: bool) -> None:
    """Only folders inside the configuration folder are accepted."""
    assert is_safe_relative_folder(folder) is ok


# ------------------------------------------------------------------ saving


def test_layout_and_arrival_name(tmp_path: Path) -> None:
    """base/<entry>/<device>/<channel>/<UTC arrival time with microseconds><suffix>."""
    base = tmp_path / "config" / "instrument_hub"  # created with its parents
    path = _save(base, b"T=21.5\n")
    assert path == base / "entry" / "Thermostat" / "logsvector.templogs" / NAME
    assert path.read_bytes() == b"T=21.5\n"


def test_arrival_time_is_written_in_utc(tmp_path: Path) -> None:
    """An arrival time in another zone names the file by its UTC time; a naive one is a bug."""
    local = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert _save(tmp_path, received=local).name == NAME
    with pytest.raises(ValueError, match="aware"):
        _save(tmp_path, received=WHEN.replace(tzinfo=None))


def test_two_files_at_the_same_time_are_both_kept(tmp_path: Path) -> None:
    """Same arrival stamp: the next counter, whatever the suffix; nothing is overwritten."""
    first = _save(tmp_path, b"first")
    second = _save(tmp_path, b"second")
    third = _save(tmp_path, b"third", file_format=".fits")
    assert first.name == NAME
    assert second.name == "20261121T050001_250000Z-2.csv"
    assert third.name == "20261121T050001_250000Z-3.fits"
    assert first.read_bytes() == b"first"
    assert second.read_bytes() == b"second"
    assert third.read_bytes() == b"third"


@pytest.mark.parametrize("per_stamp", [1, 4, 50])
def test_retention_keeps_the_newest_by_arrival(tmp_path: Path, per_stamp: int) -> None:
    """50 saves with keep=3 leave the last 3 received, counters compared as numbers (-10 > -9)."""
    saved = [
        _save(
            tmp_path,
            b"%d" % index,
            keep=3,
            received=WHEN + timedelta(microseconds=index // per_stamp),
        )
        for index in range(50)
    ]
    folder = saved[0].parent
    assert sorted(folder.iterdir()) == sorted(saved[-3:])
    assert [path.read_bytes() for path in saved[-3:]] == [b"47", b"48", b"49"]


def test_a_file_is_never_pruned_by_its_own_save(tmp_path: Path) -> None:
    """Files named by later times (old layout, device clocks, a clock stepped back) don't evict it.

    The old store named files by the device's timestamp and deleted a file with an old one at once.
    """
    folder = tmp_path.joinpath(*PARTS)
    folder.mkdir(parents=True)
    later = [f"2030010{day}T000000_000000Z.csv" for day in range(1, 6)]
    for name in later:
        (folder / name).write_bytes(b"later")
    path = _save(tmp_path, b"now", keep=3)
    assert path.read_bytes() == b"now"
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, *later[-2:]])


def test_non_latin_devices_get_separate_folders(tmp_path: Path) -> None:
    """Телескоп and Камера no longer share one "_" folder, so one's retention spares the other."""
    telescope = [
        _save(tmp_path, b"t", parts=("entry", "Телескоп", "log"), keep=2)
        for _ in range(4)
    ]
    camera = [
        _save(tmp_path, b"c", parts=("entry", "Камера", "log"), keep=2)
        for _ in range(4)
    ]
    assert telescope[0].parent == tmp_path / "entry" / "Телескоп" / "log"
    assert camera[0].parent == tmp_path / "entry" / "Камера" / "log"
    assert sorted(telescope[0].parent.iterdir()) == telescope[-2:]
    assert sorted(camera[0].parent.iterdir()) == camera[-2:]


def test_similar_names_get_distinct_folders(tmp_path: Path) -> None:
    """Names that sanitize alike ("a/b", "a?b", "a_b") stay three folders."""
    paths = [
        _save(tmp_path, parts=("entry", name, "chan")) for name in ("a/b", "a?b", "a_b")
    ]
    folders = {path.parent.parent for path in paths}
    assert len(folders) == 3
    assert tmp_path / "entry" / "a_b" in folders
    assert sorted(p.name for p in (tmp_path / "entry").iterdir()) == sorted(
        ["a_b", _hashed("a_b", "a/b"), _hashed("a_b", "a?b")]
    )


@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "../../..", "/etc", "/", "a\x00b", "", "x/../../y"]
)
def test_no_component_escapes(tmp_path: Path, name: str) -> None:
    """Whatever the device calls itself, the file lands exactly three folders below base."""
    base = tmp_path / "base"
    path = save_file(base, (name, name, name), name, b"x", keep=1, received=WHEN)
    relative = path.relative_to(base).parts
    assert len(relative) == 4
    assert all(part not in {"", ".", ".."} for part in relative)
    assert path.read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["base"]
    assert len([p for p in base.rglob("*") if p.is_file()]) == 1


# ------------------------------------------------------------------ links planted by someone else


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_a_planted_folder_link_is_refused(tmp_path: Path, depth: int) -> None:
    """A link to a folder outside, at any level below base, is refused and never followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"mine")
    base = tmp_path / "base"
    parent = base.joinpath(*PARTS[:depth])
    parent.mkdir(parents=True)
    (parent / PARTS[depth]).symlink_to(outside, target_is_directory=True)
    with pytest.raises(FileRefused) as refused:
        _save(base, keep=1)
    assert refused.value.reason == f"a symbolic link is in the way: {PARTS[depth]}"
    assert _tree(outside) == {"keep.txt": b"mine"}


def test_a_file_in_the_way_of_a_folder_is_refused(tmp_path: Path) -> None:
    """A non-folder where a folder belongs is refused too (not an unexplained OSError)."""
    (tmp_path / "entry").write_bytes(b"not a folder")
    with pytest.raises(FileRefused, match="not a folder: entry"):
        _save(tmp_path)
    assert (tmp_path / "entry").read_bytes() == b"not a folder"


def test_the_base_folder_may_be_a_link(tmp_path: Path) -> None:
    """The configured folder itself is the user's choice and may point elsewhere."""
    real = tmp_path / "disk"
    real.mkdir()
    base = tmp_path / "config" / "instrument_hub"
    base.parent.mkdir()
    base.symlink_to(real, target_is_directory=True)
    path = _save(base, b"data")
    assert path == base.joinpath(*PARTS, NAME)
    assert real.joinpath(*PARTS, NAME).read_bytes() == b"data"


def _plant_during_scan(
    monkeypatch: pytest.MonkeyPatch, link: Path, target: Path
) -> None:
    """Plant ``link`` right after the store listed the folder: a race it cannot see coming."""
    scan = blob_store._scan

    def scan_then_plant(folder_fd: int, stamp: str) -> blob_store._Listing:
        listing = scan(folder_fd, stamp)
        if not link.is_symlink():
            link.symlink_to(target)
        return listing

    monkeypatch.setattr(blob_store, "_scan", scan_then_plant)


@pytest.mark.parametrize("dangling", [False, True])
@pytest.mark.parametrize("planted", ["before", "during"])
def test_a_link_planted_at_the_next_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dangling: bool, planted: str
) -> None:
    """The link stays, its target is untouched (or not created), the file takes the next counter.

    Planted before the save, the listing counts past it; planted during it, link() finds the name
    taken (it never follows a link there) and the next counter is tried.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    if not dangling:
        target.write_bytes(b"precious")
    base = tmp_path / "base"
    folder = base.joinpath(*PARTS)
    folder.mkdir(parents=True)
    if planted == "before":
        (folder / NAME).symlink_to(target)
    else:
        _plant_during_scan(monkeypatch, folder / NAME, target)
    path = _save(base, b"payload", keep=1)
    assert path.name == "20261121T050001_250000Z-2.csv"
    assert path.read_bytes() == b"payload"
    assert (folder / NAME).is_symlink()  # not ours: retention leaves it
    assert _tree(outside) == ({} if dangling else {"victim": b"precious"})


def test_a_link_planted_at_the_old_temporary_name_is_harmless(tmp_path: Path) -> None:
    """The old store wrote through "<final name>.part": a link planted there overwrote its target."""
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    folder = tmp_path.joinpath("base", *PARTS)
    folder.mkdir(parents=True)
    (folder / (NAME + ".part")).symlink_to(target)
    path = _save(tmp_path / "base", b"payload")
    assert path.read_bytes() == b"payload"
    assert target.read_bytes() == b"precious"
    assert (folder / (NAME + ".part")).is_symlink()


def test_a_link_planted_at_the_temporary_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Temporary files are created exclusively: a link at the drawn name is skipped, not followed."""
    planted = ".instrument_hub-" + "0" * 16 + ".part"
    names: Iterator[str] = iter([planted, ".instrument_hub-" + "1" * 16 + ".part"])
    monkeypatch.setattr(blob_store, "_temp_name", lambda: next(names))
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    folder = tmp_path.joinpath("base", *PARTS)
    folder.mkdir(parents=True)
    (folder / planted).symlink_to(target)
    path = _save(tmp_path / "base", b"payload")
    assert path.read_bytes() == b"payload"
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in folder.iterdir()) == sorted([planted, NAME])


# ------------------------------------------------------------------ what retention leaves alone


def test_retention_never_deletes_other_files(tmp_path: Path) -> None:
    """Only names the store makes are pruned; the user's files, folders and links stay."""
    folder = tmp_path.joinpath(*PARTS)
    folder.mkdir(parents=True)
    others = {
        "notes.txt": b"n",
        "20261121T050001Z.csv": b"no microseconds",
        "20261121T050001_250000Z-1.csv": b"counter 1 is never written",
        "20261121T050001_250000Z.csv~": b"editor backup",
        "20261399T250000_000000Z.csv": b"not a date",
        "IMG_0001.fits": b"i",
        ".part": b"old store",
    }
    for name, content in others.items():
        (folder / name).write_bytes(content)
    (folder / "20200101T000000_000000Z").mkdir()
    (folder / "20200101T000000_000000Z.csv").symlink_to(folder / "notes.txt")
    saved = [
        _save(tmp_path, keep=2, received=WHEN + timedelta(seconds=s)) for s in range(10)
    ]
    tree = _tree(folder)
    for name, content in others.items():
        assert tree.pop(name) == content
    assert tree.pop("20200101T000000_000000Z") == "dir"
    assert tree.pop("20200101T000000_000000Z.csv") == f"-> {folder / 'notes.txt'}"
    assert sorted(tree) == sorted(path.name for path in saved[-2:])


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    """A crashed save's temporary file goes after an hour; a fresh one (a save under way) stays."""
    folder = tmp_path.joinpath(*PARTS)
    folder.mkdir(parents=True)
    stale = folder / (".instrument_hub-" + "a" * 16 + ".part")
    fresh = folder / (".instrument_hub-" + "b" * 16 + ".part")
    look_alike = folder / ".instrument_hub-mine.part"
    for path in (stale, fresh, look_alike):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    for path in (stale, look_alike):
        os.utime(path, (two_hours_ago, two_hours_ago))
    _save(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [NAME, fresh.name, look_alike.name]
    )


# ------------------------------------------------------------------ failures


def test_an_unwritable_folder_raises_oserror(tmp_path: Path) -> None:
    """A real I/O failure stays an OSError (for the hub to report), and leaves nothing behind."""
    folder = tmp_path.joinpath(*PARTS)
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes")
        with pytest.raises(OSError) as raised:
            _save(tmp_path)
        assert not isinstance(raised.value, FileRefused)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_a_base_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """The configured folder being a file is refused with a reason the event can show; the file stays."""
    base = tmp_path / "instrument_hub"
    base.write_bytes(b"oops")
    with pytest.raises(FileRefused, match="not a folder: instrument_hub"):
        _save(base)
    assert base.read_bytes() == b"oops"


@pytest.mark.parametrize("links", [True, False])
def test_a_failed_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """A full disk raises OSError and leaves neither a temporary nor a final file behind."""
    writes: list[int] = []
    write_all = blob_store._write_all

    def disk_full_at_second_write(fd: int, data: bytes) -> None:
        # Without links the temporary is written first, the final name second.
        writes.append(fd)
        if len(writes) == (1 if links else 2):
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fd, data)

    _save(tmp_path, b"before")
    if not links:
        _fail_links(monkeypatch)
    monkeypatch.setattr(blob_store, "_write_all", disk_full_at_second_write)
    with pytest.raises(OSError, match="No space"):
        _save(tmp_path)
    assert [p.name for p in tmp_path.joinpath(*PARTS).iterdir()] == [NAME]


@pytest.mark.parametrize("link_errno", [errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK])
def test_without_hard_links_nothing_is_overwritten_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link_errno: int
) -> None:
    """Where link() is unsupported the final name is created exclusively, links not followed."""
    _fail_links(monkeypatch, link_errno)
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    base = tmp_path / "base"
    folder = base.joinpath(*PARTS)
    first = _save(base, b"0")
    _plant_during_scan(monkeypatch, folder / "20261121T050001_250000Z-2.csv", target)
    paths = [first, _save(base, b"1"), _save(base, b"2")]
    assert [path.name for path in paths] == [
        NAME,
        "20261121T050001_250000Z-3.csv",
        "20261121T050001_250000Z-4.csv",
    ]
    assert [path.read_bytes() for path in paths] == [b"0", b"1", b"2"]
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(path.name for path in paths), "20261121T050001_250000Z-2.csv"]
    )


def test_other_link_failures_are_oserrors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link() failure that is no "unsupported" (here EACCES) is raised, with no temporary left."""
    _fail_links(monkeypatch, errno.EACCES)
    with pytest.raises(PermissionError):
        _save(tmp_path)
    assert list(tmp_path.joinpath(*PARTS).iterdir()) == []


def test_a_failed_prune_does_not_fail_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The file is saved and its path returned; what could not be removed is logged."""
    old = _save(tmp_path, b"old")
    unlink = os.unlink

    def unlink_all_but_old(path: str, *, dir_fd: int | None = None) -> None:
        if path == old.name:
            raise PermissionError(errno.EACCES, "Permission denied")
        unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink_all_but_old)
    new = _save(tmp_path, b"new", keep=1, received=WHEN + timedelta(seconds=1))
    assert new.read_bytes() == b"new"
    assert old.read_bytes() == b"old"
    assert f"Could not remove {old.name}" in caplog.text
    assert sorted(p.name for p in new.parent.iterdir()) == sorted([old.name, new.name])


@pytest.mark.parametrize("links", [True, False])
def test_a_bounded_number_of_files_per_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """Past the last counter a save is refused (never a loop without end) and adds nothing."""
    if not links:
        _fail_links(monkeypatch)
    monkeypatch.setattr(blob_store, "_MAX_COUNTER", 2)
    first = _save(tmp_path)
    folder = first.parent
    # Counted past: the listing already asks for a counter beyond the last.
    (folder / "20261121T050001_250000Z-2.csv").write_bytes(b"someone's")
    with pytest.raises(FileRefused, match="too many files received at 20261121T050001"):
        _save(tmp_path)
    (folder / "20261121T050001_250000Z-2.csv").unlink()
    # Taken while saving: the last counter is tried, found taken, and the save refused.
    _plant_during_scan(monkeypatch, folder / "20261121T050001_250000Z-2.csv", first)
    with pytest.raises(FileRefused, match="too many files received at 20261121T050001"):
        _save(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [first.name, "20261121T050001_250000Z-2.csv"]
    )
    assert first.read_bytes() == b"x"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00b"])
def test_the_folder_walk_refuses_unsanitized_names(tmp_path: Path, name: str) -> None:
    """Defence in depth: the walk itself refuses what safe_component never returns."""
    with pytest.raises(FileRefused, match="not a plain name"):
        blob_store._open_folder(tmp_path / "base", ["entry", name])
    assert [p.name for p in (tmp_path / "base").iterdir()] == ["entry"]


# ------------------------------------------------------------------ spooled files (written as they arrive)


def _spooled(base: Path, data: bytes) -> Path:
    """Write ``data`` to a new spool file of the store at ``base``, as a source does."""
    fd, path = create_spool_file(spool_folder(base))
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def _save_spooled(
    base: Path, spooled: Path, *, keep: int = 100, received: datetime = WHEN
) -> Path:
    return save_spooled_file(base, PARTS, ".csv", spooled, keep=keep, received=received)


def test_a_spooled_file_is_moved_into_place(tmp_path: Path) -> None:
    """The same place and name as save_file gives; the spool folder is left empty, nothing copied."""
    spooled = _spooled(tmp_path, b"payload")
    assert spooled.parent == tmp_path / ".incoming"
    inode = spooled.stat().st_ino
    path = _save_spooled(tmp_path, spooled)
    assert path == tmp_path.joinpath(*PARTS, NAME)
    assert path.read_bytes() == b"payload"
    assert path.stat().st_ino == inode  # linked, not written again
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_spooled_files_get_exclusive_names_and_retention(tmp_path: Path) -> None:
    """Two at the same time are both kept; retention keeps the newest, as for saved bytes."""
    first = _save_spooled(tmp_path, _spooled(tmp_path, b"1"))
    second = _save_spooled(tmp_path, _spooled(tmp_path, b"2"))
    assert (first.name, second.name) == (NAME, "20261121T050001_250000Z-2.csv")
    later = _save_spooled(
        tmp_path, _spooled(tmp_path, b"3"), keep=1, received=WHEN + timedelta(seconds=1)
    )
    assert [p.name for p in tmp_path.joinpath(*PARTS).iterdir()] == [later.name]


@pytest.mark.parametrize("planted", ["before", "during"])
def test_a_link_planted_at_the_name_of_a_spooled_file_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """The link stays, its target is untouched, the spooled file takes the next counter."""
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    base = tmp_path / "base"
    folder = base.joinpath(*PARTS)
    folder.mkdir(parents=True)
    if planted == "before":
        (folder / NAME).symlink_to(target)
    else:
        _plant_during_scan(monkeypatch, folder / NAME, target)
    path = _save_spooled(base, _spooled(base, b"payload"))
    assert path.name == "20261121T050001_250000Z-2.csv"
    assert path.read_bytes() == b"payload"
    assert target.read_bytes() == b"precious"


def test_a_spool_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """A link planted where the spool folder goes is never followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / ".incoming").symlink_to(outside)
    with pytest.raises(FileRefused, match="symbolic link"):
        create_spool_file(spool_folder(base))
    assert list(outside.iterdir()) == []


def test_a_refused_or_failed_move_removes_the_spooled_file(tmp_path: Path) -> None:
    """Whatever happens, the spool file is gone afterwards (a refused save reports why)."""
    spooled = _spooled(tmp_path, b"payload")
    (tmp_path / "entry").write_bytes(b"a file where a folder goes")
    with pytest.raises(FileRefused, match="not a folder: entry"):
        _save_spooled(tmp_path, spooled)
    assert not spooled.exists()


def test_only_the_store_s_own_spool_files_are_taken(tmp_path: Path) -> None:
    """A path that is not a spool file of this store is refused and left alone."""
    elsewhere = tmp_path / "precious.csv"
    elsewhere.write_bytes(b"precious")
    with pytest.raises(FileRefused, match="not a spool file"):
        _save_spooled(tmp_path / "base", elsewhere)
    assert elsewhere.read_bytes() == b"precious"


def test_without_hard_links_a_spooled_file_is_copied_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where link() is unsupported the spooled file is copied into an exclusive name, then removed."""
    _fail_links(monkeypatch)
    monkeypatch.setattr(blob_store, "_COPY_PIECE_BYTES", 1000)
    data = os.urandom(10_500)
    first = _save(tmp_path, b"0")
    spooled = _spooled(tmp_path, data)
    path = _save_spooled(tmp_path, spooled)
    assert path.name == "20261121T050001_250000Z-2.csv"
    assert path.read_bytes() == data
    assert first.read_bytes() == b"0"
    assert not spooled.exists()


def test_stale_spool_files_are_removed(tmp_path: Path) -> None:
    """A spool file a crash left goes after an hour, when the next one is created; a fresh one stays."""
    stale = _spooled(tmp_path, b"old")
    fresh = _spooled(tmp_path, b"new")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    newest = _spooled(tmp_path, b"newest")
    assert sorted(p.name for p in (tmp_path / ".incoming").iterdir()) == sorted(
        [fresh.name, newest.name]
    )


def test_discarding_a_spooled_file_never_raises(tmp_path: Path) -> None:
    """Removing a spool file that is gone already, or in a folder that is gone, is quiet."""
    spooled = _spooled(tmp_path, b"x")
    discard_spooled(spooled)
    assert not spooled.exists()
    discard_spooled(spooled)
    discard_spooled(tmp_path / "missing" / spooled.name)
