"""Log excerpts: any value described in a bounded number of characters, sizes stated, never copied whole."""

from __future__ import annotations

from dataclasses import dataclass

from custom_components.instrument_hub.events import BlobData, Reading
from custom_components.instrument_hub.log_excerpt import EXCERPT_CHARS, excerpt


@dataclass
class _Wide:
    a: int = 1
    b: int = 2
    c: int = 3
    d: int = 4
    e: int = 5
    f: int = 6
    g: int = 7
    h: int = 8
    i: int = 9


def test_short_values_are_their_repr() -> None:
    """Small values read as themselves."""
    assert excerpt("abc") == "'abc'"
    assert excerpt(b"ab") == "b'ab'"
    assert excerpt(memoryview(b"ab")) == "b'ab'"
    assert excerpt(42) == "42"


def test_large_strings_and_bytes_are_cut_with_their_size() -> None:
    """A 12 MB value is cut, with its size, within the limit."""
    for value, unit in (("x" * 12_000_000, "chars"), (b"y" * 12_000_000, "bytes")):
        text = excerpt(value)
        assert len(text) <= EXCERPT_CHARS
        assert f"12000000 {unit}" in text
    assert "(1000 bytes)" in excerpt(memoryview(b"z" * 1000))


def test_containers_and_dataclasses_are_described_not_copied() -> None:
    """A reading carrying a big BLOB, a big dict or list: bounded, the shape still readable."""
    blob = Reading("CCD", "CCD1.CCD1", BlobData(b"\0" * 5_000_000, ".fits", 5_000_000))
    text = excerpt(blob)
    assert len(text) <= EXCERPT_CHARS
    assert text.startswith("Reading(device_key='CCD'")
    assert len(excerpt({str(n): "v" * 1000 for n in range(100)})) <= EXCERPT_CHARS
    assert excerpt([1, 2, 3]) == "[1, 2, 3]"
    assert excerpt({"a": 1}) == "{'a': 1}"
    assert excerpt(list(range(20))).endswith(", …]")
    assert excerpt(_Wide()).endswith(", …)")
    # Deeper than two levels, only the type is named.
    assert excerpt([[["deep"]]]) == "[[<list>]]"


def test_a_long_repr_is_cut() -> None:
    """Objects with a long repr of their own are cut too."""

    class Chatty:
        def __repr__(self) -> str:
            return "c" * 1000

    text = excerpt(Chatty(), limit=50)
    assert len(text) <= 50 and text.endswith("…")
