"""Drive a real Scrutiny server with the vendor's own SDK client (run by .venv-peers' python).

The tests use it for what a person at the bench does with Scrutiny itself: switch the built-in demo
device on or off, run a datalogging acquisition, and record the SDK's own events so that the
integration's derivation of them can be compared with the SDK's.

    python -m simulators.scrutiny_sdk --port 8765 demo on
    python -m simulators.scrutiny_sdk --port 8765 acquire "/Sine Wave"
    python -m simulators.scrutiny_sdk --port 8765 events 10      # one JSON line per SDK event

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from scrutiny.sdk import datalogging
from scrutiny.sdk.client import ScrutinyClient

LOOPBACK = "127.0.0.1"
TIMEOUT = 20.0


def _client(port: int) -> ScrutinyClient:
    client = ScrutinyClient(rx_message_callbacks=None, timeout=TIMEOUT)
    client.connect(LOOPBACK, port)
    return client


def demo(port: int, enable: bool) -> None:
    """Switch the server's emulated demo device on (returning once its SFD is loaded) or off."""
    client = _client(port)
    try:
        client.listen_events(ScrutinyClient.Events.LISTEN_SFD_LOADED)
        client.request_demo_mode(enable)
        deadline = time.monotonic() + TIMEOUT
        while enable and (remaining := deadline - time.monotonic()) > 0:
            event = client.read_event(timeout=remaining)
            if isinstance(event, ScrutinyClient.Events.SFDLoadedEvent):
                break
        else:
            if enable:
                raise SystemExit("the demo device's SFD did not load")
    finally:
        client.disconnect()
    print(json.dumps({"demo_mode": enable}), flush=True)


def acquire(port: int, signal: str) -> None:
    """Run one acquisition that triggers at once; print its reference id once the server has it."""
    client = _client(port)
    try:
        client.wait_device_ready(TIMEOUT)
        config = datalogging.DataloggingConfig(
            sampling_rate=0, decimation=1, name="instrument_hub test"
        )
        axis = config.add_axis("Y")
        config.add_signal(signal, axis, name="signal")
        config.configure_trigger(datalogging.TriggerCondition.AlwaysTrue, position=0.5)
        config.configure_xaxis(datalogging.XAxisType.MeasuredTime)
        request = client.start_datalog(config)
        request.wait_for_completion(TIMEOUT)
        acquisition = request.fetch_acquisition(TIMEOUT)
        samples = len(acquisition.get_data()[0].series.get_data())
    finally:
        client.disconnect()
    print(
        json.dumps(
            {"reference_id": request.acquisition_reference_id, "samples": samples}
        ),
        flush=True,
    )


def events(port: int, seconds: float) -> None:
    """Print the SDK's events (all but the status poll) as JSON lines for ``seconds``."""
    client = ScrutinyClient(rx_message_callbacks=None, timeout=TIMEOUT)
    events_type = ScrutinyClient.Events
    client.listen_events(
        events_type.LISTEN_ALL, disabled_events=events_type.LISTEN_STATUS_UPDATE_CHANGED
    )
    client.connect(LOOPBACK, port)
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + seconds
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            event = client.read_event(timeout=min(remaining, 0.5))
            if event is None:
                continue
            record: dict[str, object] = {"event": type(event).__name__}
            for name in ("session_id", "firmware_id"):
                if hasattr(event, name):
                    record[name] = getattr(event, name)
            details = getattr(event, "details", None)
            if details is not None and hasattr(details, "state"):
                record["state"] = details.state.name
                record["completion_ratio"] = details.completion_ratio
            print(json.dumps(record), flush=True)
    finally:
        client.disconnect()


def main(argv: list[str] | None = None) -> int:
    """Run one command against the server on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo")
    demo_parser.add_argument("state", choices=("on", "off"))
    acquire_parser = commands.add_parser("acquire")
    acquire_parser.add_argument("signal")
    events_parser = commands.add_parser("events")
    events_parser.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.port, args.state == "on")
    elif args.command == "acquire":
        acquire(args.port, args.signal)
    else:
        events(args.port, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
