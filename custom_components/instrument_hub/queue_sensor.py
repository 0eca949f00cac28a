"""Diagnostic sensors of the hub's event queue: depth, rate and wait time, sampled every few seconds.

They are disabled by default (they change constantly and matter only when something is slow); when enabled,
each samples the collector's figures on its own timer, so a disabled one costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from homeassistant.components.sensor import (
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import callback
from homeassistant.helpers.event import async_track_time_interval

from .collector import CollectorStats
from .const import HUB_DEVICE_KEY
from .hub import Hub

SAMPLE_INTERVAL = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True)
class QueueSensorDescription(SensorEntityDescription):
    """A figure of the event queue."""

    value_fn: Callable[[CollectorStats], float]


QUEUE_SENSORS = (
    QueueSensorDescription(
        key="event_queue_depth",
        translation_key="event_queue_depth",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda stats: stats["depth"],
    ),
    QueueSensorDescription(
        key="event_rate",
        translation_key="event_rate",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement="events/s",
        suggested_display_precision=1,
        value_fn=lambda stats: stats["rate"],
    ),
    QueueSensorDescription(
        key="event_wait_p95",
        translation_key="event_wait_p95",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        suggested_display_precision=1,
        value_fn=lambda stats: stats["wait_time"]["p95"],
    ),
)


class QueueSensor(SensorEntity):
    """One figure of the hub's event queue, on the endpoint's device."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_entity_category = EntityCategory.DIAGNOSTIC
    _attr_entity_registry_enabled_default = False
    entity_description: QueueSensorDescription

    def __init__(self, hub: Hub, description: QueueSensorDescription) -> None:
        """Attach the sensor to the endpoint's device."""
        self.hub = hub
        self.entity_description = description
        self._attr_unique_id = (
            f"{hub.device_identifier(HUB_DEVICE_KEY)}:_{description.key}"
        )
        self.device_entry = hub.device_entry(HUB_DEVICE_KEY)
        self._sample()

    async def async_added_to_hass(self) -> None:
        """Sample on a timer while the entity exists (only enabled entities are added)."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_track_time_interval(self.hass, self._handle_tick, SAMPLE_INTERVAL)
        )

    def _sample(self) -> None:
        self._attr_native_value = self.entity_description.value_fn(
            self.hub.event_queue_stats()
        )

    @callback
    def _handle_tick(self, _now: datetime) -> None:
        self._sample()
        self.async_write_ha_state()
