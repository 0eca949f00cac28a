"""indilib's indiserver 1.9.9 and its simulator drivers, as an astronomer adds them to Home Assistant.

Every server runs on 127.0.0.1 (an ephemeral port), its drivers with a private HOME, and after each test nothing
of it is left running (tests/indilib.py checks with ps). One test waits for a real 70 s exposure: it is marked
``slow`` (``scripts/test -m "not slow"`` leaves it out).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
import logging
import os
from pathlib import Path
import re
import signal
import time
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
import pytest

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.sources.indi import client as client_module
from custom_components.instrument_hub.sources.indi.mapping import DEVICE_STATE_CHANNEL

from .helpers import (
    SOURCE_INDI,
    indi_entry,
    set_property,
    state_is,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
    wait_until,
)
from .indilib import CCD, GPS, TELESCOPE, WEATHER, IndiServer, indiserver_fixture
from .stall_proxy import StallProxy

pytestmark = pytest.mark.peer
_LOGGER = logging.getLogger(__name__)

MOUNT = "Telescope Simulator"
CAMERA = "CCD Simulator"
WEATHER_STATION = "Weather Simulator"

observatory = indiserver_fixture("observatory")
telescope = indiserver_fixture("telescope", [TELESCOPE])
camera = indiserver_fixture("camera", [CCD])
weather = indiserver_fixture("weather", [WEATHER, GPS])


async def _add_through_the_flow(hass: HomeAssistant, port: int) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": SOURCE_INDI}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED
    return str(entry.entry_id)


async def _entity(
    hass: HomeAssistant, entry_id: str, platform: str, device: str, key: str
) -> str:
    return await wait_for_entity(hass, platform, f"{entry_id}:{device}:{key}")


LAST_DEFINED = {
    MOUNT: ("number", "GUIDE_RATE.GUIDE_RATE_WE"),
    CAMERA: ("text", "FILTER_NAME.FILTER_SLOT_NAME_1"),
    WEATHER_STATION: ("number", "WEATHER_CONTROL.Weather"),
    "Focuser Simulator": ("number", "DELAY.DELAY_VALUE"),
    "Filter Simulator": ("text", "FILTER_NAME.FILTER_SLOT_NAME_1"),
    "GPS Simulator": ("number", "GPS_REFRESH_PERIOD.PERIOD"),
}
"""The (enabled) property each simulator defines last when it connects: once it is there, all of them are."""


async def _connect(hass: HomeAssistant, entry_id: str, device: str, key: str) -> str:
    """Press Connect on a device and wait for a property it defines only once connected; return that entity."""
    connection = await _entity(hass, entry_id, "select", device, "CONNECTION")
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": connection, "option": "Connect"},
        blocking=True,
    )
    platform = "button" if "ABORT" in key else "number"
    entity_id = await _entity(hass, entry_id, platform, device, key)
    await wait_for_state(hass, entity_id, state_not(STATE_UNAVAILABLE))
    if (last := LAST_DEFINED.get(device)) is not None:
        await _entity(hass, entry_id, last[0], device, last[1])
        await hass.async_block_till_done()
    return entity_id


def _attribute(hass: HomeAssistant, entity_id: str, name: str) -> Any:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.attributes.get(name)


def _float(hass: HomeAssistant, entity_id: str) -> float:
    return float(state_of(hass, entity_id))


class _History:
    """Every state an entity takes while the test runs (a listener, no polling)."""

    def __init__(self, hass: HomeAssistant, entity_id: str) -> None:
        self.states: list[State] = []

        @callback
        def changed(event: Event[EventStateChangedData]) -> None:
            if (new := event.data["new_state"]) is not None:
                self.states.append(new)

        self.stop = async_track_state_change_event(hass, [entity_id], changed)

    def attribute(self, name: str) -> list[Any]:
        values = [state.attributes.get(name) for state in self.states]
        return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def attribute_is(name: str, value: object) -> Callable[[State | None], bool]:
    """Predicate: the entity's attribute ``name`` is ``value``."""
    return lambda state: state is not None and state.attributes.get(name) == value


