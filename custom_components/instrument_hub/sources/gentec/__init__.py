"""Gentec-EO MAESTRO / INTEGRA power and energy meters on a serial port (or a pyserial URL)."""

from .source import AcquisitionMode, GentecSource

__all__ = ["AcquisitionMode", "GentecSource"]
