"""A scripted Scrutiny server on 127.0.0.1 for the tests that need exact control of the wire.

It speaks the server's framing, greets with ``welcome`` and answers requests from handlers the test
installs (by default: the demo device's status, device info, SFD and watchables, as captured from
scrutinydebugger 0.16.0). ``push`` sends a message to every connection; ``drop`` closes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import copy
import logging
from typing import Any, Final

from custom_components.instrument_hub.sources.scrutiny.protocol import (
    FrameDecoder,
    decode_frame,
    encode_message,
)

_LOGGER = logging.getLogger(__name__)
LOOPBACK: Final = "127.0.0.1"
SESSION: Final = "9e07005d9b3b4ab4b29608d4a87e0213"
FIRMWARE: Final = "deadbeefc001d00d0ff1cebaadf00d00"

type Answer = dict[str, Any] | list[dict[str, Any]] | None
type Handler = Callable[[dict[str, Any]], Answer]


def status(
    *,
    session: str | None = SESSION,
    firmware: str | None = FIRMWARE,
    state: str = "standby",
    ratio: float | None = None,
) -> dict[str, Any]:
    """Return an inform_server_status of the demo device (ready, SFD loaded, datalogger standby)."""
    return {
        "cmd": "inform_server_status",
        "reqid": None,
        "device_status": "connected_ready" if session else "disconnected",
        "device_session_id": session,
        "loaded_sfd_firmware_id": firmware,
        "datalogging_status": {"datalogging_state": state, "completion_ratio": ratio},
        "device_comm_link": {
            "link_type": "dummy",
            "link_operational": True,
            "link_config": {},
            "demo_mode": True,
        },
    }


WATCHABLES: Final[dict[str, list[dict[str, Any]]]] = {
    "var": [
        {"dtype": "float32", "path": "/static/main.cpp/counter"},
        {"dtype": "bool8", "path": "/static/main.cpp/counter_enable"},
        {"dtype": "uint32", "path": "/global/device/uptime"},
    ],
    "alias": [
        {"dtype": "float32", "path": "/Sine Wave"},
        {
            "dtype": "uint8",
            "path": "/Mode",
            "enum": {"name": "Mode", "values": {"idle": 0, "run": 1}},
        },
    ],
    "rpv": [{"dtype": "sint32", "path": "/rpv/x2000"}],
}


class FakeScrutinyServer:
    """A scripted server; ``requests`` records every message received, in order."""

    def __init__(self, *, welcome: bool = True) -> None:
        """Prepare the default answers (the demo device, ready, with its SFD loaded)."""
        self.welcome = welcome
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        self.status = status()
        self.ids = {
            path: f"{index:x}" for index, path in enumerate(self.all_paths(), start=16)
        }
        self.handlers: dict[str, Handler] = {
            "get_server_status": lambda req: {**self.status, "reqid": req.get("reqid")},
            "get_device_info": lambda _req: {
                "cmd": "response_get_device_info",
                "available": True,
                "device_info": {
                    "display_name": "EmulatedDevice",
                    "device_id": FIRMWARE,
                    "protocol_major": 1,
                    "protocol_minor": 0,
                },
            },
            "get_loaded_sfd": lambda _req: {
                "cmd": "response_get_loaded_sfd",
                "sfd": {
                    "firmware_id": FIRMWARE,
                    "metadata": {
                        "project_name": "Scrutiny Demo Device",
                        "version": "0.16.0",
                        "author": "Scrutiny Debugger",
                    },
                },
            },
            "get_watchable_list": self._watchable_list,
            "get_watchable_count": lambda _req: {
                "cmd": "response_get_watchable_count",
                "qty": {kind: len(entries) for kind, entries in WATCHABLES.items()},
            },
            "subscribe_watchable": self._subscribe,
            "unsubscribe_watchable": lambda req: {
                "cmd": "response_unsubscribe_watchable",
                "unsubscribed": req["watchables"],
            },
            "echo": lambda req: {"cmd": "response_echo", "payload": req.get("payload")},
            "write_watchable": self._write,
        }
        self.write_success = True
        self.complete_writes = True
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = asyncio.Event()

    @staticmethod
    def all_paths() -> list[str]:
        """Return every watchable path the server lists."""
        return [entry["path"] for entries in WATCHABLES.values() for entry in entries]

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Close every connection and stop listening."""
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def push(self, message: dict[str, Any]) -> None:
        """Send a message to every connected client."""
        await self.send_raw(encode_message(message))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (corrupted frames, garbage) to every client."""
        for writer in list(self._writers):
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def drop(self) -> None:
        """Close every client connection."""
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        self._writers.clear()

    @property
    def connections(self) -> int:
        """Return the number of open client connections."""
        return len(self._writers)

    def requests_of(self, cmd: str) -> list[dict[str, Any]]:
        """Return the received requests of one command."""
        return [request for request in self.requests if request.get("cmd") == cmd]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        decoder = FrameDecoder()
        try:
            if self.welcome:
                writer.write(
                    encode_message(
                        {
                            "cmd": "welcome",
                            "reqid": None,
                            "server_time_zero_timestamp": 1795236047.604454,
                        }
                    )
                )
                await writer.drain()
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    request = decode_frame(frame)
                    self.requests.append(request)
                    self.received.set()
                    await self._answer(writer, request)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            _LOGGER.exception("The scripted Scrutiny server failed")
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            writer.close()
            self._tasks.discard(task)

    async def _answer(
        self, writer: asyncio.StreamWriter, request: dict[str, Any]
    ) -> None:
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            answers: Answer = {
                "cmd": "error",
                "request_cmd": request["cmd"],
                "msg": f"Unsupported command {request['cmd']}",
            }
        else:
            answers = handler(request)
        if answers is None:
            return
        for answer in answers if isinstance(answers, list) else [answers]:
            reply = {"reqid": request.get("reqid"), **answer}
            writer.write(encode_message(reply))
        await writer.drain()

    def _watchable_list(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        content = copy.deepcopy(WATCHABLES)
        first = {"var": content["var"], "alias": [], "rpv": [], "var_factory": []}
        second = {
            "var": [],
            "alias": content["alias"],
            "rpv": content["rpv"],
            "var_factory": [],
        }
        return [
            {
                "cmd": "response_get_watchable_list",
                "qty": {},
                "content": first,
                "done": False,
            },
            {
                "cmd": "response_get_watchable_list",
                "qty": {},
                "content": second,
                "done": True,
            },
        ]

    def _subscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        unknown = [path for path in request["watchables"] if path not in self.ids]
        if unknown:
            return {
                "cmd": "error",
                "request_cmd": "subscribe_watchable",
                "msg": f"Unknown watchable : {unknown[0]}",
            }
        return {
            "cmd": "response_subscribe_watchable",
            "subscribed": {
                path: {"id": self.ids[path], "path": path}
                for path in request["watchables"]
            },
        }

    def _write(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        update = request["updates"][0]
        token = f"token{len(self.requests)}"
        answers = [
            {"cmd": "response_write_watchable", "request_token": token, "count": 1}
        ]
        if self.complete_writes:
            answers.append(
                {
                    "cmd": "inform_write_completion",
                    "reqid": None,
                    "watchable": update["watchable"],
                    "request_token": token,
                    "batch_index": 0,
                    "success": self.write_success,
                    "completion_server_time_us": 57436483.809,
                    "failure_reason": ""
                    if self.write_success
                    else "Memory is read-only",
                }
            )
        return answers

    def value_update(self, path: str, value: object) -> dict[str, Any]:
        """Return a watchable_update pushing one value."""
        return {
            "cmd": "watchable_update",
            "reqid": None,
            "updates": [{"id": self.ids[path], "v": value, "t": 53428916.121}],
        }
