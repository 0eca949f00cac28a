"""Powersensor (DiUS) source: a household's WiFi plugs and the sensors they relay, over UDP."""

from .source import PowersensorSettings, PowersensorSource

__all__ = ["PowersensorSettings", "PowersensorSource"]
