"""The hololinked source against real hololinked 0.4.2 Things (no Home Assistant): events, commands, link."""

from __future__ import annotations

import time

import aiohttp
import pytest

from custom_components.instrument_hub.events import (
    ChannelDefined,
    ChannelKind,
    DeviceFound,
    EventData,
    LinkDown,
    LinkUp,
    Reading,
    join_key,
)
from custom_components.instrument_hub.sources.base import (
    AuthenticationFailed,
    CannotConnect,
    CommandRejected,
    InvalidValue,
    NotConnected,
    UnknownTarget,
)
from custom_components.instrument_hub.sources.hololinked import (
    Credentials,
    HololinkedSource,
    parse_thing_url,
)
from tests.hololinked_peer import ThingPeer, hololinked_fixture
from tests.peers import free_port

from .conftest import EventRecorder

pytestmark = pytest.mark.peer

meter = hololinked_fixture("meter", "maestro", gap=0.2, nan_every=3)
locked = hololinked_fixture(
    "locked", "maestro", gap=0.5, basic_user="lab", password="s3cret"
)

ENERGY = join_key("event", "data_point_event", "energy")
DATA_POINT = join_key("event", "data_point_event")
WAVELENGTH = join_key("property", "wavelength")
STATS_ENABLED = join_key("property", "statistics_enabled")
START = join_key("action", "start_acquisition")


def _source(
    session: aiohttp.ClientSession, url: str, **kwargs: object
) -> HololinkedSource:
    return HololinkedSource(
        session,
        parse_thing_url(url),
        backoff_min=0.2,
        backoff_max=1.0,
        liveness_interval=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_events_readings_and_link(
    meter: ThingPeer, session: aiohttp.ClientSession, recorder: EventRecorder
) -> None:
    """The TD defines the channels; pushed events become readings equal to what the Thing sent."""
    source = _source(session, meter.url)
    await source.async_start(recorder)
    try:
        device = recorder.of_type(DeviceFound)[0]
        assert (device.device_key, device.name, device.model) == (
            "energy-meter",
            "Energy meter",
            "GentecMaestroEnergyMeter",
        )
        assert recorder.of_type(LinkUp)
        defined = {d.channel_key: d for d in recorder.of_type(ChannelDefined)}
        assert defined[ENERGY].kind is ChannelKind.NUMERIC
        assert (defined[ENERGY].unit, defined[ENERGY].device_class_hint) == (
            "J",
            "energy",
        )
        # Properties were read at start.
        await recorder.wait_for(Reading, lambda r: r.channel_key == WAVELENGTH)
        fired = await recorder.wait_for(
            Reading, lambda r: r.channel_key == DATA_POINT, count=4
        )
        assert isinstance(fired.value, EventData)
        energies = [
            r.value for r in recorder.of_type(Reading) if r.channel_key == ENERGY
        ]
        pushed = [p["energy"] for p in meter.pushed("data_point_event")]  # type: ignore[index]
        # Each energy received is the one pushed, in order (the stream opened mid-way).
        start = pushed.index(energies[0])
        assert pushed[start : start + len(energies)] == energies
        assert None in energies  # every third pulse has no data: unknown, not 0
    finally:
        await source.async_stop()


async def test_writes_actions_and_the_things_errors(
    meter: ThingPeer, session: aiohttp.ClientSession, recorder: EventRecorder
) -> None:
    """Writes are read back; the Thing's own errors (HTTP 200 with an exception) are raised."""
    source = _source(session, meter.url)
    await source.async_start(recorder)
    try:
        result = await source.async_write("energy-meter", WAVELENGTH, 800)
        assert result.values == {"wavelength": 800}
        result = await source.async_write("energy-meter", STATS_ENABLED, False)
        assert result.values == {"statistics_enabled": False}
        with pytest.raises(CommandRejected, match="outside the detector head's range"):
            await source.async_write("energy-meter", WAVELENGTH, 3000)
        with pytest.raises(InvalidValue):
            await source.async_write("energy-meter", WAVELENGTH, "800")
        with pytest.raises(UnknownTarget):
            await source.async_write("energy-meter", join_key("property", "nothing"), 1)
        with pytest.raises(InvalidValue):
            await source.async_write(
                "energy-meter", join_key("property", "version"), "x"
            )
        output = await source.async_invoke("set_trigger_level", {"level": 15.4})
        assert output.values == {"output": "*STL15.4"}
        with pytest.raises(CommandRejected, match="outside 0.1-99.9"):
            await source.async_invoke("set_trigger_level", {"level": 150})
        with pytest.raises(InvalidValue):
            await source.async_invoke("set_trigger_level", {})
        with pytest.raises(InvalidValue):
            await source.async_invoke("set_trigger_level", [15])
        with pytest.raises(UnknownTarget):
            await source.async_invoke("self_destruct")
        pressed = await source.async_run_action(
            "energy-meter", join_key("action", "reset_statistics")
        )
        assert pressed.state == "Ok"
        with pytest.raises(UnknownTarget):
            await source.async_run_action("energy-meter", join_key("action", "exit"))
    finally:
        await source.async_stop()


async def test_killed_thing_goes_down_and_comes_back(
    meter: ThingPeer, session: aiohttp.ClientSession, recorder: EventRecorder
) -> None:
    """SIGKILL: the link is down at once (the streams end); restarted, it is up and defined again."""
    source = _source(session, meter.url)
    await source.async_start(recorder)
    try:
        await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT)
        killed = time.monotonic()
        meter.kill()
        down = await recorder.wait_for(LinkDown)
        assert time.monotonic() - killed < 5
        assert down.reason
        with pytest.raises(NotConnected):
            await source.async_write("energy-meter", WAVELENGTH, 700)
        definitions = len(recorder.of_type(ChannelDefined))
        meter.restart()
        await recorder.wait_for(LinkUp, count=2)
        assert len(recorder.of_type(ChannelDefined)) == 2 * definitions
        fired = len(
            [r for r in recorder.of_type(Reading) if r.channel_key == DATA_POINT]
        )
        await recorder.wait_for(
            Reading, lambda r: r.channel_key == DATA_POINT, count=fired + 1
        )
        assert source.diagnostics()["counters"]["connects"] == 2
    finally:
        await source.async_stop()


async def test_credentials(
    locked: ThingPeer, session: aiohttp.ClientSession, recorder: EventRecorder
) -> None:
    """HTTP Basic: none or wrong refuse the start; the right ones work and never show in repr."""
    for wrong in (None, Credentials("lab", "nope")):
        source = _source(session, locked.url, credentials=wrong)
        with pytest.raises(AuthenticationFailed):
            await source.async_start(recorder)
        await source.async_stop()
    right = Credentials("lab", "s3cret")
    assert "s3cret" not in repr(right)
    source = _source(session, locked.url, credentials=right)
    await source.async_start(recorder)
    try:
        await recorder.wait_for(Reading, lambda r: r.channel_key == DATA_POINT)
        assert "s3cret" not in repr(source.diagnostics())
    finally:
        await source.async_stop()


async def test_nothing_listening(
    session: aiohttp.ClientSession, recorder: EventRecorder
) -> None:
    """A port nobody listens on cannot be started."""
    source = _source(session, f"http://127.0.0.1:{free_port()}/energy-meter")
    with pytest.raises(CannotConnect):
        await source.async_start(recorder)
    await source.async_stop()