# --------------------------------------------------------------------------------------------------


async def test_the_observatory_through_the_flow(
    hass: HomeAssistant, observatory: IndiServer
) -> None:
    """Seven simulators: seven devices with their driver as model; names unique in each device; loopback only."""
    assert observatory.listening_addresses() == ["127.0.0.1"]
    entry_id = await _add_through_the_flow(hass, observatory.port)
    for device, key in (
        (MOUNT, "EQUATORIAL_EOD_COORD.RA"),
        (CAMERA, "CCD_EXPOSURE.CCD_EXPOSURE_VALUE"),
        (WEATHER_STATION, "WEATHER_TEMPERATURE.MIN_OK"),
    ):
        await _connect(hass, entry_id, device, key)
    for device, key in (
        ("Focuser Simulator", "ABS_FOCUS_POSITION.FOCUS_ABSOLUTE_POSITION"),
        ("Dome Simulator", "ABS_DOME_POSITION.DOME_ABSOLUTE_POSITION"),
        ("Filter Simulator", "FILTER_SLOT.FILTER_SLOT_VALUE"),
        ("GPS Simulator", "GPS_REFRESH_PERIOD.PERIOD"),
    ):
        await _connect(hass, entry_id, device, key)
    await hass.async_block_till_done()

    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    models = {d.name: d.model for d in devices if d.via_device_id is not None}
    assert models == {
        name: name
        for name in (
            MOUNT,
            CAMERA,
            WEATHER_STATION,
            "Focuser Simulator",
            "Dome Simulator",
            "Filter Simulator",
            "GPS Simulator",
        )
    }
    assert all(d.manufacturer is None for d in devices if d.via_device_id is not None)

    registry = er.async_get(hass)
    entries = er.async_entries_for_config_entry(registry, entry_id)
    names = Counter((e.device_id, e.original_name) for e in entries)
    assert [name for name, count in names.items() if count > 1] == []
    # Home Assistant made no "_2" entity ids: every trailing number is the name's own ("Preset 2").
    suffixed = [
        e.entity_id
        for e in entries
        if re.search(r"_\d+$", e.entity_id)
        and not re.search(r"\d$", e.original_name or "")
    ]
    assert suffixed == []
    camera_names = [
        e.original_name
        for e in entries
        if e.unique_id.startswith(f"{entry_id}:{CAMERA}:")
    ]
    assert len(camera_names) == len(set(camera_names)) > 100
    for frame in ("CCD_FRAME", "GUIDER_FRAME", "CCD_STREAM_FRAME"):
        entry = registry.async_get_entity_id(
            "number", DOMAIN, f"{entry_id}:{CAMERA}:{frame}.X"
        )
        assert entry is not None
    by_uid = {e.unique_id.split(":", 1)[1]: e for e in entries}
    assert by_uid[f"{CAMERA}:CCD_FRAME.X"].original_name == "Image Settings Frame Left"
    assert by_uid[f"{CAMERA}:GUIDER_FRAME.X"].original_name == "Guider Head Frame Left"
    assert (
        by_uid[f"{CAMERA}:CCD_STREAM_FRAME.X"].original_name == "Streaming Frame Left"
    )
    # Driver options are configuration, a simulator's knobs and video streaming start disabled.
    camera_entries = [
        e for e in entries if e.unique_id.startswith(f"{entry_id}:{CAMERA}:")
    ]
    enabled = [e for e in camera_entries if e.disabled_by is None]
    primary = [e for e in enabled if e.entity_category is None]
    assert len(enabled) < len(camera_entries)
    assert by_uid[f"{CAMERA}:CCD_VIDEO_STREAM"].disabled_by is not None
    assert by_uid[f"{CAMERA}:DEBUG"].disabled_by is not None
    assert by_uid[f"{CAMERA}:CONFIG_PROCESS.CONFIG_SAVE"].entity_category == "config"
    assert by_uid[f"{CAMERA}:DRIVER_INFO.DRIVER_NAME"].entity_category == "diagnostic"
    _LOGGER.info(
        "%d entities (%d enabled); the camera: %d, %d enabled, %d primary",
        len(entries),
        len([e for e in entries if e.disabled_by is None]),
        len(camera_entries),
        len(enabled),
        len(primary),
    )


