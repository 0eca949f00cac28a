"""A Gentec-EO MAESTRO (the emulator on a real pty, or over socket://) seen through Home Assistant."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
import time
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USB, SOURCE_USER
from homeassistant.const import (
    CONF_DEVICE,
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.service_info.usb import UsbServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from serial.tools.list_ports_common import ListPortInfo
from syrupy.assertion import SnapshotAssertion

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.hub import Hub
from custom_components.instrument_hub.kinds import gentec as gentec_kind
from custom_components.instrument_hub.kinds.base import FlowFormError
from simulators.gentec_maestro import MaestroEmulator

from .gentec_support import SOURCE_GENTEC, add_gentec_entry, maestro, maestro_tcp
from .helpers import wait_for_state, wait_until
from .test_hub import QUIET_QUEUE

__all__ = ["maestro", "maestro_tcp"]
_LOGGER = logging.getLogger(__name__)

READING = "sensor.gentec_eo_maestro_reading"
COUNT = "sensor.gentec_eo_maestro_pulse_count"
MINIMUM = "sensor.gentec_eo_maestro_minimum"
MAXIMUM = "sensor.gentec_eo_maestro_maximum"
AVERAGE = "sensor.gentec_eo_maestro_average"
PULSE = "event.gentec_eo_maestro_pulse"
UNPLUG_BOUND = 2.0


def _number(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None
    return float(state.state)


async def _menu_form(hass: HomeAssistant) -> Any:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SOURCE_GENTEC}
    )


async def test_flow_lists_ports_and_creates_the_entry(
    hass: HomeAssistant, maestro: MaestroEmulator, tmp_path: Path
) -> None:
    """Ports are listed by description and serial number; the meter answers *VER; title = model."""
    port = ListPortInfo(maestro.pty_path)
    port.description = "MAESTRO"
    port.serial_number = "M0123"
    port.manufacturer = "Gentec-EO"
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-Gentec-EO_MAESTRO_M0123-if00").symlink_to(maestro.pty_path)
    with (
        patch(f"{gentec_kind.__name__}.comports", return_value=[port]),
        patch.object(gentec_kind, "BY_ID", by_id),
    ):
        result = await _menu_form(hass)
    assert result["type"] is FlowResultType.FORM
    selector = result["data_schema"].schema[CONF_DEVICE]
    options = selector.config["options"]
    assert options == [
        {
            "value": str(by_id / "usb-Gentec-EO_MAESTRO_M0123-if00"),
            "label": f"MAESTRO - {by_id}/usb-Gentec-EO_MAESTRO_M0123-if00, s/n: M0123, Gentec-EO",
        }
    ]
    result = await hass.config_entries.flow.async_configure(
        str(result["flow_id"]), {CONF_DEVICE: maestro.device}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "MAESTRO (usb-Gentec-EO_MAESTRO-if00)"
    assert result["result"].unique_id == "gentec:235792"
    await hass.async_block_till_done()
    state = await wait_for_state(hass, READING, lambda s: s is not None)
    assert state is not None
    assert state.state == STATE_UNKNOWN  # no pulse yet: unknown, never 0
    # The same head on another port is the same meter: aborted.
    result = await _menu_form(hass)
    result = await hass.config_entries.flow.async_configure(
        str(result["flow_id"]), {CONF_DEVICE: maestro.pty_path}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_flow_errors(hass: HomeAssistant, tmp_path: Path) -> None:
    """A bad spelling, a port that does not open and a device that is no Gentec meter."""
    other = MaestroEmulator(pulses=False)
    other.meter.version_reply = "ELM327 v1.5"
    async with other:
        with patch(f"{gentec_kind.__name__}.comports", return_value=[]):
            result = await _menu_form(hass)
            flow_id = str(result["flow_id"])
            for port, error in (
                ("ttyUSB0", {CONF_DEVICE: "invalid_port"}),
                (str(tmp_path / "missing"), {"base": "cannot_connect"}),
                (other.device, {"base": "not_gentec"}),
            ):
                result = await hass.config_entries.flow.async_configure(
                    flow_id, {CONF_DEVICE: port}
                )
                assert result["type"] is FlowResultType.FORM
                assert result["errors"] == error


async def test_socket_url_readings_and_statistics_equal_the_emulator(
    hass: HomeAssistant, maestro_tcp: MaestroEmulator
) -> None:
    """Behind ser2net (socket://): each pulse at 10 Hz is a state, an event; statistics are exact."""
    await add_gentec_entry(hass, maestro_tcp.url)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.title == f"MAESTRO (127.0.0.1:{maestro_tcp.tcp_port})"
    await wait_for_state(
        hass, READING, lambda s: s is not None and s.state == STATE_UNKNOWN
    )
    events: list[tuple[str, int]] = []

    @callback  # on the loop: a plain function would run in the executor, behind the assertions
    def record(event: Event[EventStateChangedData]) -> None:
        new = event.data["new_state"]
        if event.data["entity_id"] == PULSE and new is not None:
            events.append((new.state, new.attributes["pulses"]))

    hass.bus.async_listen(EVENT_STATE_CHANGED, record)
    maestro_tcp.start_pulses(10.0)
    await wait_until(hass, lambda: _count(hass) >= 30, timeout=10)
    maestro_tcp.stop_pulses()
    sent = maestro_tcp.streamed_values
    await wait_until(hass, lambda: _count(hass) == len(sent), timeout=5)
    valid = [v for v in sent if v is not None]
    assert _number(hass, READING) == sent[-1]
    assert _number(hass, MINIMUM) == min(valid)
    assert _number(hass, MAXIMUM) == max(valid)
    assert math.isclose(
        _number(hass, AVERAGE), math.fsum(valid) / len(valid), rel_tol=1e-9
    )
    assert sum(pulses for _state, pulses in events) == len(sent)
    assert len(events) == len(sent), (
        events
    )  # every pulse fired its event (below the bound)
    pulse = hass.states.get(PULSE)
    assert pulse is not None
    assert pulse.attributes["event_type"] == "pulse"
    assert pulse.attributes["value"] == sent[-1]
    assert pulse.attributes["pulses"] == 1


def _count(hass: HomeAssistant) -> int:
    state = hass.states.get(COUNT)
    if state is None or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE):
        return -1
    return int(float(state.state))


