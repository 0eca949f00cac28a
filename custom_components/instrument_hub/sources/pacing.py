"""Bound how often a channel's state is written, showing the newest value within a stated delay.

A token bucket per paced group of channels: up to ``rate`` writes per second on average, bursts
of up to ``rate`` writes (one second's worth), so a steady stream at or below ``rate`` is written
value by value even with jitter, and anything faster is written ``rate`` times a second with the
newest value, never more than ``1 / rate`` seconds late. No Home Assistant imports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class WritePacer:
    """Call ``flush`` for offered updates, at most ``rate`` times a second on average."""

    __slots__ = (
        "_flush",
        "_handle",
        "_loop",
        "_rate",
        "_tokens",
        "_updated",
        "coalesced",
    )

    def __init__(
        self,
        rate: float,
        flush: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Allow ``rate`` flushes per second (a full bucket to begin with)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._flush = flush
        self._loop = loop or asyncio.get_running_loop()
        self._tokens = rate
        self._updated = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self.coalesced = 0
        """Updates that were folded into a later flush."""

    @property
    def max_delay(self) -> float:
        """Return the longest an update waits for its flush, in seconds."""
        return 1.0 / self._rate

    def _refill(self) -> None:
        now = self._loop.time()
        self._tokens = min(
            self._rate, self._tokens + (now - self._updated) * self._rate
        )
        self._updated = now

    def offer(self) -> None:
        """Tell the pacer there is something new; it flushes now or as soon as it may."""
        if self._handle is not None:
            self.coalesced += 1  # the flush already planned will carry the newest value
            return
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            self._flush()
            return
        self._handle = self._loop.call_later(
            (1 - self._tokens) / self._rate, self._deferred
        )

    def _deferred(self) -> None:
        self._handle = None
        self._refill()
        self._tokens = max(0.0, self._tokens - 1)
        self._flush()

    def flush_now(self) -> None:
        """Flush at once (a reset, a stop), dropping a planned flush."""
        self.cancel()
        self._flush()

    def cancel(self) -> None:
        """Drop a planned flush (nothing is called later)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
