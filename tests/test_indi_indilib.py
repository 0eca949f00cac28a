"""indilib's telescope and weather simulators, replayed from a capture: what a user sees, pinned.

``fixtures/indi/indilib_telescope_weather.xml``: the definitions indiserver 1.9.9 (Debian indi-bin) sent a second
client's getProperties with ``indi_simulator_telescope`` and ``indi_simulator_weather`` both connected (HOME
replaced by /home/observer). The scripted server replays them; the real server is in test_indilib_peer.py.
"""

from __future__ import annotations

import asyncio
from unittest.mock import patch

from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util.unit_system import US_CUSTOMARY_SYSTEM
import pytest
from pytest_homeassistant_custom_component.common import snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.hub import Hub
from custom_components.instrument_hub.kinds.indi import CONF_UNITS

from .fake_indi import CAPTURES, WAIT_SECONDS, FakeIndiServer
from .helpers import (
    indi_entry,
    setup_indi_entry,
    state_not,
    state_of,
    wait_for_entity,
    wait_for_state,
)

CAPTURE = (CAPTURES / "indilib_telescope_weather.xml").read_text(encoding="utf-8")
MOUNT = "Telescope Simulator"
WEATHER = "Weather Simulator"
ENTRY_ID = "01JINDILIBCAPTURE000000000"
QUIET_QUEUE = {
    "depth": 0,
    "rate": 0.0,
    "wait_time": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0},
}


def _uid(entry_id: str, device: str, key: str) -> str:
    return f"{entry_id}:{device}:{key}"


def _answer(device: str, vector: str, kind: str = "Switch", state: str = "Ok") -> str:
    return f'<set{kind}Vector device="{device}" name="{vector}" state="{state}"/>'


@pytest.mark.usefixtures("all_entities_enabled")
@pytest.mark.parametrize(
    "platform",
    [
        Platform.BUTTON,
        Platform.EVENT,
        Platform.NUMBER,
        Platform.SELECT,
        Platform.SENSOR,
        Platform.SWITCH,
        Platform.TEXT,
    ],
)
async def test_entities_of_the_captured_simulators(
    hass: HomeAssistant,
    indi_server: FakeIndiServer,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """Every entity of the telescope and weather simulators: names, units, categories, states, attributes."""
    indi_server.definitions = [CAPTURE]
    # GUIDE_RATE is the capture's last definition: once it is announced, every channel is defined. The
    # announcement is the hub's dispatcher signal (a batch per platform and loop pass), sent whichever
    # platforms are loaded.
    last_defined = asyncio.Event()

    @callback
    def announced(channels: list[tuple[str, str]]) -> None:
        # The hub announces the channels of a loop pass in one batch per platform.
        if (MOUNT, "GUIDE_RATE.GUIDE_RATE_WE") in channels:
            last_defined.set()

    unsubscribe = async_dispatcher_connect(
        hass, f"{DOMAIN}_{ENTRY_ID}_new_{Platform.NUMBER}", announced
    )
    try:
        with (
            patch("custom_components.instrument_hub.PLATFORMS", [platform]),
            patch.object(Hub, "event_queue_stats", return_value=QUIET_QUEUE),
        ):
            # A fixed entry id: the unique ids in the snapshot are the same in every run.
            entry = indi_entry(hass, indi_server.port, entry_id=ENTRY_ID)
            # And a title without the ephemeral port: entity ids of the server's own entities too.
            hass.config_entries.async_update_entry(entry, title="INDI server")
            assert await hass.config_entries.async_setup(entry.entry_id)
            async with asyncio.timeout(WAIT_SECONDS):
                await last_defined.wait()
            await entry.runtime_data.async_flush()
            await hass.async_block_till_done()
            await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)
    finally:
        unsubscribe()


