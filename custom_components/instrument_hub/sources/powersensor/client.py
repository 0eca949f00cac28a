"""UDP transport to Powersensor plugs: one subscription per plug, discovery scans, a one-shot probe.

Why not the library's ``PlugListenerUdp``: its retry opens a new socket without closing the last one
(sockets leak towards a silent plug), a connect error ends its retries for good, and a line without
``type`` raises out of ``datagram_received``. Here each plug has **one** connected socket for as long
as it is followed; silence is answered by sending ``subscribe`` again on that socket with jittered
back-off (about 2 s doubling to 60 s), a socket that cannot be opened is retried with the same
back-off, and every line is parsed on its own (``protocol``). No Home Assistant imports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
import logging
import random
import socket
import time
from typing import Any, Final

from .protocol import (
    DISCOVER,
    EXPIRY,
    LEASE_SECONDS,
    PORT,
    WARNING,
    BadLine,
    DiscoveryAnswer,
    Report,
    SubscriptionNotice,
    normalize_mac,
    parse_datagram,
    parse_discovery_datagram,
    subscribe,
)

_LOGGER = logging.getLogger(__name__)

JITTER: Final = 0.2
"""Each back-off delay is randomised by ±20 % so that clients do not retry in lockstep."""
BACKOFF_MIN: Final = 2.0
"""Silence (two missed plug reports) after which the subscription is sent again."""
BACKOFF_MAX: Final = 60.0
SCAN_SECONDS: Final = 2.0
SCAN_INTERVAL: Final = 0.5
"""The vendor's scan: ``discover()`` every 0.5 s for 2 s."""
CLOSE_TIMEOUT: Final = 1.0

type Clock = Callable[[], float]
type ReportCallback = Callable[["PlugLink", list[Report]], None]
type BadLineCallback = Callable[["PlugLink", BadLine], None]


def _jittered(delay: float) -> float:
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


