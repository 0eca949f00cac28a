"""The Gentec-EO Maestro / INTEGRA text protocol: commands, line framing and reply parsing.

Facts (MAESTRO manual V6 §3.4, rev 8.1, and the field drivers; see the README's Supported devices):
commands are ``*`` + three letters + fixed-width parameters with no terminator; replies are text
lines ending in CR LF; setters answer nothing. Real meters and the manual disagree on small things,
so parsing is lenient where drivers found variants (``Mode : 0`` / ``Mode: 0`` / a bare ``0``; the
legacy ``Current Value : x``). Pure functions and a framer; no I/O, no Home Assistant imports.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import re
from typing import Final

BAUD_RATE: Final = 115200
"""The Maestro's only serial setting: 115200 8N1, no flow control (V6 §3.1.2.2)."""
MAX_LINE_BYTES: Final = 256
"""The longest reply line accepted; the longest real one (*VER, *DVS) is far shorter."""
OVER_RANGE: Final = 1e38
"""Values at or above this are the meter's over-range/invalid sentinel (``3.40282e+038``)."""
MAX_STREAM_HZ: Final = 200
"""The fastest ``*CAU`` streams (V6 p.66)."""

# Display modes of *GMD (V6 p.65; the hololinked driver adds 3-5)
MODE_POWER: Final = 0
MODE_ENERGY: Final = 1
MODE_SSE: Final = 2
MODE_FLUENCE: Final = 3
MODE_IRRADIANCE: Final = 4
MODE_ENERGY_DOSE: Final = 5
MODE_DBM: Final = 6
MODE_NO_DETECTOR: Final = 7
MODE_NAMES: Final = {
    MODE_POWER: "power",
    MODE_ENERGY: "energy",
    MODE_SSE: "single_shot_energy",
    MODE_FLUENCE: "fluence",
    MODE_IRRADIANCE: "irradiance",
    MODE_ENERGY_DOSE: "energy_dose",
    MODE_DBM: "dbm",
    MODE_NO_DETECTOR: "no_detector",
}
MODE_UNITS: Final = {
    MODE_POWER: "W",
    MODE_ENERGY: "J",
    MODE_SSE: "J",
    MODE_FLUENCE: "J/cm²",
    MODE_IRRADIANCE: "W/cm²",
    MODE_ENERGY_DOSE: "J",
    MODE_DBM: "dBm",
}

TRIGGER_MIN: Final = 0.1
TRIGGER_MAX: Final = 99.9
RANGE_COUNT: Final = 42
"""Range indices 00 (1 pW/pJ) to 41 (300 MW/MJ)."""
_RANGE_MANTISSAS: Final = (1, 3, 10, 30, 100, 300)
_RANGE_PREFIXES: Final = ("p", "n", "µ", "m", "", "k", "M")

_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ERROR: Final = re.compile(r"error\s*(\d+)\s*:?\s*(.*)", re.IGNORECASE)
_NEW_DATA: Final = re.compile(r"(?:new\s+data|nvu)\b(.*)", re.IGNORECASE)
_VERSION: Final = re.compile(r"(.*?)\s*\bversion\b\s*(\S*)", re.IGNORECASE)
_VALID_RANGE: Final = re.compile(r"\[(\d{1,2})\]\s*:\s*(.*)")
_STATUS: Final = re.compile(r":([01])([0-9A-Fa-f]{4})([0-9A-Fa-f]{1,4})")
_LABELLED: Final = re.compile(r"([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)")
_TERMINATORS: Final = re.compile(rb"[\r\n]+")


# ------------------------------------------------------------------------------------ commands


def command(name: str, parameter: str = "") -> bytes:
    """Return a command as sent: ``*`` + mnemonic + parameter, no terminator, no spaces."""
    return f"*{name}{parameter}".encode("ascii")


VER: Final = command("VER")
CVU: Final = command("CVU")
NVU: Final = command("NVU")
CAU: Final = command("CAU")
CSU: Final = command("CSU")
GMD: Final = command("GMD")
GWL: Final = command("GWL")
GTL: Final = command("GTL")
GCR: Final = command("GCR")
GAS: Final = command("GAS")
DVS: Final = command("DVS")
STS: Final = command("STS")


