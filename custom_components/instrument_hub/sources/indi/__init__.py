"""INDI (Instrument Neutral Distributed Interface) source: an INDI 1.7 client over TCP."""

from .source import IndiSource

__all__ = ["IndiSource"]
