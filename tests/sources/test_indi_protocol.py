"""Tests of the INDI wire protocol: numbers, the incremental stream parser, element parsing, builders."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
import random
import tracemalloc

from defusedxml.ElementTree import fromstring
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.instrument_hub.sources.indi.protocol import (
    DefMember,
    DefVector,
    DelProperty,
    IndiElement,
    ProtocolError,
    ServerMessage,
    SetMember,
    SetVector,
    VectorKind,
    display_precision,
    enable_blob,
    format_number,
    get_properties,
    member_text,
    new_vector,
    parse_number,
    parse_timestamp,
)
from custom_components.instrument_hub.sources.indi.stream import (
    MAX_TOKEN_BYTES,
    IndiStreamParser,
    parse_element,
)
from tests.fake_indi import CAPTURES, server_lines

THERMO = server_lines("capture_thermo.txt")
EXTRAS = server_lines("capture_extras.txt")
ALL_SERVER_LINES = THERMO + EXTRAS


class Collected:
    """A stream parser with what it delivered and what it dropped."""

    def __init__(self, **kwargs: object) -> None:
        """Create the parser (keyword arguments go to it)."""
        self.elements: list[IndiElement] = []
        self.drops: list[tuple[str, bytes]] = []
        self.parser = IndiStreamParser(
            self.elements.append,
            lambda reason, excerpt: self.drops.append((reason, excerpt)),
            **kwargs,  # type: ignore[arg-type]
        )

    def feed(
        self, data: bytes, chunk_sizes: list[int] | None = None
    ) -> list[IndiElement]:
        """Feed ``data`` in chunks of the given sizes (cycled); return everything delivered so far."""
        sizes = chunk_sizes or [len(data) or 1]
        pos = 0
        index = 0
        while pos < len(data):
            size = sizes[index % len(sizes)]
            self.parser.feed(data[pos : pos + size])
            pos += size
            index += 1
        return self.elements


def parsed(lines: list[bytes]) -> list[IndiElement]:
    """Return what the elements parse to one by one."""
    return [element for line in lines if (element := parse_element(line))]


# --------------------------------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18:30:00", 18.5),
        ("-10 30.3", -10.505),
        ("12;30", 12.5),
        ("-10:30:18", -10.505),
        ("-10.505", -10.505),
        ("3.7625", 3.7625),
        ("  19.60 ", 19.6),
        ("12:", 12.0),
        ("-0:30", -0.5),
        ("1e-05", 1e-05),
        ("", None),
        ("   ", None),
        ("abc", None),
        ("12:xx", None),
        ("1:2:3:4", None),
        ("nan", None),
        ("inf", None),
        (None, None),
    ],
)
def test_parse_number(text: str | None, expected: float | None) -> None:
    """Decimal and sexagesimal numbers parse; empty or invalid text is None, never 0.0."""
    result = parse_number(text)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("%3.1f", 1),
        ("%.2f", 2),
        ("%.2e", 2),
        ("%f", 6),
        ("%5.2lf", 2),
        ("%d", 0),
        ("%g", None),
        ("%.3g", None),
        ("%010.6m", 4),
        ("%9.6m", 4),
        ("%7.3m", 2),
        ("%8.5m", 3),
        ("%012.8m", 5),
        ("%12.9m", 6),
        ("%m", None),
        ("", None),
        (None, None),
        ("no format", None),
    ],
)
def test_display_precision(fmt: str | None, expected: int | None) -> None:
    """Decimals come from f/e formats; %g says nothing; %<w>.<f>m gives the decimals resolving what it shows."""
    assert display_precision(fmt) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (18.5, "18.5"),
        (19.25, "19.25"),
        (20.0, "20"),
        (100.0, "100"),
        (-3.75, "-3.75"),
        (1e-05, "0.00001"),
        (1e20, "100000000000000000000"),
        (-0.0, "0"),
        (5, "5"),
    ],
)
def test_format_number(value: float, expected: str) -> None:
    """Numbers go out as plain decimals, not via the device's display format."""
    assert format_number(value) == expected


