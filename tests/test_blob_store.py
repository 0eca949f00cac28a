"""File names from devices are untrusted: sanitizing, suffixes, folder checks and retention."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from custom_components.instrument_hub.blob_store import (
    blob_path,
    is_safe_relative_folder,
    safe_component,
    safe_suffix,
    write_blob,
)

WHEN = datetime(2026, 11, 21, 5, 0, 1, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Thermostat", "Thermostat"),
        ("CCD Simulator", "CCD_Simulator"),
        ("../../x", "_.._x"),
        ("..", "_"),
        (".", "_"),
        ("", "_"),
        ("/etc/passwd", "_etc_passwd"),
        ("a\\b:c", "a_b_c"),
        ("x" * 200, "x" * 80),
    ],
)
def test_safe_component(name: str, expected: str) -> None:
    """Only letters, digits, '.', '_' and '-' survive, never as '.' or '..'."""
    assert safe_component(name) == expected


@pytest.mark.parametrize(
    ("blob_format", "expected"),
    [
        (".csv", ".csv"),
        (".fits", ".fits"),
        ("fits", ".fits"),
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


def test_blob_path_layout_and_containment(tmp_path: Path) -> None:
    """<base>/<entry>/<device>/<channel>/<UTC time><suffix>, always inside base."""
    path = blob_path(tmp_path, "entry", "../../x", "logsvector.templogs", ".csv", WHEN)
    assert (
        path
        == tmp_path
        / "entry"
        / "_.._x"
        / "logsvector.templogs"
        / "20261121T050001_250000Z.csv"
    )
    assert path.resolve().is_relative_to(tmp_path.resolve())


def test_blob_path_refuses_a_symlink_escape(tmp_path: Path) -> None:
    """A link planted inside the folder cannot redirect files outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "entry").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        blob_path(base, "entry", "dev", "chan", ".csv", WHEN)


def test_write_blob_is_atomic_and_keeps_the_newest(tmp_path: Path) -> None:
    """Each write lands whole; beyond ``keep`` the oldest files of the channel go."""
    folder = tmp_path / "dev" / "chan"
    for second in range(5):
        write_blob(
            folder / f"20261121T05000{second}_000000Z.csv", b"%d" % second, keep=3
        )
    assert sorted(p.name for p in folder.iterdir()) == [
        "20261121T050002_000000Z.csv",
        "20261121T050003_000000Z.csv",
        "20261121T050004_000000Z.csv",
    ]
    assert (folder / "20261121T050004_000000Z.csv").read_bytes() == b"4"
