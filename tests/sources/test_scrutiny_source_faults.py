"""The Scrutiny source when the server refuses, answers oddly or goes away in the middle of a command."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.instrument_hub.events import (
    BlobData,
    DeviceFound,
    Event,
    EventData,
    LinkUp,
    Reading,
)
from custom_components.instrument_hub.sources.base import (
    CommandRejected,
    CommandTimeout,
    NotConnected,
    UnknownTarget,
)
from custom_components.instrument_hub.sources.scrutiny import (
    ScrutinySource,
    messages,
    source as source_module,
)
from custom_components.instrument_hub.sources.scrutiny.mapping import (
    DATALOGGER_STATE,
    TARGET,
    event_channel_key,
    watchable_key,
)
from custom_components.instrument_hub.sources.scrutiny.source import (
    CSV_EXECUTOR_SAMPLES,
    EARLY_COMPLETIONS,
)
from tests.fake_scrutiny import FIRMWARE, SESSION, FakeScrutinyServer, status
from tests.sources.conftest import EventRecorder

from .test_scrutiny_source import WATCHED, WRITABLE, fired, started, values

COUNTER = "/static/main.cpp/counter"
UPTIME = "/global/device/uptime"


def _refuse(message: str) -> dict[str, Any]:
    return {"cmd": "error", "msg": message}


def _completion(token: str, *, success: bool = True) -> dict[str, Any]:
    return {
        "cmd": "inform_write_completion",
        "reqid": None,
        "request_token": token,
        "success": success,
        "completion_server_time_us": 1.0,
        "failure_reason": "",
    }


async def test_a_refused_batch_subscription_is_retried_one_by_one(
    scrutiny_server: FakeScrutinyServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One watchable the server will not subscribe does not cost the others their values."""
    subscribe = scrutiny_server.handlers["subscribe_watchable"]

    def picky(request: dict[str, Any]) -> Any:
        if "/Mode" in request["watchables"]:
            return _refuse("Cannot subscribe to /Mode")
        return subscribe(request)

    scrutiny_server.handlers["subscribe_watchable"] = picky
    caplog.set_level(logging.DEBUG, logger=source_module.__name__)
    source = await started(scrutiny_server, recorder)
    try:
        await scrutiny_server.push(scrutiny_server.value_update("/Mode", 1))
        await scrutiny_server.push(scrutiny_server.value_update("/Sine Wave", 0.5))
        await recorder.wait_for(
            Reading, lambda e: e.channel_key == watchable_key("/Sine Wave")
        )
        assert values(recorder, "/Mode") == []
        subscribed = source.diagnostics()["subscribed"]
        assert "/Mode" not in subscribed
        assert sorted(subscribed) == sorted(
            path for path in WATCHED if path not in {"/Mode", "/gone"}
        )
        # The batch, then each one alone.
        attempts = [
            request["watchables"]
            for request in scrutiny_server.requests_of("subscribe_watchable")
        ]
        assert len(attempts[0]) == 5
        assert attempts[1:6] == [[path] for path in attempts[0]]
        assert "Cannot watch /Mode" in caplog.text
    finally:
        await source.async_stop()