async def test_the_port_is_set_before_connecting(
    hass: HomeAssistant, telescope: IndiServer
) -> None:
    """Disconnected, the mount's port and other settings are usable; it connects with the port set."""
    entry_id = await _add_through_the_flow(hass, telescope.port)
    port = await _entity(hass, entry_id, "text", MOUNT, "DEVICE_PORT.PORT")
    baud = await _entity(hass, entry_id, "select", MOUNT, "DEVICE_BAUD_RATE")
    assert state_of(hass, port) == "/dev/ttyUSB0"
    assert state_of(hass, baud) == "9600"

    await hass.services.async_call(
        "text", "set_value", {"entity_id": port, "value": "/dev/ttyACM7"}, blocking=True
    )
    assert state_of(hass, port) == "/dev/ttyACM7"
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": baud, "option": "115200"},
        blocking=True,
    )
    assert state_of(hass, baud) == "115200"

    ra = await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    assert (
        state_of(hass, _entity_id(hass, entry_id, "select", MOUNT, "CONNECTION"))
        == "Connect"
    )
    assert state_of(hass, port) == "/dev/ttyACM7"
    assert state_of(hass, ra) not in (STATE_UNAVAILABLE, STATE_UNKNOWN)

    # Disconnected again: what needs the hardware goes, the settings stay usable.
    connection = _entity_id(hass, entry_id, "select", MOUNT, "CONNECTION")
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": connection, "option": "Disconnect"},
        blocking=True,
    )
    await wait_for_state(hass, ra, state_is(STATE_UNAVAILABLE))
    await wait_for_state(hass, port, state_is("/dev/ttyACM7"))


def _entity_id(
    hass: HomeAssistant, entry_id: str, platform: str, device: str, key: str
) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        platform, DOMAIN, f"{entry_id}:{device}:{key}"
    )
    assert entity_id is not None, key
    return entity_id


async def test_a_slew_is_busy_then_ok(
    hass: HomeAssistant, telescope: IndiServer
) -> None:
    """During a slew the coordinates' property is Busy (on the entities and the device's state), Ok after."""
    entry_id = await _add_through_the_flow(hass, telescope.port)
    ra = await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    dec = _entity_id(hass, entry_id, "number", MOUNT, "EQUATORIAL_EOD_COORD.DEC")
    device_state = _entity_id(hass, entry_id, "sensor", MOUNT, DEVICE_STATE_CHANNEL)
    await wait_for_state(hass, dec, lambda s: s is not None and float(s.state) > 89)
    ra_history = _History(hass, ra)
    device_history = _History(hass, device_state)

    # set_property with a timeout waits through the Busy phase for the finish.
    answer = await set_property(
        hass,
        entry_id,
        MOUNT,
        "EQUATORIAL_EOD_COORD",
        {"RA": _float(hass, ra), "DEC": 85},
        timeout=30,
    )
    ra_history.stop()
    device_history.stop()
    assert answer is not None
    assert answer["state"] == "Ok"
    assert abs(_float(hass, dec) - 85) < 0.01
    assert "busy" in ra_history.attribute("property_state")
    assert ra_history.attribute("property_state")[-1] == "ok"
    # The device's state lists what is busy: the slew, then (the mount now tracks) only the tracking.
    busy = [s.attributes["busy"] for s in device_history.states]
    assert any("EQUATORIAL_EOD_COORD" in names for names in busy)
    final = hass.states.get(device_state)
    assert final is not None
    assert "EQUATORIAL_EOD_COORD" not in final.attributes["busy"]
    _LOGGER.info("after the slew the mount is %s: %s", final.state, final.attributes)


