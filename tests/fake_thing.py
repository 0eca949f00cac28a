"""A scripted hololinked Thing in the test's own event loop (aiohttp.web on 127.0.0.1).

It serves the TD captured from hololinked 0.4.2 (tests/fixtures/hololinked/td.json) the way the
server does (hrefs on the server's own host name unless ``authority`` is asked for), answers
``/liveness``, property reads and writes and actions, and streams whatever the test writes into an
event's SSE stream: real frames, malformed lines, non-JSON data, bytes split anywhere. It is for
what the real Thing cannot be made to send; everything else is tested against the real one.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hololinked"
THING_ID = "energy-meter"
SERVER_HOST = "vm"
"""What hololinked puts into hrefs by default (socket.gethostname() of the capture's machine)."""


def captured_td() -> dict[str, Any]:
    """Return the captured TD (hrefs on 127.0.0.1:18080)."""
    document: dict[str, Any] = json.loads((FIXTURES / "td.json").read_text())
    return document


def _moved(value: Any, origin: str) -> Any:
    """Return the TD with every href moved from the capture's authority onto ``origin``."""
    if isinstance(value, dict):
        return {
            key: (
                item.replace("http://127.0.0.1:18080", origin)
                if key == "href"
                else _moved(item, origin)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_moved(item, origin) for item in value]
    return value


@dataclass
class FakeThing:
    """The scripted Thing; ``port`` is known once started."""

    td: dict[str, Any] = field(default_factory=captured_td)
    properties: dict[str, Any] = field(
        default_factory=lambda: {
            "acquiring": False,
            "measurement_gap": 0.5,
            "state": None,
            "version": "Maestro Version 1.04.16",
            "wavelength": 1064,
        }
    )
    credentials: tuple[str, str] | None = None
    honour_authority: bool = True
    """False: hrefs always name the server's own host (a server that ignores ``authority``)."""
    td_status: int = 200
    td_body: bytes | None = None
    port: int = 0
    overrides: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    """"METHOD path" -> (status, body, content type) answered instead (``GET data-point-event``)."""
    hang: set[str] = field(default_factory=set)
    """"METHOD path" never answered (until the server closes)."""
    abort: set[str] = field(default_factory=set)
    """"METHOD path" whose connection is closed without an answer (a proxy or server restarting)."""
    requests: list[str] = field(default_factory=list)
    _streams: dict[str, list[asyncio.Queue[bytes | None]]] = field(default_factory=dict)
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    _requested: asyncio.Event = field(default_factory=asyncio.Event)
    _subscriptions: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Return the Thing's base URL."""
        return f"http://127.0.0.1:{self.port}/{THING_ID}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a port of the system's choice)."""
        app = web.Application()
        app.router.add_get(f"/{THING_ID}/resources/wot-td", self._td)
        app.router.add_get("/liveness", self._liveness)
        app.router.add_route("*", f"/{THING_ID}/{{path:.+}}", self._resource)
        # Handlers end with their client (a hanging one too), and closing never waits for them long.
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=0.5,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """End every stream and stop listening."""
        for queues in self._streams.values():
            for queue in queues:
                queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def subscribers(self, path: str) -> int:
        """Return how many clients are subscribed to an SSE path (``data-point-event``)."""
        return len(self._streams.get(path, []))

    async def wait_subscribed(self, path: str, count: int = 1) -> None:
        """Wait (bounded) until ``path`` was subscribed to ``count`` times and is subscribed now."""
        async with asyncio.timeout(5):
            while self._subscriptions.get(path, 0) < count or not self.subscribers(
                path
            ):
                self._subscribed.clear()
                await self._subscribed.wait()

    async def wait_unsubscribed(self) -> None:
        """Wait (bounded) until no client is subscribed to anything."""
        async with asyncio.timeout(5):
            while any(self._streams.values()):
                self._subscribed.clear()
                await self._subscribed.wait()

    def count(self, marker: str) -> int:
        """Return how many requests so far contain ``marker``."""
        return sum(marker in request for request in self.requests)

    async def wait_requests(self, marker: str, count: int) -> None:
        """Wait (bounded) until ``count`` requests containing ``marker`` were served."""
        async with asyncio.timeout(5):
            while self.count(marker) < count:
                self._requested.clear()
                await self._requested.wait()

    def _log(self, line: str) -> None:
        self.requests.append(line)
        self._requested.set()

    def send(self, path: str, data: bytes) -> None:
        """Write raw bytes into every subscription of ``path``."""
        for queue in self._streams.get(path, []):
            queue.put_nowait(data)

    def end_streams(self, path: str) -> None:
        """Close every subscription of ``path`` (as a server restarting its handler would)."""
        for queue in self._streams.get(path, []):
            queue.put_nowait(None)

    # ------------------------------------------------------------------ handlers

    def _authorized(self, request: web.Request) -> bool:
        if self.credentials is None:
            return True
        user, password = self.credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return request.headers.get("Authorization") == expected

    async def _td(self, request: web.Request) -> web.StreamResponse:
        self._log(f"GET {request.path_qs}")
        if not self._authorized(request):
            return web.Response(status=401)
        if self.td_body is not None:
            return web.Response(status=self.td_status, body=self.td_body)
        authority = request.query.get("authority")
        origin = (
            json.loads(authority)
            if authority and self.honour_authority
            else f"http://{SERVER_HOST}:{self.port}"
        )
        return web.json_response(_moved(self.td, origin), status=self.td_status)

    async def _liveness(self, request: web.Request) -> web.StreamResponse:
        self._log("GET liveness")
        if "GET liveness" in self.hang:
            await asyncio.Event().wait()
        return web.Response(text="")

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self._log(f"{request.method} {path}")
        if not self._authorized(request):
            return web.Response(status=401)
        key = f"{request.method} {path}"
        if key in self.hang:
            await asyncio.Event().wait()
        if key in self.abort and request.transport is not None:
            request.transport.abort()
            return web.Response()
        if key in self.overrides:
            status, body, content_type = self.overrides[key]
            return web.Response(status=status, body=body, content_type=content_type)
        if path.endswith("-event") and request.method == "GET":
            return await self._stream(request, path)
        name = path.removesuffix("/change-event").replace("-", "_")
        if path.endswith("/change-event"):
            return await self._stream(request, path)
        if request.method == "GET" and name in self.properties:
            return web.json_response(self.properties[name])
        if request.method == "PUT" and name in self.properties:
            value = await request.json()
            if isinstance(value, int | float) and value > 25000:
                return web.json_response(
                    {
                        "exception": {
                            "message": f"given value must be at most 25000, not {value}",
                            "type": "ValueError",
                        }
                    }
                )
            self.properties[name] = value
            return web.json_response(None)
        if request.method == "POST":
            body = await request.read()
            return web.json_response(
                {"action": name, "input": json.loads(body) if body else None}
            )
        return web.Response(status=404, text="<html>404: Not Found</html>")

    async def _stream(self, request: web.Request, path: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._streams.setdefault(path, []).append(queue)
        self._subscriptions[path] = self._subscriptions.get(path, 0) + 1
        self._subscribed.set()
        try:
            while (data := await queue.get()) is not None:
                await response.write(data)
        finally:
            self._streams[path].remove(queue)
            self._subscribed.set()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def fake_thing(**kwargs: Any) -> AsyncIterator[FakeThing]:
    """Run a scripted Thing for the duration of the block."""
    thing = FakeThing(**kwargs)
    await thing.start()
    try:
        yield thing
    finally:
        await thing.close()