async def test_settings_switch_and_reset(
    hass: HomeAssistant, maestro: MaestroEmulator
) -> None:
    """Wavelength, trigger level and range reach the meter and read back; statistics switch, reset."""
    await add_gentec_entry(hass, maestro.device)
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.gentec_eo_maestro_wavelength", "value": 532},
        blocking=True,
    )
    assert maestro.meter.wavelength == 532
    assert float(hass.states.get("number.gentec_eo_maestro_wavelength").state) == 532  # type: ignore[union-attr]
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.gentec_eo_maestro_trigger_level", "value": 15.4},
        blocking=True,
    )
    assert maestro.meter.trigger_level == 15.4
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": "select.gentec_eo_maestro_range", "option": "100 mJ"},
        blocking=True,
    )
    assert maestro.meter.range_index == 22
    assert hass.states.get("select.gentec_eo_maestro_range").state == "100 mJ"  # type: ignore[union-attr]
    maestro.meter.max_wavelength = 2000
    with pytest.raises(Exception, match="1064"):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": "number.gentec_eo_maestro_wavelength", "value": 5000},
            blocking=True,
        )
    maestro.start_pulses(20.0)
    await wait_until(hass, lambda: _count(hass) >= 5)
    await hass.services.async_call(
        "switch",
        "turn_off",
        {"entity_id": "switch.gentec_eo_maestro_statistics"},
        blocking=True,
    )
    assert hass.states.get("switch.gentec_eo_maestro_statistics").state == STATE_OFF  # type: ignore[union-attr]
    frozen = _count(hass)
    await hass.services.async_call(
        "button",
        "press",
        {"entity_id": "button.gentec_eo_maestro_reset_statistics"},
        blocking=True,
    )
    await wait_for_state(hass, COUNT, lambda s: s is not None and float(s.state) == 0)
    assert hass.states.get(MINIMUM).state == STATE_UNKNOWN  # type: ignore[union-attr]
    await hass.services.async_call(
        "switch",
        "turn_on",
        {"entity_id": "switch.gentec_eo_maestro_statistics"},
        blocking=True,
    )
    assert hass.states.get("switch.gentec_eo_maestro_statistics").state == STATE_ON  # type: ignore[union-attr]
    await wait_until(hass, lambda: _count(hass) >= 3)
    maestro.stop_pulses()
    assert frozen >= 5


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize(
    "platform",
    [
        Platform.SENSOR,
        Platform.NUMBER,
        Platform.SELECT,
        Platform.SWITCH,
        Platform.BUTTON,
        Platform.EVENT,
    ],
)
async def test_entities_snapshot(
    hass: HomeAssistant,
    maestro: MaestroEmulator,
    platform: Platform,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The meter's entity set: names, units, classes, categories, enabled defaults."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        entry_id="01JGENTEC0000000000000000",
        title="MAESTRO (usb-Gentec-EO_MAESTRO-if00)",
        unique_id="gentec:235792",
        data={
            "source_kind": SOURCE_GENTEC,
            CONF_DEVICE: maestro.device,
            "model": "MAESTRO",
        },
    )
    entry.add_to_hass(hass)
    entry_id = entry.entry_id
    with (
        patch("custom_components.instrument_hub.PLATFORMS", [platform]),
        patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
    ):
        assert await hass.config_entries.async_setup(entry_id)
        await hass.async_block_till_done()
        await snapshot_platform(hass, entity_registry, snapshot, entry_id)
    meter = device_registry.async_get_device_by_identifier(
        (DOMAIN, "gentec-235792"), entry_id
    )
    assert meter is not None
    assert (meter.manufacturer, meter.model, meter.sw_version, meter.serial_number) == (
        "Gentec-EO",
        "MAESTRO with QE25LP-S-MB",
        "1.00.18",
        "235792",
    )


