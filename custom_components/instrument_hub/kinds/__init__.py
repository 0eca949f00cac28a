"""The registry of source kinds: the one place that lists them.

Adding a kind: a module in this package with its :class:`SourceKind`, and one line in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from homeassistant.config_entries import ConfigEntry

from ..const import CONF_SOURCE_KIND
from .base import KindAction, SourceKind
from .gentec import GENTEC_KIND
from .hololinked import HololinkedKind
from .indi import IndiKind
from .powersensor import PowersensorKind
from .scrutiny import ScrutinyKind

KINDS: Final[Mapping[str, SourceKind]] = {
    kind.name: kind
    for kind in (
        IndiKind(),
        PowersensorKind(),
        HololinkedKind(),
        GENTEC_KIND,
        ScrutinyKind(),
    )
}
"""Every kind, by name, in the order of the config flow's menu."""


def find_kind(entry: ConfigEntry) -> SourceKind | None:
    """Return the kind of an entry, None when this version does not know it (after a downgrade)."""
    return KINDS.get(entry.data.get(CONF_SOURCE_KIND, ""))


def kind_of(entry: ConfigEntry) -> SourceKind:
    """Return the kind of an entry that was set up (its kind is known)."""
    return KINDS[entry.data[CONF_SOURCE_KIND]]


def all_actions() -> dict[str, KindAction]:
    """Return every action some kind offers, by name (the first kind to name one defines it)."""
    actions: dict[str, KindAction] = {}
    for kind in KINDS.values():
        for action in kind.actions:
            actions.setdefault(action.name, action)
    return actions


__all__ = ["KINDS", "SourceKind", "all_actions", "find_kind", "kind_of"]
