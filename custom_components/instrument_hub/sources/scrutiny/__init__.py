"""Scrutiny debugger servers (scrutinydebugger): the target, its firmware, datalogger and watchables."""

from .source import ScrutinySource

__all__ = ["ScrutinySource"]