async def test_subscriptions_the_server_does_not_confirm_are_not_watched(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """An answer without usable ids subscribes nothing; a write needing it fails as unknown."""
    answers: list[object] = [
        {"cmd": "response_subscribe_watchable", "subscribed": "all of them"},
        {
            "cmd": "response_subscribe_watchable",
            "subscribed": {"/Sine Wave": {"id": 7}, "/Mode": "x"},
        },
    ]

    def unusable(_request: dict[str, Any]) -> Any:
        return answers.pop(0)

    scrutiny_server.handlers["subscribe_watchable"] = unusable
    source = await started(scrutiny_server, recorder)
    try:
        assert source.diagnostics()["subscribed"] == []
        with pytest.raises(UnknownTarget, match="did not subscribe"):
            await source.async_write_path(UPTIME, 3)
        scrutiny_server.handlers["subscribe_watchable"] = lambda _req: _refuse(
            "Unknown watchable : /global/device/uptime"
        )
        with pytest.raises(UnknownTarget, match="Unknown watchable"):
            await source.async_write_path(UPTIME, 3)
        assert scrutiny_server.requests_of("write_watchable") == []
    finally:
        await source.async_stop()


async def test_a_write_survives_a_refused_unsubscribe(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """The temporary subscription of an unwatched write cannot be undone: the write still counts."""
    scrutiny_server.handlers["unsubscribe_watchable"] = lambda _req: _refuse("busy")
    source = await started(scrutiny_server, recorder, write_timeout=1)
    try:
        completion = await source.async_write_path(UPTIME, 12)
        assert (completion.success, completion.value) == (True, 12)
        assert len(scrutiny_server.requests_of("unsubscribe_watchable")) == 1
        # Still usable afterwards.
        result = await source.async_write(TARGET, watchable_key(COUNTER), 1.5)
        assert result.values == {COUNTER: pytest.approx(1.5)}
    finally:
        await source.async_stop()


async def test_a_write_the_server_does_not_take_is_rejected(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """A write response without a request token: rejected at once, no wait for a completion."""
    scrutiny_server.handlers["write_watchable"] = lambda _req: {
        "cmd": "response_write_watchable",
        "count": 0,
    }
    source = await started(scrutiny_server, recorder, write_timeout=5)
    try:
        async with asyncio.timeout(2):
            with pytest.raises(CommandRejected, match="did not accept the write"):
                await source.async_write(TARGET, watchable_key(COUNTER), 1)
        assert values(recorder, COUNTER) == []
    finally:
        await source.async_stop()


async def test_a_boolean_takes_one_and_zero(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """A number 1 or 0 written to a boolean is sent as true or false and shown as such."""
    source = await started(scrutiny_server, recorder, write_timeout=1)
    try:
        enable = "/static/main.cpp/counter_enable"
        await source.async_write(TARGET, watchable_key(enable), 1)
        await source.async_write(TARGET, watchable_key(enable), 0.0)
        sent = [
            request["updates"][0]["value"]
            for request in scrutiny_server.requests_of("write_watchable")
        ]
        assert sent == [True, False]
        assert values(recorder, enable) == [True, False]
    finally:
        await source.async_stop()


async def test_early_completions_are_kept_within_a_bound(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Completions before their write's response are kept (the newest EARLY_COMPLETIONS only)."""
    token = ["early0"]
    scrutiny_server.handlers["write_watchable"] = lambda _req: {
        "cmd": "response_write_watchable",
        "request_token": token[0],
        "count": 1,
    }
    source = await started(scrutiny_server, recorder, write_timeout=0.3)
    try:
        await scrutiny_server.push({**_completion("x"), "request_token": None})
        for index in range(EARLY_COMPLETIONS + 1):
            await scrutiny_server.push(_completion(f"early{index}"))
        token[0] = f"early{EARLY_COMPLETIONS}"
        result = await source.async_write(TARGET, watchable_key(COUNTER), 2)
        assert result.values == {COUNTER: 2}
        token[0] = "early0"  # the oldest, pushed out by the bound: never completes
        with pytest.raises(CommandTimeout):
            await source.async_write(TARGET, watchable_key(COUNTER), 3)
        assert source.diagnostics()["pending_writes"] == 0
    finally:
        await source.async_stop()


async def test_a_write_waiting_for_its_completion_fails_when_the_link_goes(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """The link drops between the write's response and its completion: NotConnected, not a timeout."""
    scrutiny_server.handlers["write_watchable"] = lambda _req: [
        {"cmd": "response_write_watchable", "request_token": "t1", "count": 1},
        # Pushed right after the response: once it is handled, the write is waiting.
        status(state="acquiring", ratio=0.5),
    ]
    source = await started(scrutiny_server, recorder, write_timeout=5)
    try:
        write = asyncio.create_task(
            source.async_write(TARGET, watchable_key(COUNTER), 1)
        )
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == DATALOGGER_STATE and e.value == "acquiring",
        )
        assert source.diagnostics()["pending_writes"] == 1
        await scrutiny_server.drop()
        async with asyncio.timeout(2):
            with pytest.raises(NotConnected, match="lost the connection"):
                await write
        assert source.diagnostics()["pending_writes"] == 0
    finally:
        await source.async_stop()


async def test_a_large_acquisition_is_exported_whole(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """An acquisition past CSV_EXECUTOR_SAMPLES samples (converted off the loop) is complete."""
    samples = CSV_EXECUTOR_SAMPLES + 1
    scrutiny_server.handlers["read_datalogging_acquisition_content"] = lambda _req: {
        "cmd": "response_read_datalogging_acquisition_content",
        "xdata": {"name": "t", "data": list(range(samples))},
        "signals": [{"name": "v", "data": [index * 2 for index in range(samples)]}],
    }
    source = await started(scrutiny_server, recorder)
    try:
        assert await source.async_export_acquisition("big") == "big"
        blob = recorder.of_type(Reading)[-1].value
        assert isinstance(blob, BlobData)
        lines = blob.data.decode().splitlines()
        assert lines[0] == "t,v"
        assert len(lines) == samples + 1
        assert lines[-1] == f"{samples - 1},{2 * (samples - 1)}"
    finally:
        await source.async_stop()


async def test_datalogging_pushes_other_than_a_new_acquisition(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """A deleted acquisition fires the list change only; the requester-only push and unknown ones fire nothing."""
    source = await started(scrutiny_server, recorder)
    try:
        await scrutiny_server.push(
            {
                "cmd": "inform_datalogging_list_changed",
                "reqid": None,
                "reference_id": "ref9",
                "action": "delete",
            }
        )
        await scrutiny_server.push(
            {"cmd": "inform_datalogging_acquisition_complete", "reqid": None}
        )
        await scrutiny_server.push({"cmd": "inform_something_new", "reqid": None})
        await scrutiny_server.push(status(state="waiting_for_trigger"))
        await recorder.wait_for(
            Reading,
            lambda e: e.channel_key == DATALOGGER_STATE
            and e.value == "waiting_for_trigger",
        )
        (changed,) = fired(recorder, "datalogging_list_changed")
        assert changed.attributes["change_type"] == "delete"
        assert changed.attributes["reference_id"] == "ref9"
        assert fired(recorder, "acquisition_complete") == []
        assert source.last_acquisition is None
    finally:
        await source.async_stop()


async def test_values_without_a_server_time_have_no_timestamp(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """An update without ``t`` is shown with no timestamp (the hub's arrival time), not a made-up one."""
    source = await started(scrutiny_server, recorder)
    try:
        update = scrutiny_server.value_update("/Sine Wave", 0.25)
        del update["updates"][0]["t"]
        await scrutiny_server.push(update)
        reading = await recorder.wait_for(
            Reading, lambda e: e.channel_key == watchable_key("/Sine Wave")
        )
        assert (reading.value, reading.timestamp) == (0.25, None)
    finally:
        await source.async_stop()


async def test_a_firmware_known_before_the_device_shows_once_it_is_ready(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """SFD loaded with no device yet: no target (no datalogger state); ready, it has that firmware."""
    scrutiny_server.status = status(session=None, firmware=FIRMWARE)
    source = ScrutinySource(
        "127.0.0.1",
        scrutiny_server.port,
        watched=WATCHED,
        writable=WRITABLE,
        backoff_min=0.05,
    )
    await source.async_start(recorder)
    try:
        await recorder.wait_for(
            Reading, lambda e: e.channel_key == event_channel_key("status_update")
        )
        assert fired(recorder, "sfd_loaded")
        assert recorder.of_type(DeviceFound) == []
        assert [
            e for e in recorder.of_type(Reading) if e.channel_key == DATALOGGER_STATE
        ] == []
        await scrutiny_server.push(status())
        await recorder.wait_for(
            Reading, lambda e: e.channel_key == event_channel_key("device_ready")
        )
        (found,) = recorder.of_type(DeviceFound)
        assert (found.name, found.sw_version) == ("Scrutiny Demo Device", "0.16.0")
        assert fired(recorder, "device_ready")[0].attributes["session_id"] == SESSION
    finally:
        await source.async_stop()


async def test_a_failing_sink_is_logged_and_the_source_goes_on(
    scrutiny_server: FakeScrutinyServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sink raising on one event (a consumer's bug) does not stop the others arriving."""

    def sink(event: Event) -> None:
        if isinstance(event, LinkUp):
            raise RuntimeError("consumer bug")  # noqa: TRY004
        recorder(event)

    source = ScrutinySource(
        "127.0.0.1", scrutiny_server.port, watched=WATCHED, backoff_min=0.05
    )
    await source.async_start(sink)
    try:
        await recorder.wait_for(
            Reading, lambda e: e.channel_key == event_channel_key("sfd_loaded")
        )
        assert recorder.of_type(LinkUp) == []
        assert recorder.of_type(DeviceFound)
        assert "Event sink failed" in caplog.text
    finally:
        await source.async_stop()


async def test_an_unexpected_error_in_a_step_is_logged_and_the_next_goes_on(
    scrutiny_server: FakeScrutinyServer,
    recorder: EventRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while applying one status does not end the worker: the next status is applied."""
    source = await started(scrutiny_server, recorder)
    real = messages.status_changes
    calls = 0

    def faulty(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("derivation bug")
        return real(*args)

    try:
        with patch(f"{source_module.__name__}.status_changes", side_effect=faulty):
            await scrutiny_server.push(status(state="waiting_for_trigger"))
            await scrutiny_server.push(status(state="acquiring", ratio=0.5))
            await recorder.wait_for(
                Reading,
                lambda e: e.channel_key == DATALOGGER_STATE and e.value == "acquiring",
            )
        states = [
            e.value
            for e in recorder.of_type(Reading)
            if e.channel_key == DATALOGGER_STATE
        ]
        assert "waiting_for_trigger" not in states
        assert "Error while handling Scrutiny data" in caplog.text
        assert isinstance(fired(recorder, "status_update")[-1], EventData)
    finally:
        await source.async_stop()


async def test_a_target_with_its_sfd_loaded_is_first_announced_by_the_sfds_name(
    scrutiny_server: FakeScrutinyServer, recorder: EventRecorder
) -> None:
    """Entity ids come from the first name: it must not depend on when the SFD's answer arrives."""
    source = await started(scrutiny_server, recorder)
    try:
        names = [found.name for found in recorder.of_type(DeviceFound)]
        assert names and set(names) == {"Scrutiny Demo Device"}
    finally:
        await source.async_stop()