async def test_abort_stops_a_slew_short_of_its_target(
    hass: HomeAssistant, telescope: IndiServer
) -> None:
    """A slew returns once accepted (Busy); the Abort button stops the mount before the target."""
    entry_id = await _add_through_the_flow(hass, telescope.port)
    ra = await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    dec = _entity_id(hass, entry_id, "number", MOUNT, "EQUATORIAL_EOD_COORD.DEC")
    abort = _entity_id(hass, entry_id, "button", MOUNT, "TELESCOPE_ABORT_MOTION.ABORT")
    # Just connected, the driver defines the coordinates as 0 before it reports the pole it starts at.
    await wait_for_state(hass, dec, lambda s: s is not None and float(s.state) > 89)
    target_ra = (_float(hass, ra) + 6) % 24

    started = time.monotonic()
    answer = await set_property(
        hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD", {"RA": target_ra, "DEC": -60}
    )
    assert answer is not None
    assert answer["state"] == "Busy"
    assert (
        time.monotonic() - started < 5
    )  # accepted: the call does not wait for the slew
    await wait_for_state(hass, dec, lambda s: s is not None and float(s.state) < 85)

    await hass.services.async_call(
        "button", "press", {"entity_id": abort}, blocking=True
    )
    assert state_of(hass, abort) not in (
        STATE_UNKNOWN,
        STATE_UNAVAILABLE,
    )  # pressed now
    await wait_for_state(hass, ra, lambda s: attribute_is("property_state", "idle")(s))
    stopped_at = _float(hass, dec)
    assert stopped_at > -50  # it stopped short of -60
    # And it stays there (not tracking, the declination no longer changes).
    await asyncio.sleep(
        0.6
    )  # two of the mount's 250 ms polls: a slew would have moved 3°
    assert abs(_float(hass, dec) - stopped_at) < 0.01


async def test_an_alerts_reason_reaches_the_user(
    hass: HomeAssistant, camera: IndiServer
) -> None:
    """The camera refuses a 5000 s exposure with Alert and an [ERROR] message: the error carries it."""
    entry_id = await _add_through_the_flow(hass, camera.port)
    await _connect(hass, entry_id, CAMERA, "CCD_EXPOSURE.CCD_EXPOSURE_VALUE")
    messages = _entity_id(hass, entry_id, "event", CAMERA, "_messages")
    with pytest.raises(HomeAssistantError) as err:
        await set_property(
            hass, entry_id, CAMERA, "CCD_EXPOSURE", {"CCD_EXPOSURE_VALUE": 5000}
        )
    assert err.value.translation_key == "command_rejected"
    assert "Requested exposure value (5000) seconds out of bounds" in str(err.value)
    assert "[ERROR]" not in str(err.value)
    state = await wait_for_state(
        hass,
        messages,
        lambda s: s is not None and "5000" in str(s.attributes.get("message")),
    )
    assert state is not None
    assert state.attributes["event_type"] == "error"


async def test_the_weather_warning_threshold_is_a_percentage(
    hass: HomeAssistant, weather: IndiServer
) -> None:
    """The weather's standard parameters carry their units: "% for Warning" is %, the limits °C, not guessed."""
    entry_id = await _add_through_the_flow(hass, weather.port)
    minimum = await _connect(
        hass, entry_id, WEATHER_STATION, "WEATHER_TEMPERATURE.MIN_OK"
    )
    warning = _entity_id(
        hass, entry_id, "number", WEATHER_STATION, "WEATHER_TEMPERATURE.PERC_WARN"
    )
    temperature = await _entity(
        hass,
        entry_id,
        "sensor",
        WEATHER_STATION,
        "WEATHER_PARAMETERS.WEATHER_TEMPERATURE",
    )
    wind = await _entity(
        hass,
        entry_id,
        "sensor",
        WEATHER_STATION,
        "WEATHER_PARAMETERS.WEATHER_WIND_SPEED",
    )
    assert _attribute(hass, warning, "unit_of_measurement") == "%"
    assert _attribute(hass, warning, "device_class") is None
    assert (
        _attribute(hass, minimum, "unit_of_measurement"),
        _attribute(hass, minimum, "device_class"),
    ) == ("°C", "temperature")
    assert (
        _attribute(hass, temperature, "unit_of_measurement"),
        _attribute(hass, temperature, "device_class"),
    ) == ("°C", "temperature")
    assert (
        _attribute(hass, wind, "unit_of_measurement"),
        _attribute(hass, wind, "device_class"),
    ) == ("km/h", "wind_speed")
    state = hass.states.get(warning)
    assert state is not None
    assert (
        state.attributes["friendly_name"]
        == "Weather Simulator Temperature % for Warning"
    )


