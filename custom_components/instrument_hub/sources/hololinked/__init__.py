"""hololinked Thing source: any Thing served over HTTP, from its Thing Description (SSE pushes)."""

from .client import Credentials
from .source import HololinkedSource
from .td import ThingUrl, parse_thing_url

__all__ = ["Credentials", "HololinkedSource", "ThingUrl", "parse_thing_url"]
