"""Fixtures shared by the Home Assistant level tests and the protocol-source tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from unittest.mock import PropertyMock, patch

import pytest
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from .fake_indi import FakeIndiServer
from .fake_scrutiny import FakeScrutinyServer
from .fake_source import FakeKind, registered_fake_kind
from .fake_thing import FakeThing, fake_thing
from .powersensor_ha import (  # noqa: F401 - fixtures of the Powersensor tests
    ha_network,
    held_household,
    household,
    quick_scans,
)
from .powersensor_net import loopback_only, subnet  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load the integration from custom_components in every test."""
    return


@pytest.fixture
async def indi_server(socket_enabled: None) -> AsyncIterator[FakeIndiServer]:
    """Serve a scripted INDI server on 127.0.0.1, closed (every connection ended) after the test.

    It needs no Home Assistant instance, so the source tests use it too. ``socket_enabled`` lifts
    the test plugin's socket block; connections stay limited to 127.0.0.1.
    """
    server = FakeIndiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def scrutiny_server(socket_enabled: None) -> AsyncIterator[FakeScrutinyServer]:
    """Serve a scripted Scrutiny server on 127.0.0.1 (the demo device, ready), closed after the test."""
    server = FakeScrutinyServer()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def thing(socket_enabled: None) -> AsyncIterator[FakeThing]:
    """Serve the captured hololinked TD from a scripted Thing on 127.0.0.1, stopped after the test."""
    async with fake_thing() as scripted:
        yield scripted


@pytest.fixture
def fake_kind() -> Iterator[FakeKind]:
    """Register the protocol-free source kind "fake" for one test (see tests/fake_source.py)."""
    yield from registered_fake_kind()


@pytest.fixture
def all_entities_enabled() -> Iterator[None]:
    """Create every entity enabled, also those disabled by default (for snapshots of all of them)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshots in Home Assistant's own format (ids and times masked), as core's tests take them."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)
