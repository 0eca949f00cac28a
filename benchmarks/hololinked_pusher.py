"""Load generator for the hololinked row: hololinked 0.4.2's HTTP surface, pushing at a set rate.

``python -m benchmarks.hololinked_pusher``: serves on 127.0.0.1 (a port of the system's choice,
printed as ``port N``) the meter's TD (benchmarks/hololinked_stream.py), ``/liveness``, property
reads and the SSE streams, framed as hololinked writes them. Commands on stdin, answers on stdout:

    go ROUND COUNT RATE   push COUNT data points and COUNT statistics, RATE per second per stream,
                          paced on the clock; the round's last data point has energy -(ROUND + 1),
                          its last statistics the same average;
                          answers "sent ROUND COUNT" once all are written
    flood KIND COUNT MARK write COUNT frames of one loop-lag input (``FLOODS``) into the data point
                          stream back to back, then a data point with energy MARK; answers
                          "flooded KIND COUNT"
    (end of input)        stop

Every data point carries ``time.time()`` at the moment it is written, so the row can tell the latency
from push to state. A separate process, so that its CPU is not the measured process's. Stopped by
its PID by the row.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from aiohttp import web

from .hololinked_stream import (
    DATA_POINT,
    FLOODS,
    PATHS,
    PROPERTIES,
    STATISTICS,
    THING_ID,
    Meter,
    flood_frames,
    frame,
    thing_description,
)


class Pusher:
    """The served Thing: subscribers per stream, and the rounds pushed into them."""

    def __init__(self) -> None:
        """Start without subscribers."""
        self.subscribers: dict[str, list[asyncio.Queue[bytes | None]]] = {
            name: [] for name in PATHS
        }
        self.port = 0
        self.meter = Meter(random.Random(3))

    async def td(self, request: web.Request) -> web.Response:
        """Answer the TD on the authority the client asked for."""
        origin = (
            json.loads(request.query.get("authority", '""'))
            or f"http://127.0.0.1:{self.port}"
        )
        return web.json_response(thing_description(origin))

    async def liveness(self, request: web.Request) -> web.Response:
        """Answer the server's liveness probe."""
        return web.Response()

    async def resource(self, request: web.Request) -> web.StreamResponse:
        """Property reads and the event streams (change-event streams stay idle)."""
        path = request.match_info["path"]
        for name, event_path in PATHS.items():
            if path == event_path:
                return await self.stream(request, self.subscribers[name])
        if path.endswith("/change-event"):
            return await self.stream(request, [])
        if path in PROPERTIES:
            return web.json_response(PROPERTIES[path])
        return web.Response(status=404)

    async def stream(
        self, request: web.Request, subscribers: list[asyncio.Queue[bytes | None]]
    ) -> web.StreamResponse:
        """Write what is queued for this subscriber until the server stops."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        subscribers.append(queue)
        try:
            while (data := await queue.get()) is not None:
                await response.write(data)
        finally:
            subscribers.remove(queue)
        return response

    def push(self, name: str, payload: object) -> None:
        """Queue one frame for every subscriber of an event."""
        data = frame(payload)
        for queue in self.subscribers[name]:
            queue.put_nowait(data)

    async def flood(self, kind: str, count: int, marker: float) -> None:
        """Write ``count`` frames of a flood input, then a data point carrying ``marker``."""
        for queue in self.subscribers[DATA_POINT]:
            for data in flood_frames(kind, count):
                queue.put_nowait(data)
        point = self.meter.data_point(time.time())
        point["energy"] = marker
        self.push(DATA_POINT, point)
        while any(queue.qsize() for queue in self.subscribers[DATA_POINT]):
            await asyncio.sleep(0.01)

    async def round(self, index: int, count: int, rate: float) -> None:
        """Push one round, paced at ``rate`` per second per stream."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for number in range(count):
            delay = start + number / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            point = self.meter.data_point(time.time())
            if number == count - 1:
                point["energy"] = -float(index + 1)
            self.push(DATA_POINT, point)
            statistics = self.meter.statistics()
            if number == count - 1:
                statistics["avg"] = -float(
                    index + 1
                )  # the round's last statistics, marked too
            self.push(STATISTICS, statistics)
        # Let the last frames leave before answering.
        await asyncio.sleep(0)


def _answer(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main() -> int:
    """Serve until stdin closes."""
    pusher = Pusher()
    app = web.Application()
    app.router.add_get(f"/{THING_ID}/resources/wot-td", pusher.td)
    app.router.add_get("/liveness", pusher.liveness)
    app.router.add_get(f"/{THING_ID}/{{path:.+}}", pusher.resource)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pusher.port = runner.addresses[0][1]
    _answer(f"port {pusher.port}")
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while line := (await reader.readline()).decode().split():
            if line[0] == "go" and len(line) == 4:
                index, count, rate = int(line[1]), int(line[2]), float(line[3])
                await pusher.round(index, count, rate)
                _answer(f"sent {index} {count}")
            elif line[0] == "flood" and len(line) == 4 and line[1] in FLOODS:
                await pusher.flood(line[1], int(line[2]), float(line[3]))
                _answer(f"flooded {line[1]} {line[2]}")
    finally:
        for queues in pusher.subscribers.values():
            for queue in queues:
                queue.put_nowait(None)
        await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