async def test_command_switches_are_buttons(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Abort is a button (ABORT On); CONFIG_PROCESS's Save is one (Save On, the others Off)."""
    indi_server.definitions = [CAPTURE]
    indi_server.reply_rules.append(
        lambda element: _answer(MOUNT, "TELESCOPE_ABORT_MOTION").encode()
        if b"TELESCOPE_ABORT_MOTION" in element
        else _answer(MOUNT, "CONFIG_PROCESS").encode()
        if b"CONFIG_PROCESS" in element
        else None
    )
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    abort = await wait_for_entity(
        hass, "button", _uid(entry_id, MOUNT, "TELESCOPE_ABORT_MOTION.ABORT")
    )
    save = await wait_for_entity(
        hass, "button", _uid(entry_id, MOUNT, "CONFIG_PROCESS.CONFIG_SAVE")
    )
    assert state_of(hass, abort) == STATE_UNKNOWN  # never pressed
    await hass.services.async_call(
        "button", "press", {"entity_id": abort}, blocking=True
    )
    await hass.services.async_call(
        "button", "press", {"entity_id": save}, blocking=True
    )
    assert state_of(hass, abort) not in (STATE_UNKNOWN, STATE_UNAVAILABLE)
    sent = [e for e in indi_server.all_received() if e.startswith(b"<new")]
    assert sent == [
        f'<newSwitchVector device="{MOUNT}" name="TELESCOPE_ABORT_MOTION"><oneSwitch name="ABORT">On</oneSwitch></newSwitchVector>'.encode(),
        f'<newSwitchVector device="{MOUNT}" name="CONFIG_PROCESS"><oneSwitch name="CONFIG_LOAD">Off</oneSwitch>'
        '<oneSwitch name="CONFIG_DEFAULT">Off</oneSwitch><oneSwitch name="CONFIG_PURGE">Off</oneSwitch>'
        '<oneSwitch name="CONFIG_SAVE">On</oneSwitch></newSwitchVector>'.encode(),
    ]
    registry = er.async_get(hass)
    assert (
        registry.async_get_entity_id(
            "switch", DOMAIN, _uid(entry_id, MOUNT, "TELESCOPE_ABORT_MOTION.ABORT")
        )
        is None
    )


async def test_entities_of_earlier_versions_are_replaced_not_left_behind(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The Abort switch and the Configuration select an earlier version registered go; the buttons replace them."""
    indi_server.definitions = [CAPTURE]
    entry = indi_entry(hass, indi_server.port)
    registry = er.async_get(hass)
    old_switch = registry.async_get_or_create(
        "switch",
        DOMAIN,
        _uid(entry.entry_id, MOUNT, "TELESCOPE_ABORT_MOTION.ABORT"),
        config_entry=entry,
    )
    old_select = registry.async_get_or_create(
        "select",
        DOMAIN,
        _uid(entry.entry_id, MOUNT, "CONFIG_PROCESS"),
        config_entry=entry,
    )
    kept = registry.async_get_or_create(
        "select",
        DOMAIN,
        _uid(entry.entry_id, MOUNT, "ON_COORD_SET"),
        config_entry=entry,
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await wait_for_entity(
        hass, "button", _uid(entry.entry_id, MOUNT, "CONFIG_PROCESS.CONFIG_LOAD")
    )
    await wait_for_entity(
        hass, "button", _uid(entry.entry_id, MOUNT, "TELESCOPE_ABORT_MOTION.ABORT")
    )
    assert registry.async_get(old_switch.entity_id) is None
    assert registry.async_get(old_select.entity_id) is None
    assert registry.async_get(kept.entity_id) is not None
    assert state_of(hass, kept.entity_id) == "Track"  # the same entity, still in use


@pytest.mark.usefixtures("all_entities_enabled")
async def test_write_only_properties_show_no_stale_value(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The mount model (wo numbers) is unknown even when the driver echoes it; its type is a button per kind."""
    indi_server.definitions = [CAPTURE]
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    model = await wait_for_entity(
        hass, "number", _uid(entry_id, MOUNT, "MOUNT_MODEL.MM_IH")
    )
    gem = await wait_for_entity(
        hass, "button", _uid(entry_id, MOUNT, "MOUNT_TYPE.EQ_GEM")
    )
    assert state_of(hass, model) == STATE_UNKNOWN
    assert state_of(hass, gem) == STATE_UNKNOWN
    await indi_server.push(
        f'<setNumberVector device="{MOUNT}" name="MOUNT_MODEL" state="Ok"><oneNumber name="MM_IH">1.5</oneNumber></setNumberVector>'
    )
    await wait_for_state(
        hass,
        model,
        lambda s: s is not None and s.attributes.get("property_state") == "ok",
    )
    assert state_of(hass, model) == STATE_UNKNOWN


async def test_units_given_in_the_options_win(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A user's unit and device class for a member (or a whole property, or none at all) are applied."""
    indi_server.definitions = [CAPTURE]
    units = "\n".join(
        (
            f"{WEATHER} / WEATHER_PARAMETERS / WEATHER_WIND_SPEED = Bft",
            f"{MOUNT} / TELESCOPE_INFO = in, distance",
            f"{MOUNT} / POLLING_PERIOD / PERIOD_MS =",
        )
    )
    entry_id = (await setup_indi_entry(hass, indi_server, {CONF_UNITS: units})).entry_id
    wind = await wait_for_entity(
        hass, "sensor", _uid(entry_id, WEATHER, "WEATHER_PARAMETERS.WEATHER_WIND_SPEED")
    )
    aperture = await wait_for_entity(
        hass, "number", _uid(entry_id, MOUNT, "TELESCOPE_INFO.TELESCOPE_APERTURE")
    )
    polling = await wait_for_entity(
        hass, "number", _uid(entry_id, MOUNT, "POLLING_PERIOD.PERIOD_MS")
    )
    gust = await wait_for_entity(
        hass, "sensor", _uid(entry_id, WEATHER, "WEATHER_PARAMETERS.WEATHER_WIND_GUST")
    )

    def unit(entity_id: str) -> object:
        state = hass.states.get(entity_id)
        assert state is not None
        return state.attributes.get("unit_of_measurement"), state.attributes.get(
            "device_class"
        )

    assert unit(wind) == ("Bft", None)
    assert unit(gust) == (
        "km/h",
        "wind_speed",
    )  # indilib's own unit where nothing is given
    assert unit(aperture) == ("in", "distance")
    assert unit(polling) == (None, None)


async def test_text_that_xml_cannot_carry_is_refused_before_sending(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A NUL, an ESC or a lone surrogate in a text: a translated error, nothing sent, the link stays."""
    indi_server.definitions = [CAPTURE]
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    port = await wait_for_entity(
        hass, "text", _uid(entry_id, MOUNT, "DEVICE_PORT.PORT")
    )
    for bad in ("/dev/tty\x00", "a\x1bb", "\ud800"):
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(
                "text", "set_value", {"entity_id": port, "value": bad}, blocking=True
            )
        assert err.value.translation_key == "invalid_value"
    assert not [e for e in indi_server.all_received() if e.startswith(b"<new")]
    assert len(indi_server.connections) == 1


async def test_a_reload_does_not_fire_old_messages_again(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A definition repeats the property's last message: after a reload it is not a new event."""
    with_message = CAPTURE.replace(
        'name="TELESCOPE_PARK" label="Parking"',
        'name="TELESCOPE_PARK" label="Parking" message="[INFO] Mount is unparked."',
        1,
    )
    assert with_message != CAPTURE
    indi_server.definitions = [with_message]
    entry = await setup_indi_entry(hass, indi_server)
    messages = await wait_for_entity(
        hass, "event", _uid(entry.entry_id, MOUNT, "_messages")
    )
    await entry.runtime_data.async_flush()
    assert state_of(hass, messages) == STATE_UNKNOWN
    assert await hass.config_entries.async_reload(entry.entry_id)
    # Back: the server answered the new connection's getProperties with the same definitions.
    park = _uid(entry.entry_id, MOUNT, "TELESCOPE_PARK")
    await wait_for_state(
        hass, await wait_for_entity(hass, "select", park), state_not(STATE_UNAVAILABLE)
    )
    await entry.runtime_data.async_flush()
    await hass.async_block_till_done()
    assert state_of(hass, messages) == STATE_UNKNOWN

    # A new message does fire, with indilib's level and without its prefix.
    await indi_server.push(
        f'<message device="{MOUNT}" timestamp="2026-12-01T21:00:00" message="[WARNING] Mount is parked."/>'
    )
    state = await wait_for_state(hass, messages, state_not(STATE_UNKNOWN))
    assert state is not None
    assert (state.attributes["event_type"], state.attributes["message"]) == (
        "warning",
        "Mount is parked.",
    )


async def test_the_property_state_is_shown_and_summarised(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """A vector's state is an attribute of its entities; the device's state sensor shows the most serious."""
    indi_server.definitions = [CAPTURE]
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    ra = await wait_for_entity(
        hass, "number", _uid(entry_id, MOUNT, "EQUATORIAL_EOD_COORD.RA")
    )
    summary = await wait_for_entity(hass, "sensor", _uid(entry_id, MOUNT, ".state"))
    await indi_server.push(
        f'<setNumberVector device="{MOUNT}" name="EQUATORIAL_EOD_COORD" state="Busy"/>'
    )
    state = await wait_for_state(
        hass, summary, lambda s: s is not None and s.state == "busy"
    )
    assert state is not None
    assert "EQUATORIAL_EOD_COORD" in state.attributes["busy"]
    ra_state = hass.states.get(ra)
    assert ra_state is not None
    assert ra_state.attributes["property_state"] == "busy"
    await indi_server.push(
        f'<setNumberVector device="{MOUNT}" name="EQUATORIAL_EOD_COORD" state="Alert"/>'
    )
    state = await wait_for_state(
        hass, summary, lambda s: s is not None and s.state == "alert"
    )
    assert state is not None
    assert state.attributes["alert"] == ["EQUATORIAL_EOD_COORD"]
    # While the device is disconnected its summary stays available (a failed connect is an Alert).
    await indi_server.push(
        f'<setSwitchVector device="{MOUNT}" name="CONNECTION" state="Alert"><oneSwitch name="CONNECT">Off</oneSwitch>'
        '<oneSwitch name="DISCONNECT">On</oneSwitch></setSwitchVector>'
    )
    await wait_for_state(
        hass, ra, lambda s: s is not None and s.state == STATE_UNAVAILABLE
    )
    assert state_of(hass, summary) == "alert"


async def test_unit_lines_that_no_longer_parse_are_ignored(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Options stored by hand (or by another version) with a bad line: no unit is overridden, nothing fails."""
    indi_server.definitions = [CAPTURE]
    entry_id = (
        await setup_indi_entry(hass, indi_server, {CONF_UNITS: "not a line"})
    ).entry_id
    polling = await wait_for_entity(
        hass, "number", _uid(entry_id, MOUNT, "POLLING_PERIOD.PERIOD_MS")
    )
    state = hass.states.get(polling)
    assert state is not None
    assert state.attributes["unit_of_measurement"] == "ms"


async def test_a_set_point_in_a_us_locale_is_converted(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """The thermostat labels its members "(C)": with °F as the unit system both show °F, 60 °F goes out as °C."""
    hass.config.units = US_CUSTOMARY_SYSTEM
    indi_server.definitions = [
        '<defNumberVector device="Thermostat" name="temperaturevector" label="Temperature" group="Values" '
        'state="Ok" perm="ro"><defNumber name="temperature" label="Temperature (C)" format="%3.1f" min="-50" '
        'max="99" step="0">20.00</defNumber></defNumberVector>'
        '<defNumberVector device="Thermostat" name="targetvector" label="Target" group="Values" state="Ok" '
        'perm="rw" timeout="0"><defNumber name="target" label="Target (C)" format="%3.1f" min="-50" max="99" '
        'step="0">15.00</defNumber></defNumberVector>'
    ]
    indi_server.reply_rules.append(
        lambda element: b'<setNumberVector device="Thermostat" name="targetvector" state="Ok">'
        b'<oneNumber name="target">15.56</oneNumber></setNumberVector>'
        if b"targetvector" in element
        else None
    )
    entry_id = (await setup_indi_entry(hass, indi_server)).entry_id
    temperature = await wait_for_entity(
        hass, "sensor", _uid(entry_id, "Thermostat", "temperaturevector.temperature")
    )
    target = await wait_for_entity(
        hass, "number", _uid(entry_id, "Thermostat", "targetvector.target")
    )
    assert state_of(hass, temperature) == "68.0"
    assert state_of(hass, target) == "59.0"
    await hass.services.async_call(
        "number", "set_value", {"entity_id": target, "value": 60}, blocking=True
    )
    (sent,) = [e for e in indi_server.all_received() if e.startswith(b"<new")]
    value = float(sent.split(b'<oneNumber name="target">')[1].split(b"<")[0])
    assert value == pytest.approx((60 - 32) * 5 / 9)  # 15.56 °C, not 60 °C
    assert float(state_of(hass, target)) == pytest.approx(60.0, abs=0.1)