async def test_200_hz_for_10_s_loses_no_pulse_and_bounds_writes(
    hass: HomeAssistant, maestro: MaestroEmulator
) -> None:
    """Streaming at the meter's maximum: the count equals the pulses, state writes stay bounded."""
    await add_gentec_entry(hass, maestro.device)
    writes: dict[str, int] = {READING: 0, PULSE: 0, COUNT: 0}

    @callback
    def count_write(event: Event[EventStateChangedData]) -> None:
        entity_id = event.data["entity_id"]
        if entity_id in writes:
            writes[entity_id] += 1

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, count_write)
    started = time.monotonic()
    maestro.start_pulses(200.0)
    await asyncio.sleep(10)  # the test's subject is ten seconds of pulses
    maestro.stop_pulses()
    elapsed = time.monotonic() - started
    sent = maestro.streamed_values
    await wait_until(hass, lambda: _count(hass) == len(sent), timeout=5)
    unsubscribe()
    assert len(sent) >= 1900
    bound = 10 + 10 * elapsed + 2  # the bucket's burst + 10 writes/s (+ the final ones)
    for entity_id, count in writes.items():
        assert count <= bound, (entity_id, count, bound)
    assert writes[PULSE] >= 10 * (elapsed - 1)
    _LOGGER.warning(
        "200 Hz for %.1f s: %d pulses, writes %s (bound %.0f)",
        elapsed,
        len(sent),
        writes,
        bound,
    )