def set_wavelength(nanometres: int) -> bytes:
    """Return ``*PWC`` with the wavelength as five zero-padded digits (whole nm only)."""
    if not 0 <= nanometres <= 99999:
        raise ValueError(f"wavelength {nanometres} nm does not fit in five digits")
    return command("PWC", f"{nanometres:05d}")


def trigger_parameter(percent: float) -> str:
    """Return the four characters of ``*STL``: ``15.4``, ``2.00``, ``0.20`` (V6 p.64)."""
    if not TRIGGER_MIN <= percent <= TRIGGER_MAX:
        raise ValueError(f"trigger level {percent} % is outside 0.1-99.9 %")
    text = f"{percent:.1f}" if percent >= 10 else f"{percent:.2f}"
    if len(text) != 4:  # 9.995 rounds to "10.00": use the 10+ form
        text = f"{percent:.1f}"
    return text


def set_trigger_level(percent: float) -> bytes:
    """Return ``*STL`` with the level in % as four characters."""
    return command("STL", trigger_parameter(percent))


def set_range(index: int) -> bytes:
    """Return ``*SCS`` with the range index as two digits."""
    if not 0 <= index < RANGE_COUNT:
        raise ValueError(f"range index {index} is outside 0-41")
    return command("SCS", f"{index:02d}")


def set_autoscale(on: bool) -> bytes:
    """Return ``*SAS1`` / ``*SAS0``."""
    return command("SAS", "1" if on else "0")


def range_label(index: int, unit: str) -> str:
    """Return a range's full scale as a user reads it: ``100 mJ``, ``3 W``, ``300 MW``."""
    decade, position = divmod(index, len(_RANGE_MANTISSAS))
    return f"{_RANGE_MANTISSAS[position]} {_RANGE_PREFIXES[decade]}{unit}"


def range_full_scale(index: int) -> float:
    """Return a range's full scale in W or J (index 24 is 1)."""
    decade, position = divmod(index, len(_RANGE_MANTISSAS))
    return _RANGE_MANTISSAS[position] * 10.0 ** (3 * decade - 12)


# ------------------------------------------------------------------------------------ framing


class LineFramer:
    """Split a byte stream into reply lines: any run of CR/LF ends a line; empty lines vanish.

    A line longer than ``max_line`` is dropped whole (and counted), up to its terminator, so a
    stream of garbage without line ends cannot grow memory. The result does not depend on how the
    stream is chunked.
    """

    __slots__ = ("_buffer", "_discarding", "max_line", "oversized")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        """Start with an empty buffer."""
        self.max_line = max_line
        self.oversized = 0
        self._buffer = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial line (after a reconnect)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the lines that ``data`` completes."""
        lines: list[bytes] = []
        start = 0
        for match in _TERMINATORS.finditer(data):
            self._take(data[start : match.start()], lines, ended=True)
            start = match.end()
        if start < len(data):
            self._take(data[start:], lines, ended=False)
        return lines

    def _take(self, piece: bytes, lines: list[bytes], *, ended: bool) -> None:
        if self._discarding:
            self._discarding = not ended
            return
        if len(self._buffer) + len(piece) > self.max_line:
            self._buffer.clear()
            self.oversized += 1
            self._discarding = not ended
            return
        if not ended:
            self._buffer += piece
            return
        if self._buffer:
            piece = bytes(self._buffer) + piece
            self._buffer.clear()
        if piece:
            lines.append(piece)


# ------------------------------------------------------------------------------------ replies


@dataclass(slots=True)  # one per message: not frozen, as events.Reading
class Value:
    """A measurement line (``*CVU`` reply or a ``*CAU`` stream line); None: over-range/invalid."""

    value: float | None
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class NewData:
    """The ``*NVU`` reply."""

    available: bool


@dataclass(frozen=True, slots=True)
class DeviceError:
    """``Error X: reason``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Version:
    """The ``*VER`` reply: ``MAESTRO Version 1.00.18``."""

    model: str
    firmware: str


@dataclass(frozen=True, slots=True)
class Labelled:
    """A ``Label : value`` reply (``Mode : 0``, ``PWC : 1064``, ``Trigger Level : 2.0``)."""

    label: str
    text: str


@dataclass(frozen=True, slots=True)
class ValidRange:
    """One ``*DVS`` line: ``[22] : 100.0 m``."""

    index: int


