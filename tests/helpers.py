"""Waiting for what a user would see, without sleeping: state-change listeners with bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, EVENT_STATE_CHANGED
from homeassistant.core import (
    Event,
    EventStateChangedData,
    HomeAssistant,
    ServiceResponse,
    State,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.const import CONF_SOURCE_KIND, DOMAIN

from .fake_indi import FakeIndiServer

type StatePredicate = Callable[[State | None], bool]

SOURCE_INDI = "indi"
"""The kind INDI entries store (entries made by every version carry it: never change it)."""


async def wait_for_state(
    hass: HomeAssistant,
    entity_id: str,
    predicate: StatePredicate,
    timeout: float = 10.0,
) -> State | None:
    """Wait until the entity's state satisfies ``predicate``; fail after ``timeout`` seconds."""
    done = asyncio.Event()

    @callback
    def changed(_event: Event[EventStateChangedData]) -> None:
        if predicate(hass.states.get(entity_id)):
            done.set()

    unsubscribe = async_track_state_change_event(hass, [entity_id], changed)
    try:
        if not predicate(hass.states.get(entity_id)):
            async with asyncio.timeout(timeout):
                await done.wait()
    except TimeoutError as err:
        raise AssertionError(
            f"{entity_id} did not reach the expected state in {timeout} s; now {hass.states.get(entity_id)}"
        ) from err
    finally:
        unsubscribe()
    return hass.states.get(entity_id)


async def wait_until(
    hass: HomeAssistant, condition: Callable[[], bool], timeout: float = 10.0
) -> None:
    """Wait until ``condition()`` holds, re-checking on every state change; fail after ``timeout``."""
    done = asyncio.Event()

    @callback
    def changed(_event: Event[EventStateChangedData]) -> None:
        if condition():
            done.set()

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, changed)
    try:
        if not condition():
            async with asyncio.timeout(timeout):
                await done.wait()
    except TimeoutError as err:
        raise AssertionError(f"condition not met in {timeout} s") from err
    finally:
        unsubscribe()


async def wait_for_entity(
    hass: HomeAssistant, platform: str, unique_id: str, timeout: float = 10.0
) -> str:
    """Wait until the entity with this unique id is registered and has a state; return its id."""
    registry = er.async_get(hass)

    def entity_id() -> str | None:
        found = registry.async_get_entity_id(platform, DOMAIN, unique_id)
        return (
            found if found is not None and hass.states.get(found) is not None else None
        )

    try:
        await wait_until(hass, lambda: entity_id() is not None, timeout)
    except AssertionError as err:
        raise AssertionError(
            f"no {platform} entity {unique_id} after {timeout} s"
        ) from err
    found = entity_id()
    assert found is not None
    return found


async def set_property(
    hass: HomeAssistant,
    entry_id: str,
    device: str,
    prop: str,
    values: dict[str, object],
    **fields: object,
) -> ServiceResponse:
    """Call instrument_hub.set_property as an automation would (more ``fields``: timeout), return its response."""
    return await hass.services.async_call(
        DOMAIN,
        "set_property",
        {
            "config_entry_id": entry_id,
            "device": device,
            "property": prop,
            "values": values,
            **fields,
        },
        blocking=True,
        return_response=True,
    )


def state_of(hass: HomeAssistant, entity_id: str) -> str:
    """Return the entity's state, failing the test if it has none."""
    state = hass.states.get(entity_id)
    assert state is not None, f"{entity_id} has no state"
    return state.state


def state_is(value: str) -> StatePredicate:
    """Predicate: the state equals ``value``."""
    return lambda state: state is not None and state.state == value


def state_not(value: str) -> StatePredicate:
    """Predicate: the entity exists and its state differs from ``value``."""
    return lambda state: state is not None and state.state != value


async def setup_indi_entry(
    hass: HomeAssistant,
    server: FakeIndiServer,
    options: dict[str, object] | None = None,
) -> MockConfigEntry:
    """Add and set up an entry for a scripted server (its definitions already given); it must load."""
    entry = indi_entry(hass, server.port, options)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    return entry


def indi_entry(
    hass: HomeAssistant,
    port: int,
    options: dict[str, object] | None = None,
    entry_id: str | None = None,
) -> MockConfigEntry:
    """Add an INDI entry for 127.0.0.1:port, added to hass (not set up); a fixed ``entry_id`` for snapshots."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title=f"INDI server 127.0.0.1:{port}",
        unique_id=f"indi:127.0.0.1:{port}",
        data={CONF_SOURCE_KIND: SOURCE_INDI, CONF_HOST: "127.0.0.1", CONF_PORT: port},
        options=options or {},
    )
    entry.add_to_hass(hass)
    return entry
