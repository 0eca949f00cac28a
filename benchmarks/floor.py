"""The floor: what one state write of a plain numeric sensor costs Home Assistant itself.

Every pipeline row is divided by this figure, so the table says how many "state writes" an event
costs, which holds across machines better than microseconds do. The sensor is what a well-behaved
integration would add: device class temperature, state class measurement, °C, a device,
``has_entity_name``, a unique id, no polling; it comes from a config entry of a mock integration
whose sensor platform is set up by ``async_forward_entry_setups`` (so the entity goes through a real
entity platform, the entity and device registries, like the integration's own entities). The loop
then sets a changing value and calls ``async_write_ha_state()`` N times; every write is a real
state change. The same ``state_changed`` counter the pipeline rows use is listening, so both sides
carry one listener, and the count proves N writes happened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry, ConfigEntryState, ConfigFlow
from homeassistant.const import Platform, UnitOfTemperature
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

from .harness import StateWrites, bench_hass, cpu_ns, settle
from .rows import BenchError, Measurement, Settings, row

DOMAIN: Final = "bench_floor"
ENTITY_ID: Final = "sensor.bench_probe_temperature"
WARMUP_WRITES: Final = 200


class ProbeConfigFlow(ConfigFlow):
    """The mock integration's config flow: only there because setting up an entry looks for it."""

    VERSION = 1


class ProbeSensor(SensorEntity):
    """A pushed temperature, the way an integration's push entity writes it."""

    _attr_has_entity_name = True
    _attr_name = "Temperature"
    _attr_should_poll = False
    _attr_device_class = SensorDeviceClass.TEMPERATURE
    _attr_state_class = SensorStateClass.MEASUREMENT
    _attr_native_unit_of_measurement = UnitOfTemperature.CELSIUS
    _attr_unique_id = "bench-probe-temperature"
    _attr_device_info = DeviceInfo(
        identifiers={(DOMAIN, "probe")}, name="Bench probe", manufacturer="Benchmark"
    )
    _attr_native_value = 20.0

    @callback
    def async_push(self, value: float) -> None:
        """Take a new value and write the state (what a push callback does)."""
        self._attr_native_value = value
        self.async_write_ha_state()


async def setup_plain_sensors(hass: HomeAssistant, sensors: list[SensorEntity]) -> None:
    """Set up a config entry of a mock integration whose sensor platform adds ``sensors``.

    Used inside ``mock_config_flow(DOMAIN, ProbeConfigFlow)``: what any push integration's entry
    does, so rows can compare the integration with plain entities in the same ``hass``.
    """
    await setup_plain_entities(hass, {Platform.SENSOR: sensors})


async def setup_plain_entities(
    hass: HomeAssistant, entities: Mapping[Platform, Sequence[Entity]]
) -> None:
    """Set up a config entry of a mock integration whose platforms add ``entities``, per platform."""
    platforms = list(entities)

    async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, platforms)
        return True

    async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        return await hass.config_entries.async_unload_platforms(entry, platforms)

    mock_integration(
        hass,
        MockModule(
            DOMAIN,
            async_setup_entry=async_setup_entry,
            async_unload_entry=async_unload_entry,
        ),
    )
    # Setting up an entry imports the integration's config flow: a mock one, as in the tests.
    mock_platform(hass, f"{DOMAIN}.config_flow")
    for platform, added in entities.items():

        async def async_setup_platform_entry(
            hass: HomeAssistant,
            entry: ConfigEntry,
            async_add_entities: AddEntitiesCallback,
            added: Sequence[Entity] = added,
        ) -> None:
            async_add_entities(added)

        mock_platform(
            hass,
            f"{DOMAIN}.{platform}",
            MockPlatform(async_setup_entry=async_setup_platform_entry),
        )
    entry = MockConfigEntry(domain=DOMAIN, title="Bench probe")
    entry.add_to_hass(hass)
    if (
        not await hass.config_entries.async_setup(entry.entry_id)
        or entry.state is not ConfigEntryState.LOADED
    ):
        raise BenchError(
            f"the plain entities' config entry did not load: {entry.state}"
        )
    await hass.async_block_till_done()


async def _setup_floor_entry(hass: HomeAssistant) -> ProbeSensor:
    """Set up the floor's entry: one ProbeSensor."""
    sensor = ProbeSensor()
    await setup_plain_sensors(hass, [sensor])
    if sensor.entity_id != ENTITY_ID or hass.states.get(ENTITY_ID) is None:
        raise BenchError(f"the floor sensor is {sensor.entity_id}, not {ENTITY_ID}")
    return sensor


def _values(count: int, start: int) -> list[float]:
    """Return ``count`` temperatures, each differing from the previous one (a real change)."""
    return [20.0 + ((start + index) % 1000) / 100 for index in range(count)]


async def tight_write_rounds(
    hass: HomeAssistant,
    entity_id: str,
    settings: Settings,
    prepare: Callable[[int], Callable[[], None]],
) -> list[float]:
    """Return the CPU µs per write of ``settings.repeats`` rounds of writes in a tight loop.

    ``prepare(count)`` builds a round's values (not timed) and returns what makes ``count`` writes
    of ``entity_id``; a warm-up round of WARMUP_WRITES goes first. Every write must be a state
    change, counted by the same ``state_changed`` listener the pipeline rows use.
    """
    samples: list[float] = []
    writes = StateWrites(hass, [entity_id])
    try:
        for repeat in range(-1, settings.repeats):
            count = WARMUP_WRITES if repeat < 0 else settings.events
            run = prepare(count)
            await settle(hass)
            writes.arm(entity_id, lambda _state: False)
            begin = cpu_ns()
            run()
            await hass.async_block_till_done()
            elapsed = cpu_ns() - begin
            if writes.count != count:
                raise BenchError(f"{writes.count} state changes for {count} writes")
            if repeat >= 0:
                samples.append(elapsed / count / 1000)
    finally:
        writes.close()
    return samples


@row("floor", "floor: HA sensor state write", source="homeassistant", floor=True)
async def state_write_floor(settings: Settings) -> Measurement:
    """CPU per ``async_write_ha_state()`` of a numeric sensor whose value changed."""
    with mock_config_flow(DOMAIN, ProbeConfigFlow):
        async with bench_hass() as hass:
            sensor = await _setup_floor_entry(hass)
            start = 1  # the first value differs from the initial 20.0

            def prepare(count: int) -> Callable[[], None]:
                nonlocal start
                values = _values(count, start)
                start += count

                def run() -> None:
                    for value in values:
                        sensor.async_push(value)

                return run

            samples = await tight_write_rounds(hass, ENTITY_ID, settings, prepare)
    return Measurement(
        samples,
        [
            f"{settings.events * len(samples)}/{settings.events * settings.repeats} "
            "state_changed",
            "1 entity, 1 listener",
        ],
    )