@dataclass(frozen=True, slots=True)
class StatusWord:
    """One ``*STS`` line: ``:<valid> <address> <value>`` in hex; ``end`` marks the last line."""

    end: bool
    address: int
    value: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A line that is no reply of the protocol (garbage, wrong encoding, a half line)."""

    reason: str


type Reply = (
    Value
    | NewData
    | DeviceError
    | Version
    | Labelled
    | ValidRange
    | StatusWord
    | Unreadable
)


def parse_number(text: str) -> float | None:
    """Return a meter number; None for the over-range sentinel; ValueError when it is none."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    value = float(text)
    return None if not math.isfinite(value) or abs(value) >= OVER_RANGE else value


def parse_line(raw: bytes) -> Reply:
    """Classify one line (without its terminator)."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return Unreadable("not ASCII")
    if not text.isprintable():
        return Unreadable("control characters")
    if _NUMBER.fullmatch(text):
        return Value(parse_number(text))
    if match := _ERROR.fullmatch(text):
        return DeviceError(int(match.group(1)), match.group(2).strip())
    if match := _NEW_DATA.fullmatch(text):
        rest = match.group(1).lower()
        if "available" in rest:
            return NewData(available="not" not in rest)
    if match := _VERSION.fullmatch(text):
        return Version(match.group(1).strip(), match.group(2).strip())
    if match := _VALID_RANGE.fullmatch(text):
        return ValidRange(int(match.group(1)))
    if match := _STATUS.fullmatch("".join(text.split())):
        return StatusWord(
            match.group(1) == "1", int(match.group(2), 16), int(match.group(3), 16)
        )
    if match := _LABELLED.fullmatch(text):
        label = " ".join(match.group(1).lower().split())
        value_text = match.group(2).strip()
        if label == "current value":
            try:
                return Value(parse_number(value_text), legacy=True)
            except ValueError:
                return Unreadable("current value is not a number")
        return Labelled(label, value_text)
    return Unreadable("unknown reply")


def labelled_number(reply: Reply) -> float | None:
    """Return the number of a ``Label : n`` reply, or of a bare number (some firmware); else None."""
    if isinstance(reply, Value):
        return reply.value
    if isinstance(reply, Labelled):
        # The BLU writes "Trigger level: 15.4% (4.6 Watts) ...": the first number is the answer.
        if match := _NUMBER.search(reply.text):
            try:
                return parse_number(match.group())
            except ValueError:  # pragma: no cover - the pattern only finds numbers
                return None
    return None


# ------------------------------------------------------------------------------------ *STS


@dataclass(frozen=True, slots=True)
class DetectorStatus:
    """What ``*STS`` tells about the head: name, serial number, scales and wavelengths."""

    name: str | None
    serial: str | None
    current_scale: int | None
    max_scale: int | None
    min_scale: int | None
    wavelength: int | None
    max_wavelength: int | None
    min_wavelength: int | None


_NAME_START: Final = 0x1A
_NAME_END: Final = 0x29
_SERIAL_START: Final = 0x2A
_SERIAL_END: Final = 0x31


def _text(words: dict[int, int], first: int, last: int) -> str | None:
    """Return ASCII packed two characters per word, low byte first, up to a NUL."""
    chars: list[str] = []
    for address in range(first, last + 1):
        word = words.get(address)
        if word is None:
            break
        for byte in (word & 0xFF, word >> 8):
            if byte == 0:
                text = "".join(chars).strip()
                return text if text.isprintable() and text else None
            chars.append(chr(byte))
    text = "".join(chars).strip()
    return text if text and text.isprintable() else None


def parse_status(lines: list[StatusWord]) -> DetectorStatus:
    """Decode the ``*STS`` structure: 32-bit values as LSB then MSB words; text two bytes a word."""
    words = {line.address: line.value for line in lines if not line.end}

    def number(address: int) -> int | None:
        low = words.get(address)
        if low is None:
            return None
        return low | (words.get(address + 1, 0) << 16)

    return DetectorStatus(
        name=_text(words, _NAME_START, _NAME_END),
        serial=_text(words, _SERIAL_START, _SERIAL_END),
        current_scale=number(0x06),
        max_scale=number(0x08),
        min_scale=number(0x0A),
        wavelength=number(0x0C),
        max_wavelength=number(0x0E),
        min_wavelength=number(0x10),
    )