async def test_unplug_and_replug(hass: HomeAssistant, maestro: MaestroEmulator) -> None:
    """Unplugged: unavailable within 2 s (Connected off); plugged back: the same entities return."""
    await add_gentec_entry(hass, maestro.device)
    entities = len(er.async_get(hass).entities)
    connected = "binary_sensor.maestro_usb_gentec_eo_maestro_if00_connected"
    await wait_for_state(
        hass, connected, lambda s: s is not None and s.state == STATE_ON
    )
    unplugged = time.monotonic()
    await maestro.unplug()
    await wait_for_state(
        hass, READING, lambda s: s is not None and s.state == STATE_UNAVAILABLE
    )
    assert time.monotonic() - unplugged < UNPLUG_BOUND
    assert hass.states.get(connected).state == STATE_OFF  # type: ignore[union-attr]
    await maestro.plug()
    maestro.start_pulses(20.0)
    await wait_for_state(
        hass,
        READING,
        lambda s: s is not None and s.state not in (STATE_UNAVAILABLE, STATE_UNKNOWN),
        timeout=10,
    )
    maestro.stop_pulses()
    assert len(er.async_get(hass).entities) == entities
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_options_reconfigure_diagnostics_and_unload(
    hass: HomeAssistant, maestro: MaestroEmulator, hass_client: ClientSessionGenerator
) -> None:
    """Polling with a gap via the options; the port redacted in diagnostics; unload closes it."""
    entry_id = await add_gentec_entry(hass, maestro.device)
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    result = await hass.config_entries.options.async_init(entry_id)
    assert result["step_id"] == "gentec"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"acquisition": "poll", "measurement_gap": 0.05, "max_writes": 20},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    gap = await wait_for_state(
        hass,
        "number.gentec_eo_maestro_measurement_gap",
        lambda s: s is not None and s.state == "0.05",
    )
    assert gap is not None
    maestro.start_pulses(5.0)
    await wait_until(hass, lambda: _count(hass) >= 3)
    maestro.stop_pulses()
    diagnostics: Any = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    text = str(diagnostics)
    assert maestro.device not in text
    assert "235792" not in text
    assert diagnostics["hub"]["source"]["acquisition"] == "poll"
    # Reconfigure onto the pty's own name: the same head, the same entry.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry_id}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE: maestro.pty_path}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_DEVICE] == maestro.pty_path
    assert await hass.config_entries.async_unload(entry_id)
    await hass.async_block_till_done()


async def test_usb_discovery_confirm(
    hass: HomeAssistant, maestro: MaestroEmulator
) -> None:
    """A plugged-in INTEGRA/MAESTRO: probed, shown with model and firmware, added on confirm."""
    info = UsbServiceInfo(
        device=maestro.device,
        vid="1AD5",
        pid="0300",
        serial_number="M0123",
        manufacturer="Gentec-EO",
        description="INTEGRA",
    )
    with patch(
        "custom_components.instrument_hub.async_setup_entry",
        AsyncMock(return_value=True),
    ):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=info
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "usb_confirm"
        assert result["description_placeholders"] == {
            "model": "MAESTRO",
            "firmware": "1.00.18",
            "detector": "QE25LP-S-MB",
            "port": maestro.device,
        }
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"] == {
            "source_kind": "gentec",
            CONF_DEVICE: maestro.device,
            "model": "MAESTRO",
        }
        # Plugged in again: already configured (by port, before any I/O).
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=info
        )
        assert result["reason"] == "already_configured"
        # A device on that vid:pid that is no meter.
        maestro.meter.version_reply = "?"
        other = UsbServiceInfo(
            device=maestro.pty_path,
            vid="1AD5",
            pid="0300",
            serial_number=None,
            manufacturer=None,
            description=None,
        )
        for entry in hass.config_entries.async_entries(DOMAIN):
            await hass.config_entries.async_remove(entry.entry_id)
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USB}, data=other
        )
        assert result["reason"] == "not_gentec"


def test_option_checks_beyond_the_form() -> None:
    """Options stored by other means are checked as the form would."""
    validate = gentec_kind.validate_options
    assert validate(
        {"acquisition": "stream", "measurement_gap": 0.1, "max_writes": 10}
    ) == {
        "acquisition": "stream",
        "measurement_gap": 0.1,
        "max_writes": 10.0,
    }
    for bad, error in (
        (
            {"acquisition": "burst", "measurement_gap": 0.1, "max_writes": 10},
            "acquisition",
        ),
        (
            {"acquisition": "poll", "measurement_gap": 5.0, "max_writes": 10},
            "measurement_gap",
        ),
        (
            {"acquisition": "poll", "measurement_gap": 0.1, "max_writes": 0},
            "max_writes",
        ),
    ):
        with pytest.raises(FlowFormError) as caught:
            validate(bad)
        assert error in caught.value.errors
    assert gentec_kind.port_label("socket://10.0.0.5:4001") == "10.0.0.5:4001"
    assert gentec_kind.port_label("/dev/ttyACM0") == "ttyACM0"
