"""The hololinked source when the Thing answers no TD, reads fail, callbacks raise or stop is cancelled."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from custom_components.instrument_hub.events import (
    DeviceFound,
    Event,
    LinkDown,
    LinkUp,
    Message,
    MessageLevel,
    Reading,
    join_key,
)
from custom_components.instrument_hub.sources.base import CannotConnect, UnknownTarget
from custom_components.instrument_hub.sources.hololinked import (
    Credentials,
    HololinkedSource,
    parse_thing_url,
)
from tests.fake_thing import THING_ID, FakeThing, captured_td, fake_thing

from .conftest import EventRecorder
from .test_hololinked_streams import DP_PATH, WAVELENGTH, _started

GAP = join_key("property", "measurement_gap")
START = join_key("action", "start_acquisition")


def _gaps(recorder: EventRecorder) -> list[object]:
    return [r.value for r in recorder.of_type(Reading) if r.channel_key == GAP]


def _wavelengths(recorder: EventRecorder) -> list[object]:
    return [r.value for r in recorder.of_type(Reading) if r.channel_key == WAVELENGTH]


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b'{"hello": "world"}'), (404, b"<html>404: Not Found</html>")],
)
async def test_an_answer_that_is_no_td_cannot_start(
    session: aiohttp.ClientSession,
    recorder: EventRecorder,
    socket_enabled: None,
    status: int,
    body: bytes,
) -> None:
    """Another JSON document or an error page where the TD should be: CannotConnect, nothing defined."""
    async with fake_thing(td_status=status, td_body=body) as thing:
        source = HololinkedSource(session, parse_thing_url(thing.url))
        with pytest.raises(
            CannotConnect, match="did not answer with a Thing Description"
        ):
            await source.async_start(recorder)
        await source.async_stop()
    assert recorder.events == []


async def test_a_thing_back_with_a_broken_td_is_retried_until_it_is_whole(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """While its TD is broken the link stays down, nothing is polled, and the reason is kept."""
    async with fake_thing() as first:
        source = await _started(session, first, recorder, refresh_interval=0.05)
        port = first.port
    try:
        await recorder.wait_for(LinkDown)
        async with fake_thing(
            port=port, td_status=500, td_body=b"<html>starting</html>"
        ) as second:
            await second.wait_requests("wot-td", 2)
            assert len(recorder.of_type(LinkUp)) == 1
            assert second.count("GET measurement-gap") == 0
            last_error = source.diagnostics()["last_error"]
            assert "did not answer with a Thing Description" in last_error
            assert "<host>" in last_error and "127.0.0.1" not in last_error
            second.td_status, second.td_body = 200, None
            await recorder.wait_for(LinkUp, count=2)
            await second.wait_requests("GET measurement-gap", 2)  # refreshed again
    finally:
        await source.async_stop()


async def test_failed_reads_keep_the_value_and_the_link(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """A getter that raises, or a read cut off: the value stays, the link stays, later reads show it."""
    source = await _started(session, thing, recorder, refresh_interval=0.05)
    try:
        await recorder.wait_for(Reading, lambda r: r.channel_key == GAP)
        thing.overrides["GET measurement-gap"] = (
            200,
            b'{"exception": {"message": "meter busy", "type": "IOError"}}',
            "application/json",
        )
        reads = thing.count("GET measurement-gap")
        await thing.wait_requests("GET measurement-gap", reads + 2)
        del thing.overrides["GET measurement-gap"]
        thing.abort.add("GET measurement-gap")
        reads = thing.count("GET measurement-gap")
        await thing.wait_requests("GET measurement-gap", reads + 2)
        thing.abort.clear()
        thing.properties["measurement_gap"] = 0.75
        await recorder.wait_for(
            Reading, lambda r: r.channel_key == GAP and r.value == 0.75
        )
        assert set(_gaps(recorder)) == {0.5, 0.75}
        assert recorder.of_type(LinkDown) == []
        # aiohttp sends a read cut off on a kept-alive connection once more: 2 + 1 reads failed.
        assert source.diagnostics()["counters"]["read_failures"] >= 3
    finally:
        await source.async_stop()


async def test_a_write_whose_read_back_is_cut_off_still_succeeds(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """The Thing took the value; the read-back failed: Ok with no confirmed value, link checked, still up."""
    source = await _started(session, thing, recorder)
    try:
        thing.abort.add("GET wavelength")
        result = await source.async_write(THING_ID, WAVELENGTH, 800)
        assert result.values == {"wavelength": None}
        assert thing.properties["wavelength"] == 800
        assert recorder.of_type(LinkDown) == []
        assert source.diagnostics()["link_up"] is True
    finally:
        await source.async_stop()


async def test_a_property_seen_only_through_its_changes_is_not_read_back(
    session: aiohttp.ClientSession, recorder: EventRecorder, socket_enabled: None
) -> None:
    """Observable but without a read form: never read (at start or after a write); its stream tells."""
    td = captured_td()
    wavelength = td["properties"]["wavelength"]
    wavelength["forms"] = [f for f in wavelength["forms"] if f["op"] != "readproperty"]
    async with fake_thing(td=td) as thing:
        source = await _started(session, thing, recorder)
        try:
            await thing.wait_subscribed("wavelength/change-event")
            result = await source.async_write(THING_ID, WAVELENGTH, 800)
            assert result.values == {"wavelength": None}
            assert thing.properties["wavelength"] == 800
            assert thing.requests.count("GET wavelength") == 0
            assert _wavelengths(recorder) == []
            thing.send("wavelength/change-event", b"data: 800\n\n")
            await recorder.wait_for(Reading, lambda r: r.channel_key == WAVELENGTH)
            assert _wavelengths(recorder) == [800]
        finally:
            await source.async_stop()


async def test_an_error_pushed_instead_of_a_change_is_a_message(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """A change event carrying the Thing's exception is an error message, not a value."""
    source = await _started(session, thing, recorder)
    try:
        await thing.wait_subscribed("wavelength/change-event")
        shown = [r for r in recorder.of_type(Reading) if r.channel_key == WAVELENGTH]
        thing.send(
            "wavelength/change-event",
            b'data: {"exception": {"message": "head unplugged", "type": "IOError"}}\n\n',
        )
        message = await recorder.wait_for(Message)
        assert (message.text, message.level) == ("head unplugged", MessageLevel.ERROR)
        assert message.attributes == {"source": "wavelength", "type": "IOError"}
        assert [
            r for r in recorder.of_type(Reading) if r.channel_key == WAVELENGTH
        ] == shown
        assert source.diagnostics()["counters"]["thing_errors"] == 1
    finally:
        await source.async_stop()