async def test_ra_is_settable_to_the_arcsecond(
    hass: HomeAssistant, telescope: IndiServer
) -> None:
    """RA and DEC (%010.6m, d:mm:ss) step by 0.0001: finer than a second of RA and an arc-second of DEC."""
    entry_id = await _add_through_the_flow(hass, telescope.port)
    ra = await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    dec = _entity_id(hass, entry_id, "number", MOUNT, "EQUATORIAL_EOD_COORD.DEC")
    on_set = _entity_id(hass, entry_id, "select", MOUNT, "ON_COORD_SET")
    for entity_id, unit in ((ra, "h"), (dec, "°")):
        assert _attribute(hass, entity_id, "step") == 0.0001
        assert _attribute(hass, entity_id, "unit_of_measurement") == unit
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": on_set, "option": "Sync"},
        blocking=True,
    )

    # 5:30:01 is 5.50028 h; the mount syncs to exactly what was sent (its clock then moves RA on).
    await hass.services.async_call(
        "number", "set_value", {"entity_id": ra, "value": 5.5003}, blocking=True
    )
    assert abs(_float(hass, ra) - 5.5003) < 1 / 3600
    await hass.services.async_call(
        "number", "set_value", {"entity_id": dec, "value": 45.0003}, blocking=True
    )
    assert abs(_float(hass, dec) - 45.0003) < 1e-6  # 0.36″: within the arc-second


async def test_four_short_frames_give_four_files(
    hass: HomeAssistant, camera: IndiServer, tmp_path: Path
) -> None:
    """Four 0.01 s exposures started from the entity: four FITS files, each its own."""
    hass.config.config_dir = str(tmp_path)
    entry_id = await _add_through_the_flow(hass, camera.port)
    exposure = await _connect(hass, entry_id, CAMERA, "CCD_EXPOSURE.CCD_EXPOSURE_VALUE")
    image = await _entity(hass, entry_id, "event", CAMERA, "CCD1.CCD1")
    paths: list[str] = []
    for _ in range(4):
        before = state_of(hass, image)
        await hass.services.async_call(
            "number", "set_value", {"entity_id": exposure, "value": 0.01}, blocking=True
        )
        state = await wait_for_state(hass, image, state_not(before), timeout=30)
        assert state is not None
        assert state.attributes["format"] == ".fits"
        paths.append(state.attributes["path"])
    assert len(set(paths)) == 4
    for path in paths:
        data = Path(path).read_bytes()
        assert data.startswith(b"SIMPLE  =")
        assert len(data) % 2880 == 0  # whole FITS blocks: nothing cut off


@pytest.mark.slow
async def test_a_seventy_second_exposure_from_an_entity(
    hass: HomeAssistant, camera: IndiServer, tmp_path: Path
) -> None:
    """SLOW (about 75 s): an exposure longer than the 60 s cap returns at once (Busy) and its file arrives."""
    hass.config.config_dir = str(tmp_path)
    entry_id = await _add_through_the_flow(hass, camera.port)
    exposure = await _connect(hass, entry_id, CAMERA, "CCD_EXPOSURE.CCD_EXPOSURE_VALUE")
    image = await _entity(hass, entry_id, "event", CAMERA, "CCD1.CCD1")
    gain = _entity_id(hass, entry_id, "number", CAMERA, "CCD_GAIN.GAIN")

    started = time.monotonic()
    await hass.services.async_call(
        "number", "set_value", {"entity_id": exposure, "value": 70}, blocking=True
    )
    assert time.monotonic() - started < 5
    assert _attribute(hass, exposure, "property_state") == "busy"
    # Other properties of the camera are not held up by the exposure.
    await hass.services.async_call(
        "number", "set_value", {"entity_id": gain, "value": 50}, blocking=True
    )
    assert state_of(hass, gain) == "50.0"

    state = await wait_for_state(hass, image, state_not(STATE_UNKNOWN), timeout=100)
    assert state is not None
    assert time.monotonic() - started >= 69
    assert Path(state.attributes["path"]).read_bytes().startswith(b"SIMPLE  =")
    await wait_for_state(hass, exposure, attribute_is("property_state", "ok"))