def test_format_number_round_trips() -> None:
    """Whatever the value, the text parses back to exactly the same float."""
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(500)] + [
        rng.random() * 1e-9 for _ in range(100)
    ]
    for value in values:
        text = format_number(value)
        assert "e" not in text.lower()
        assert float(text) == value


def test_format_number_rejects_non_finite() -> None:
    """nan/inf have no INDI spelling."""
    with pytest.raises(ValueError):
        format_number(float("nan"))


# --------------------------------------------------------------------------------------------------
# The stream parser


def test_byte_by_byte_returns_every_captured_element() -> None:
    """Fed one byte at a time, the captured stream yields exactly the captured elements."""
    lines = [line.encode() for line in ALL_SERVER_LINES]
    stream = Collected()
    assert stream.feed(b"".join(lines), [1]) == parsed(lines)
    assert len(stream.elements) == len(lines)
    assert (stream.parser.malformed, stream.parser.skipped_bytes) == (0, 0)


@pytest.mark.parametrize("seed", range(8))
def test_random_chunks(seed: int) -> None:
    """Random chunk sizes (and newlines between elements) never change the result."""
    rng = random.Random(seed)
    lines = [line.encode() for line in ALL_SERVER_LINES]
    stream = Collected()
    assert stream.feed(b"\n".join(lines), [rng.randint(1, 97) for _ in range(50)]) == (
        parsed(lines)
    )