async def test_commands_for_another_thing_are_unknown(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """A device key that is not this Thing's: UnknownTarget, and nothing is sent."""
    source = await _started(session, thing, recorder)
    try:
        sent = len(thing.requests)
        with pytest.raises(UnknownTarget):
            await source.async_write("another-thing", WAVELENGTH, 800)
        with pytest.raises(UnknownTarget):
            await source.async_run_action("another-thing", START)
        assert len(thing.requests) == sent
    finally:
        await source.async_stop()


async def test_failing_callbacks_are_logged_and_the_link_goes_on(
    session: aiohttp.ClientSession,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
    socket_enabled: None,
) -> None:
    """A sink raising on an event and an on_auth_failed that raises are logged; nothing stops."""
    failed_auth: list[bool] = []

    def sink(event: Event) -> None:
        if isinstance(event, DeviceFound):
            raise RuntimeError("consumer bug")  # noqa: TRY004
        recorder(event)

    def on_auth_failed() -> None:
        failed_auth.append(True)
        raise RuntimeError("reauth bug")

    async with fake_thing(credentials=("lab", "old")) as thing:
        source = await _started(
            session,
            thing,
            sink,
            credentials=Credentials("lab", "old"),
            on_auth_failed=on_auth_failed,
        )
        try:
            assert recorder.of_type(LinkUp)
            assert "Event sink failed" in caplog.text
            thing.credentials = ("lab", "new")
            thing.end_streams(DP_PATH)
            await recorder.wait_for(LinkDown)
            await thing.wait_requests("wot-td", thing.count("wot-td") + 2)
            assert failed_auth == [True]
            assert "Error while reporting refused credentials" in caplog.text
            thing.credentials = ("lab", "old")
            await recorder.wait_for(LinkUp, count=2)
        finally:
            await source.async_stop()


async def test_a_stop_cancelled_from_outside_stays_cancelled(
    session: aiohttp.ClientSession, thing: FakeThing, recorder: EventRecorder
) -> None:
    """Cancelling whoever stops the source (Home Assistant shutting down) is not swallowed."""
    source = await _started(session, thing, recorder)
    current = asyncio.current_task()
    assert current is not None
    # Lands while async_stop waits for the link task it has just cancelled.
    asyncio.get_running_loop().call_soon(current.cancel)
    with pytest.raises(asyncio.CancelledError):
        await source.async_stop()
    assert current.uncancel() == 0
    await source.async_stop()  # idempotent: the subscriptions end too
    await thing.wait_unsubscribed()
    assert source.diagnostics()["streams"] == {}