class PlugLink(asyncio.DatagramProtocol):
    """The subscription to one plug's stream, on one connected UDP socket.

    ``on_reports`` gets the reports of every datagram (the subscription's own lines are handled
    here: a ``warning`` or an ``expiry`` renews it at once); ``on_bad_line`` gets each line that
    could not be parsed. ``mac`` is the plug's MAC once known (from discovery, or learnt by the
    source from the plug's own reports).
    """

    def __init__(
        self,
        host: str,
        *,
        on_reports: ReportCallback,
        on_bad_line: BadLineCallback,
        port: int = PORT,
        mac: str | None = None,
        lease: int = LEASE_SECONDS,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        clock: Clock = time.monotonic,
    ) -> None:
        """Prepare the link; nothing is sent before ``open``."""
        self.host = host
        self.port = port
        self.mac = mac
        self._on_reports = on_reports
        self._on_bad_line = on_bad_line
        self._lease = lease
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_max, backoff_min)
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._closed_future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._delay = backoff_min
        self._closing = False
        self._open_task: asyncio.Task[None] | None = None
        self._open_failed_logged = False
        self.last_datagram: float | None = None
        self.subscribes_sent = 0
        self.datagrams = 0
        self.reports = 0
        self.bad_lines = 0
        self.socket_errors = 0
        self.sockets_opened = 0

    @property
    def endpoint(self) -> str:
        """Return ``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        """Return True while the socket is open."""
        return self._transport is not None and not self._transport.is_closing()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the socket and subscribe; a failure is retried with back-off (never raised)."""
        if self._closing or self.is_open:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(
                lambda: self, remote_addr=(self.host, self.port), family=socket.AF_INET
            )
        except OSError as err:
            # No route at boot, an address the system refuses: try again later, forever.
            level = logging.DEBUG if self._open_failed_logged else logging.WARNING
            self._open_failed_logged = True
            _LOGGER.log(
                level,
                "Cannot open a socket to the Powersensor plug %s (%s); retrying",
                self.endpoint,
                err,
            )
            self._arm(_jittered(self._delay), self._retry_open)
            self._grow_delay()
            return
        self._open_failed_logged = False

    async def close(self) -> None:
        """End the subscription (``subscribe(0)``) and close the socket; leaves no timer or socket."""
        self._closing = True
        self._cancel_timer()
        opening, self._open_task = self._open_task, None
        if opening is not None and not opening.done():
            # A socket being opened right now is closed by connection_made (it sees _closing).
            await asyncio.wait([opening], timeout=CLOSE_TIMEOUT)
        transport, self._transport = self._transport, None
        if transport is None:
            return
        with contextlib.suppress(OSError):
            transport.sendto(subscribe(0))
        transport.close()
        closed = self._closed_future
        if closed is not None and not closed.done():
            # connection_lost runs on the next loop iteration; the socket is closed then.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await asyncio.shield(closed)

    def renew(self) -> None:
        """Send the subscription again now (the plug warned, its lease ended, it was announced)."""
        if self.is_open:
            self._send_subscribe()

    def nudge(self) -> None:
        """Subscribe now with the back-off reset: the plug is known to be there (scan, announcement)."""
        self._delay = self._backoff_min
        if self.is_open:
            self._send_subscribe()
            self._arm(self._silence_wait(), self._on_silence)

    # ------------------------------------------------------------------ DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Subscribe as soon as the socket exists."""
        assert isinstance(transport, asyncio.DatagramTransport)
        self.sockets_opened += 1
        if self._closing:
            transport.close()  # closed while the socket was being opened
            return
        self._transport = transport
        self._closed_future = asyncio.get_running_loop().create_future()
        self._delay = self._backoff_min
        self._send_subscribe()
        self._arm(self._silence_wait(), self._on_silence)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Parse a datagram; the subscription's lines are handled here, the reports handed on."""
        self.datagrams += 1
        self.last_datagram = self._clock()
        self._delay = self._backoff_min
        reports: list[Report] = []
        for line in parse_datagram(data):
            match line:
                case Report():
                    reports.append(line)
                case SubscriptionNotice(subtype=subtype):
                    if subtype in (WARNING, EXPIRY):
                        self._send_subscribe()
                case BadLine():
                    self.bad_lines += 1
                    self._on_bad_line(self, line)
                case DiscoveryAnswer():
                    pass  # an answer to someone's discover(): not this stream's business
        if reports:
            self.reports += len(reports)
            self._on_reports(self, reports)

    def error_received(self, exc: Exception) -> None:
        """Count an ICMP error (port unreachable: the plug's API is down); the socket stays usable."""
        self.socket_errors += 1
        _LOGGER.debug("Powersensor plug %s: %s", self.endpoint, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Open a new socket after back-off, unless the link itself closed this one."""
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)
        if self._closing:
            return
        self._transport = None
        self._arm(_jittered(self._delay), self._retry_open)
        self._grow_delay()

    # ------------------------------------------------------------------ timers

    def _send_subscribe(self) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            transport.sendto(subscribe(self._lease))
        except OSError as err:
            self.socket_errors += 1
            _LOGGER.debug(
                "Cannot send to the Powersensor plug %s: %s", self.endpoint, err
            )
            return
        self.subscribes_sent += 1

    def _silence_wait(self) -> float:
        return _jittered(self._delay)

    def _on_silence(self) -> None:
        """Check for silence; after ``delay`` without a datagram, subscribe again and back off."""
        self._timer = None
        if not self.is_open:
            return
        now = self._clock()
        quiet_for = now - self.last_datagram if self.last_datagram is not None else None
        if quiet_for is not None and quiet_for < self._delay:
            # Heard from recently: check again when the current delay would have run out.
            self._arm(self._delay - quiet_for, self._on_silence)
            return
        self._send_subscribe()
        self._grow_delay()
        self._arm(self._silence_wait(), self._on_silence)

    def _retry_open(self) -> None:
        self._timer = None
        if self._closing:
            return
        self._open_task = asyncio.get_running_loop().create_task(
            self.open(), name=f"Powersensor plug {self.endpoint} open"
        )

    def _grow_delay(self) -> None:
        self._delay = min(self._delay * 2, self._backoff_max)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stats(self) -> dict[str, Any]:
        """Return the link's counters (for diagnostics)."""
        return {
            "open": self.is_open,
            "sockets_opened": self.sockets_opened,
            "subscribes_sent": self.subscribes_sent,
            "datagrams": self.datagrams,
            "reports": self.reports,
            "bad_lines": self.bad_lines,
            "socket_errors": self.socket_errors,
            "backoff_s": round(self._delay, 1),
        }


# --------------------------------------------------------------------------------------------------
# Discovery


class _ScanProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.warned = False

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        for answer in parse_discovery_datagram(data):
            self.found[answer.mac] = answer.ip

    def error_received(self, exc: Exception) -> None:
        # A send the system refused (no route, broadcast not allowed): once a scan, then quietly.
        level = logging.DEBUG if self.warned else logging.WARNING
        self.warned = True
        _LOGGER.log(level, "Cannot send the Powersensor discovery: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def scan(
    addresses: Iterable[str],
    *,
    port: int = PORT,
    seconds: float = SCAN_SECONDS,
    interval: float = SCAN_INTERVAL,
) -> dict[str, str]:
    """Send ``discover()`` to each address every ``interval`` for ``seconds``; return MAC -> IP.

    The addresses are broadcast addresses (or single plugs); the socket is closed whatever happens,
    also when the scan is cancelled (the vendor's scan leaves it open then).
    """
    targets = list(dict.fromkeys(addresses))
    if not targets:
        return {}
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _ScanProtocol,
        local_addr=("0.0.0.0", 0),  # noqa: S104 - answers come from the plugs' own addresses
        family=socket.AF_INET,
        allow_broadcast=True,
    )
    try:
        rounds = max(1, round(seconds / interval))
        for _ in range(rounds):
            for address in targets:
                # A refused send comes back through error_received (asyncio does not raise).
                transport.sendto(DISCOVER, (address, port))
            await asyncio.sleep(interval)
    finally:
        transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(protocol.closed)
    return dict(protocol.found)


class ProbeFailed(Exception):
    """A plug address did not stream the plug's own report in time."""


async def probe_plug(host: str, *, port: int = PORT, timeout: float = 3.0) -> str:
    """Subscribe to ``host`` and return the MAC of the plug answering there; unsubscribe again.

    The plug's own reports (``device == "plug"``) carry its MAC; a relayed sensor's do not count.
    Raises ProbeFailed when nothing answers within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    found: asyncio.Future[str] = loop.create_future()

    def on_reports(_link: PlugLink, reports: list[Report]) -> None:
        for report in reports:
            mac = normalize_mac(report.message.get("mac"))
            if report.message.get("device") == "plug" and mac and not found.done():
                found.set_result(mac)

    link = PlugLink(
        host,
        port=port,
        on_reports=on_reports,
        on_bad_line=lambda _link, _line: None,
        backoff_min=timeout,
    )
    try:
        await link.open()
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError as err:
        raise ProbeFailed(f"no Powersensor plug answered at {host}:{port}") from err
    finally:
        await link.close()