BAD_INPUT = [
    b'<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temperature">1</oneText></setNumberVector>',
    b'<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temp',
    b"<<<<",
    b"</stray>",
    b'<?xml version="1.0"?>',
    b'<!DOCTYPE m [<!ENTITY e "boom">]>',
    b'<message message="&e;"/>',
    b"<x/><y><z/></y>",
    b"garbage text & more",
    b'<message device="Thermostat" message="caf\xe9 in Latin-1, not UTF-8"/>',
    b"\xff\xfe<\x00m\x00",
]
GOOD_INPUT = [line.encode() for line in THERMO[4:8]]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(st.sampled_from(GOOD_INPUT), st.sampled_from([b"", *BAD_INPUT])),
        min_size=1,
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=20),
)
def test_any_chunking_gives_the_same_events(
    pieces: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    """Good elements mixed with bad input: the same elements come out however the bytes are cut."""
    stream = b"".join(good + bad for good, bad in pieces)
    whole = Collected()
    whole.feed(stream)
    cut = Collected()
    cut.feed(stream, cuts)
    assert cut.elements == whole.elements
    assert whole.elements == parsed([good for good, _ in pieces])  # no good one lost


def test_wrong_encoding_loses_only_its_element() -> None:
    """Bytes that are not UTF-8 (a Latin-1 text, UTF-16) are reported; the next element arrives."""
    latin = '<message device="d" message="café"/>'.encode("latin-1")
    good = THERMO[4].encode()
    stream = Collected()
    assert stream.feed(latin + good + "<message/>".encode("utf-16") + good) == parsed(
        [good, good]
    )
    assert len(stream.drops) == 2
    assert stream.drops[0][1].startswith(b'<message device="d"')


def test_greater_than_inside_quoted_attribute() -> None:
    """A '>' or '/>' inside a quoted value does not end the start tag."""
    first = b"<message device=\"a>b\" message='x/>y' />"
    second = b'<setTextVector device="d" name="n" message="1 > 0"><oneText name="t">v</oneText></setTextVector>'
    stream = Collected()
    assert stream.feed(first + second, [3]) == [
        ServerMessage(device="a>b", timestamp=None, message="x/>y"),
        parse_element(second),
    ]


def test_garbage_between_elements_is_skipped() -> None:
    """Whitespace, text, declarations, comments and stray close tags between elements cost nothing good."""
    good = [line.encode() for line in THERMO[:3]]
    garbage = [
        b'<?xml version="1.0"?>\n',
        b"garbage text ",
        b"</stray>",
        b"<!-- note -->",
        b"\r\n  ",
    ]
    data = b"".join(g + e for g, e in zip(garbage, [*good, b"", b""], strict=True))
    stream = Collected()
    assert stream.feed(data, [5]) == parsed(good)
    # The declaration and the stray close tag are not XML a stream may have: reported (logged once).
    assert [reason for reason, _ in stream.drops] == [
        "malformed XML: XML or text declaration not at start of entity",
        "malformed XML: mismatched tag",
    ]


def test_truncated_element_followed_by_good_one() -> None:
    """A known start tag before the close tag proves truncation: drop, count, keep the next one."""
    truncated = b'<setNumberVector device="Thermostat" name="temperaturevector"><oneNumber name="temperature">1'
    good = THERMO[4].encode()
    stream = Collected()
    assert stream.feed(truncated + good + good, [7]) == parsed([good, good])
    assert stream.parser.truncated == 1
    assert stream.drops == [("truncated element", truncated[:80])]


def test_truncated_inside_start_tag() -> None:
    """A '<' inside a start tag (even inside quotes) means the tag was cut off."""
    truncated = b'<defNumberVector device="Ther'
    good = THERMO[0].encode()
    for chunks in ([1], [len(truncated) + 40]):
        stream = Collected()
        assert stream.feed(truncated + good, chunks) == parsed([good])
        assert stream.drops[0][1].startswith(truncated)
    # Counted as truncated when the next element's tag is at hand when the error is noticed.
    assert stream.parser.truncated == 1


def test_unknown_top_level_elements_are_ignored_and_swallow_nothing() -> None:
    """Unknown elements are skipped (not reported) and never swallow the next one."""
    unknown = b'<newExtension a="1"><inner/>text</newExtension>'
    good = THERMO[0].encode()
    stream = Collected()
    assert stream.feed(unknown + good, [2]) == parsed([good])
    assert stream.drops == []
    assert parse_element(unknown) is None


def test_close_tag_with_whitespace_and_self_closing() -> None:
    """``</name >`` closes; ``<name .../>`` is complete by itself, even split at the '/'."""
    spaced = b'<delProperty device="d" name="n"></delProperty \n>'
    self_closing = b'<message device="d" message="hi"/>'
    stream = Collected()
    data = spaced + self_closing
    assert stream.feed(data, [len(data) - 2, 1, 1]) == [
        DelProperty(device="d", name="n", timestamp=None, message=None),
        ServerMessage(device="d", timestamp=None, message="hi"),
    ]


def test_inner_close_tags_of_other_names_do_not_end_the_element() -> None:
    """Members' close tags do not end their vector."""
    element = b'<setSwitchVector device="d" name="n"><oneSwitch name="a">On</oneSwitch></setSwitchVector>'
    assert Collected().feed(element) == parsed([element])


def test_oversized_element_is_dropped_while_it_streams_in() -> None:
    """An element larger than the cap is dropped (counted), without being kept, and the next one arrives."""
    big = b'<setTextVector device="d" name="t"><oneText name="x">' + b"A" * 5000
    big += b"</oneText></setTextVector>"
    good = THERMO[4].encode()
    stream = Collected(max_element_bytes=1000)
    assert stream.feed(big + good, [300]) == parsed([good])
    assert stream.parser.oversized == 1
    assert [reason for reason, _ in stream.drops] == ["oversized element"]


def test_oversized_element_arriving_at_once() -> None:
    """The cap also holds when the whole oversized element is in one chunk."""
    big = b'<message message="' + b"x" * 2000 + b'"/>'
    good = b'<message message="ok"/>'
    stream = Collected(max_element_bytes=1000)
    assert stream.feed(big + good) == parsed([good])
    assert stream.parser.oversized == 1


def test_an_endless_element_or_tag_costs_no_memory() -> None:
    """100 MB of text in one member, or an attribute that never ends: dropped, memory stays flat."""
    good = THERMO[4].encode()
    text = b"A" * 65536
    for start in (
        b'<setTextVector device="d" name="t"><oneText name="x">',
        b'<message message="',
    ):
        stream = Collected(max_element_bytes=1024 * 1024)
        tracemalloc.start()
        try:
            stream.parser.feed(start)
            for _ in range(1600):
                stream.parser.feed(text)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        stream.parser.feed(b'"/>' + good)
        assert stream.elements == parsed([good])
        assert stream.parser.oversized == 1
        assert peak < 4 * max(MAX_TOKEN_BYTES, 1024 * 1024)


def test_eight_megabytes_of_less_than_signs() -> None:
    """Garbage that is all tag openings: one report, every byte passed over once, the next element arrives."""
    good = THERMO[4].encode()
    stream = Collected()
    for _ in range(128):
        stream.parser.feed(b"<" * 65536)
    stream.parser.feed(good)
    assert stream.elements == parsed([good])
    assert len(stream.drops) == 1
    assert stream.parser.skipped_bytes >= 128 * 65536 - 2


def test_a_million_tiny_unknown_elements() -> None:
    """Unknown elements are ignored as they come; what follows is delivered."""
    good = THERMO[4].encode()
    stream = Collected()
    chunk = b"<x/>" * 16384
    for _ in range(62):
        stream.parser.feed(chunk)
    stream.parser.feed(good)
    assert stream.elements == parsed([good])
    assert stream.drops == []


def test_many_bad_elements_each_lose_only_themselves() -> None:
    """Each bad element is dropped alone; the good ones between them all arrive, in order."""
    bad = b'<setNumberVector device="d" name="n"><oneNumber name="a">1</oneText></setNumberVector>'
    goods = [
        f'<setNumberVector device="d" name="n"><oneNumber name="a">{i}</oneNumber></setNumberVector>'.encode()
        for i in range(200)
    ]
    stream = Collected()
    stream.feed(b"".join(bad + good for good in goods), [4096])
    assert stream.elements == parsed(goods)
    assert len(stream.drops) == 200


def test_a_nested_top_level_tag_truncates_even_an_unknown_element() -> None:
    """Top-level elements never nest: one inside any element means that element was cut off."""
    good = THERMO[4].encode()
    stream = Collected()
    assert stream.feed(b"<unknown><inner>" + good + good) == parsed([good, good])
    assert stream.parser.truncated == 1


def test_blob_content_streams_to_its_receiver() -> None:
    """A BLOB's base64 goes to the receiver the consumer opens, piece by piece, never into the element."""

    class Receiver:
        def __init__(self) -> None:
            self.pieces: list[str] = []
            self.ended = False
            self.aborted = False

        def write(self, text: str) -> None:
            self.pieces.append(text)

        def end(self) -> None:
            self.ended = True

        def abort(self) -> None:
            self.aborted = True

    opened: list[tuple[str, str, str, str, int | None]] = []
    receivers: list[Receiver] = []

    def open_blob(
        device: str, vector: str, member: str, fmt: str, size: int | None
    ) -> Receiver:
        opened.append((device, vector, member, fmt, size))
        receivers.append(Receiver())
        return receivers[-1]

    payload = base64.b64encode(random.Random(1).randbytes(3_750_000))
    element = (
        b'<setBLOBVector device="Cam" name="CCD1"><oneBLOB name="CCD1" size="3750000" format=".fits">'
        + payload
        + b"</oneBLOB></setBLOBVector>"
    )
    stream = Collected(open_blob=open_blob, max_element_bytes=100_000)
    assert len(stream.feed(element + THERMO[4].encode(), [65536])) == 2
    blob = stream.elements[0]
    assert isinstance(blob, SetVector)
    assert opened == [("Cam", "CCD1", "CCD1", ".fits", 3750000)]
    assert blob.members[0].value == ""
    assert blob.members[0].blob is receivers[0]
    assert "".join(receivers[0].pieces).encode() == payload
    assert max(len(piece) for piece in receivers[0].pieces) <= 65536
    assert receivers[0].ended and not receivers[0].aborted
    # A BLOB whose element turns out bad is aborted.
    stream.feed(element[: len(element) // 2] + THERMO[4].encode())
    assert receivers[1].aborted


def test_reset_forgets_the_unfinished_element() -> None:
    """A new connection starts clean: the half element of the old one is gone, counters stay."""
    stream = Collected()
    assert stream.feed(b'<message device="d" message="never ends') == []
    stream.parser.reset()
    assert stream.feed(b'<message message="ok"/>') == [
        ServerMessage(device=None, timestamp=None, message="ok")
    ]
    assert stream.parser.elements == 1


# --------------------------------------------------------------------------------------------------
# Element parsing


def ts(text: str) -> datetime:
    """Return the aware UTC datetime of a zone-less capture timestamp."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


EXPECTED_ELEMENTS = {
    THERMO[0]: DefVector(
        kind=VectorKind.NUMBER,
        device="Thermostat",
        name="temperaturevector",
        label="Temperature",
        group="Values",
        state="Ok",
        perm="ro",
        rule=None,
        timeout=None,
        timestamp=ts("2026-11-21T04:40:38.454175"),
        message=None,
        members=(
            DefMember("temperature", "temperature", "19.60", "%3.1f", -50.0, 99.0, 0.0),
        ),
    ),
    THERMO[2]: DefVector(
        kind=VectorKind.BLOB,
        device="Thermostat",
        name="logsvector",
        label="Logs",
        group="Control",
        state="Ok",
        perm="ro",
        rule=None,
        timeout=None,
        timestamp=ts("2026-11-21T04:40:38.454230"),
        message=None,
        members=(DefMember("templogs", "Temperature logs", ""),),
    ),
    THERMO[3]: DefVector(
        kind=VectorKind.SWITCH,
        device="Thermostat",
        name="switchvector",
        label="Logs Control",
        group="Control",
        state="Ok",
        perm="rw",
        rule="AtMostOne",
        timeout=0.0,
        timestamp=ts("2026-11-21T04:40:38.454248"),
        message=None,
        members=(DefMember("switchmember", "Logs", "Off"),),
    ),
    THERMO[8]: SetVector(
        kind=VectorKind.NUMBER,
        device="Thermostat",
        name="targetvector",
        state="Alert",
        timeout=0.0,
        timestamp=ts("2026-11-21T04:40:41.021568"),
        message="Invalid target",
        members=(SetMember("target", "18.50"),),
    ),
    THERMO[11]: ServerMessage(
        device="Thermostat",
        timestamp=ts("2026-11-21T04:40:41.022590"),
        message="Log reporting is now On",
    ),
    EXTRAS[0]: DefVector(
        kind=VectorKind.LIGHT,
        device="Extras",
        name="heaterlight",
        label="Heater status",
        group="Status",
        state="Idle",
        perm=None,
        rule=None,
        timeout=None,
        timestamp=ts("2026-11-21T04:41:07.703620"),
        message=None,
        members=(DefMember("heater", "Heater", "Idle"),),
    ),
    EXTRAS[2]: DefVector(
        kind=VectorKind.NUMBER,
        device="Extras",
        name="havector",
        label="Hour angle",
        group="Status",
        state="Ok",
        perm="ro",
        rule=None,
        timeout=None,
        timestamp=ts("2026-11-21T04:41:07.703677"),
        message=None,
        members=(
            DefMember("hourangle", "Hour angle", "3.7625", "%010.6m", 0.0, 24.0, 0.0),
        ),
    ),
    EXTRAS[3]: SetVector(
        kind=VectorKind.TEXT,
        device="Extras",
        name="notevector",
        state="Ok",
        timeout=0.0,
        timestamp=ts("2026-11-21T04:41:09.705309"),
        message=None,
        members=(SetMember("note", "changed & <ok>"),),
    ),
    EXTRAS[4]: SetVector(
        kind=VectorKind.LIGHT,
        device="Extras",
        name="heaterlight",
        state="Idle",
        timeout=None,
        timestamp=ts("2026-11-21T04:41:12.640260"),
        message=None,
        members=(SetMember("heater", "Ok"),),
    ),
    EXTRAS[5]: DelProperty(
        device="Extras",
        name="havector",
        timestamp=ts("2026-11-21T04:41:18.641436"),
        message="hour angle vector removed",
    ),
    EXTRAS[6]: DelProperty(
        device="Extras",
        name=None,
        timestamp=ts("2026-11-21T04:41:24.642735"),
        message="Extras device removed",
    ),
}


@pytest.mark.parametrize("line", list(EXPECTED_ELEMENTS), ids=lambda line: line[:60])
def test_parse_captured_elements(line: str) -> None:
    """Representative captured lines parse to exactly the expected dataclass."""
    assert parse_element(line.encode()) == EXPECTED_ELEMENTS[line]


@pytest.mark.parametrize("line", ALL_SERVER_LINES, ids=lambda line: line[:60])
def test_every_captured_server_line_parses(line: str) -> None:
    """Every element either server sent parses to the type its tag names."""
    element = parse_element(line.encode())
    tag = line[1:].split(" ", 1)[0]
    if tag.startswith("def"):
        assert isinstance(element, DefVector)
        assert element.kind.value == tag[3:-6]
        assert element.members
    elif tag.startswith("set"):
        assert isinstance(element, SetVector)
        assert element.kind.value == tag[3:-6]
    elif tag == "delProperty":
        assert isinstance(element, DelProperty)
    else:
        assert isinstance(element, ServerMessage)
    assert element.timestamp is not None
    assert element.timestamp.tzinfo is UTC


def test_parse_redefinition_and_captured_blob() -> None:
    """A re-definition carries its message; the BLOB set keeps the base64 text undecoded."""
    redefined = parse_element(EXTRAS[9].encode())
    assert isinstance(redefined, DefVector)
    assert redefined.message == "re-defined"
    assert redefined.members[0].value == "3.7625"
    assert parse_number(redefined.members[0].value) == 3.7625
    blob_line = next(line for line in THERMO if line.startswith("<setBLOBVector"))
    blob = parse_element(blob_line.encode())
    assert isinstance(blob, SetVector)
    assert blob.members[0].size == 84
    assert blob.members[0].format == ".csv"
    assert base64.b64decode(blob.members[0].value).startswith(
        b"2026-11-21T04:40:45.0,18.20\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'<setNumberVector device="d" name="n"><oneNumber name="a">1</oneText></setNumberVector>',
        b'<setNumberVector device="d" name="n"',
        b"<message>unclosed",
        b'<setNumberVector name="n"><oneNumber name="a">1</oneNumber></setNumberVector>',
        b'<setNumberVector device="d"><oneNumber name="a">1</oneNumber></setNumberVector>',
        b'<defNumberVector device="d" name="n"><defNumber>1</defNumber></defNumberVector>',
        b'<delProperty name="n"/>',
        b'<!DOCTYPE m [<!ENTITY e "boom">]><message device="d" message="&e;"/>',
    ],
)
def test_parse_malformed_raises_protocol_error(raw: bytes) -> None:
    """Malformed XML, missing device/name and DTD/entity tricks are ProtocolErrors."""
    with pytest.raises(ProtocolError):
        parse_element(raw)


def test_malformed_element_does_not_stop_the_next() -> None:
    """A mismatched tag fails alone; the parser carries on with the next element."""
    bad = b'<setNumberVector device="d" name="n"><oneNumber name="a">1</oneText></setNumberVector>'
    good = THERMO[4].encode()
    with pytest.raises(ProtocolError):
        parse_element(bad)
    stream = Collected()
    assert stream.feed(bad + good) == parsed([good])
    assert [reason for reason, _ in stream.drops] == ["malformed XML: mismatched tag"]


@pytest.mark.parametrize(
    "raw",
    [
        b'<newNumberVector device="Thermostat" name="targetvector"><oneNumber name="target">16</oneNumber></newNumberVector>',
        b'<getProperties version="1.7" device="x"/>',
        b'<enableBLOB device="x">Also</enableBLOB>',
        b'<pingRequest uid="1"/>',
        b"<somethingNew/>",
    ],
)
def test_parse_ignored_elements(raw: bytes) -> None:
    """Elements a client ignores parse to None."""
    assert parse_element(raw) is None


def test_parse_indilib_multiline_layout() -> None:
    """Indilib's multi-line layout: values are trimmed, texts lose only the layout newlines."""
    raw = (
        b"<defTextVector device='Sim' name='DRIVER_INFO' label='Driver Info' group='General' "
        b"state='Idle' perm='ro' timeout='60' timestamp='2026-01-01T00:00:00'>\n"
        b"  <defText\n    name='DRIVER_NAME'\n    label='Name'>\nTelescope Simulator\n  </defText>\n"
        b"  <defText\n    name='DRIVER_NOTE'\n    label='Note'>\n  indented\nsecond line\n  </defText>\n"
        b"</defTextVector>\n"
    )
    element = parse_element(raw)
    assert isinstance(element, DefVector)
    assert [m.value for m in element.members] == [
        "Telescope Simulator",
        "  indented\nsecond line",
    ]
    number = parse_element(
        b"<setNumberVector device='Sim' name='EQ'>\n  <oneNumber name='RA'>\n      3:45:45\n  </oneNumber>\n</setNumberVector>"
    )
    assert isinstance(number, SetVector)
    assert number.members[0].value == "3:45:45"


def test_member_text_keeps_device_spaces() -> None:
    """Only layout newlines go from texts; numbers/switches are fully stripped."""
    assert member_text("  a b  ", VectorKind.TEXT) == "  a b  "
    assert member_text("\nvalue\n    ", VectorKind.TEXT) == "value"
    assert member_text(" On\n", VectorKind.SWITCH) == "On"
    assert member_text(None, VectorKind.TEXT) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2026-11-21T04:40:38.454175",
            datetime(2026, 11, 21, 4, 40, 38, 454175, tzinfo=UTC),
        ),
        ("2026-11-21T04:40:38", datetime(2026, 11, 21, 4, 40, 38, tzinfo=UTC)),
        ("2026-11-21T04:40:38Z", datetime(2026, 11, 21, 4, 40, 38, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_timestamp(text: str | None, expected: datetime | None) -> None:
    """Zone-less timestamps are UTC; invalid or missing ones are None."""
    assert parse_timestamp(text) == expected


# --------------------------------------------------------------------------------------------------
# Builders


def ipyclient_lines() -> list[bytes]:
    """Return what indipyclient transmitted (the reference for our builders)."""
    text = (CAPTURES / "ipyclient_tx.txt").read_text(encoding="utf-8")
    return [
        line.removeprefix("TX:: ").encode()
        for line in text.splitlines()
        if line.startswith("TX:: ")
    ]


def structure(
    raw: bytes,
) -> tuple[str, dict[str, str], list[tuple[str, dict[str, str], str | None]]]:
    """Return an element's tag, attributes (without timestamp) and children, for comparison."""
    root = fromstring(raw)
    attributes = {k: v for k, v in root.attrib.items() if k != "timestamp"}
    return (
        root.tag,
        attributes,
        [(child.tag, dict(child.attrib), child.text) for child in root],
    )


def test_builders_match_indipyclient() -> None:
    """getProperties/enableBLOB are byte-identical to indipyclient's; new*Vector equal in structure."""
    tx = ipyclient_lines()
    assert get_properties() == tx[0]
    assert enable_blob("Thermostat", "Also", "logsvector") == tx[1]
    assert structure(
        new_vector(
            VectorKind.NUMBER, "Thermostat", "targetvector", [("target", "19.25")]
        )
    ) == (structure(tx[2]))
    assert structure(
        new_vector(
            VectorKind.SWITCH, "Thermostat", "switchvector", [("switchmember", "On")]
        )
    ) == (structure(tx[3]))
    assert enable_blob("Thermostat", "Only", "logsvector") == tx[4]


def test_get_properties_always_has_version() -> None:
    """IPyServer ignores getProperties without version=1.7."""
    assert get_properties("Thermostat", "targetvector") == (
        b'<getProperties version="1.7" device="Thermostat" name="targetvector" />'
    )
    assert fromstring(get_properties("Extras")).attrib == {
        "version": "1.7",
        "device": "Extras",
    }
    with pytest.raises(ValueError):
        get_properties(name="targetvector")
    with pytest.raises(ValueError):
        enable_blob("d", "Sometimes")


def test_new_vector_escapes_attributes_and_text() -> None:
    """Quotes, ampersands and angle brackets survive the round trip."""
    raw = new_vector(
        VectorKind.TEXT, 'Dev "A" & B', "note<vec>", [("note", 'changed & <ok> "q"')]
    )
    assert b"changed &amp; &lt;ok&gt;" in raw
    root = fromstring(raw)
    assert root.tag == "newTextVector"
    assert root.attrib == {"device": 'Dev "A" & B', "name": "note<vec>"}
    assert root[0].text == 'changed & <ok> "q"'


def test_new_vector_switches_off_before_on() -> None:
    """A OneOfMany device must never see two members On: Off members are sent first."""
    raw = new_vector(
        VectorKind.SWITCH,
        "Mount",
        "SLEW_RATE",
        [("1x", "Off"), ("2x", "On"), ("3x", "Off"), ("4x", "Off")],
    )
    root = fromstring(raw)
    assert [(child.get("name"), child.text) for child in root] == [
        ("1x", "Off"),
        ("3x", "Off"),
        ("4x", "Off"),
        ("2x", "On"),
    ]
    with pytest.raises(ValueError):
        new_vector(VectorKind.LIGHT, "d", "n", [("a", "Ok")])


def test_elements_reach_the_consumer_in_order_with_what_depends_on_them() -> None:
    """Elements of one read are handed on before feed returns, each before what depends on it.

    A BLOB's receiver is opened only after the elements before it were handled (the opener looks
    at what a definition made known), a drop is reported after the elements before it, and a
    consumer that raises loses no element after it.
    """
    calls: list[str] = []

    class Receiver:
        def write(self, _text: str) -> None:
            calls.append("blob text")

        def end(self) -> None:
            calls.append("blob end")

        def abort(self) -> None:
            calls.append("blob aborted")

    def on_element(element: IndiElement) -> None:
        calls.append(f"element {type(element).__name__}")
        if isinstance(element, ServerMessage) and element.message == "boom":
            raise RuntimeError("a bug in the consumer")

    def open_blob(
        device: str, vector: str, member: str, fmt: str, size: int | None
    ) -> Receiver:
        calls.append(f"open {vector}")
        return Receiver()

    parser = IndiStreamParser(
        on_element,
        lambda reason, _excerpt: calls.append(f"drop {reason}"),
        open_blob=open_blob,
    )
    parser.feed(
        b'<defBLOBVector device="Cam" name="CCD1" perm="ro"><defBLOB name="CCD1"/></defBLOBVector>'
        b'<message message="boom"/>'
        b'<setBLOBVector device="Cam" name="CCD1"><oneBLOB name="CCD1" format=".bin">AAAA'
        b"</oneBLOB></setBLOBVector>"
        b'<message message="before the bad one"/><setNumberVector device="d">&bogus;'
        b'</setNumberVector><message message="after it"/>'
    )
    assert calls == [
        "element DefVector",
        "element ServerMessage",
        "open CCD1",
        "blob text",
        "blob end",
        "element SetVector",
        "element ServerMessage",
        "drop malformed XML: undefined entity",
        "element ServerMessage",
    ]


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-21T21:00:00.011259",
        "2026-11-21",
        "2026-11-21T21",
        "20261121T210000",
        "2026-11-21T21:00:00Z",
        "2026-11-21T21:00:00+02:00",
        "2026-11-21T21:00:00.123+01",
        " 2026-11-21T21:00:00.5 ",
        "garbage",
    ],
)
def test_a_set_vector_timestamp_is_what_parse_timestamp_makes_of_it(stamp: str) -> None:
    """The parser's inline reading of a set's timestamp agrees with parse_timestamp (UTC without a zone)."""
    (element,) = Collected().feed(
        f'<setNumberVector device="d" name="v" timestamp="{stamp}">'
        '<oneNumber name="a">1</oneNumber></setNumberVector>'.encode()
    )
    assert isinstance(element, SetVector)
    expected = parse_timestamp(stamp)
    assert element.timestamp == expected
    if expected is not None:
        assert element.timestamp is not None
        assert element.timestamp.utcoffset() == expected.utcoffset()