async def test_a_stalled_server_is_noticed_and_recovers(
    hass: HomeAssistant,
    telescope: IndiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a proxy that stops forwarding: unavailable within the bound; back when it forwards again.

    The bound is silence + probe (30 s + 10 s by default; here 1.5 s + 1 s so the test is short).
    """
    monkeypatch.setattr(client_module, "SILENCE_TIMEOUT", 1.5)
    monkeypatch.setattr(client_module, "PROBE_TIMEOUT", 1.0)
    bound = 2.5
    proxy = StallProxy(telescope.port)
    await proxy.start()
    try:
        entry = indi_entry(hass, proxy.port)
        assert await hass.config_entries.async_setup(entry.entry_id)
        ra = await _connect(hass, entry.entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
        link = er.async_get(hass).async_get_entity_id(
            "binary_sensor", DOMAIN, f"{entry.entry_id}:_link"
        )
        assert link is not None

        stalled = time.monotonic()
        proxy.stall()
        await wait_for_state(hass, ra, state_is(STATE_UNAVAILABLE), timeout=bound + 2)
        noticed = time.monotonic() - stalled
        assert noticed <= bound + 1.0
        assert state_of(hass, link) == "off"
        # Still stalled: reconnecting reaches only the proxy; nothing answers, the link stays down.
        await proxy.wait_accepted(2)
        assert state_of(hass, link) == "off"

        resumed = time.monotonic()
        proxy.resume()
        await wait_for_state(hass, ra, state_not(STATE_UNAVAILABLE), timeout=15)
        assert state_of(hass, link) == "on"
        _LOGGER.info(
            "stall noticed after %.1f s (bound %.1f s); back %.1f s after the stall ended",
            noticed,
            bound,
            time.monotonic() - resumed,
        )
    finally:
        await proxy.close()


async def test_indiserver_killed_and_restarted(
    hass: HomeAssistant, telescope: IndiServer
) -> None:
    """SIGKILL to indiserver: unavailable at once; its drivers gone; restarted: the same entities come back."""
    entry_id = await _add_through_the_flow(hass, telescope.port)
    ra = await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    port = _entity_id(hass, entry_id, "text", MOUNT, "DEVICE_PORT.PORT")
    registry = er.async_get(hass)
    registered = sorted(
        e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
    )
    drivers = telescope.note_drivers()
    assert len(drivers) == 1

    killed = time.monotonic()
    os.kill(telescope.pid, signal.SIGKILL)
    await wait_until(
        hass,
        lambda: all(state_of(hass, e) == STATE_UNAVAILABLE for e in (ra, port)),
        timeout=2.0,
    )
    unavailable_after = time.monotonic() - killed
    await hass.async_add_executor_job(
        telescope.stop
    )  # reaps indiserver and the driver it left
    assert telescope.leftovers() == []

    restarted = time.monotonic()
    await hass.async_add_executor_job(telescope.restart)
    await wait_for_state(hass, port, state_not(STATE_UNAVAILABLE), timeout=30)
    back_after = time.monotonic() - restarted
    # The driver restarted disconnected: what needs the hardware waits for Connect.
    assert state_of(hass, ra) == STATE_UNAVAILABLE
    await _connect(hass, entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    assert (
        sorted(
            e.entity_id for e in er.async_entries_for_config_entry(registry, entry_id)
        )
        == registered
    )
    _LOGGER.info(
        "unavailable %.0f ms after SIGKILL; back %.1f s after the restart began",
        unavailable_after * 1000,
        back_after,
    )
