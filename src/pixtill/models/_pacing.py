"""Requests/tokens-per-minute pacing for :mod:`pixtill.models.transport`.

:class:`TokenBucket` holds no asyncio objects at all (reservation based: callers get the number
of seconds to sleep), so it works from any event loop. Not thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Continuous-refill token bucket with reservations.

    ``reserve(cost)`` books ``cost`` tokens immediately (the level may go negative) and returns
    how long the caller must sleep before using them, so concurrent callers are served in the
    order they asked, without locks or loop-bound primitives.  A cost larger than the capacity
    only waits for a full bucket and then leaves the bucket in debt, which delays later callers:
    the long-run rate is exact.
    """

    __slots__ = ("_clock", "_level", "_stamp", "capacity", "rate")

    def __init__(
        self,
        rate_per_second: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate_per_second
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    @classmethod
    def per_minute(
        cls,
        amount: float,
        *,
        burst_seconds: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> TokenBucket:
        """A bucket refilled with ``amount`` per minute holding ``burst_seconds`` worth (>= 1)."""
        rate = amount / 60.0
        return cls(rate, max(1.0, rate * burst_seconds), clock=clock)

    def _refill(self, now: float) -> None:
        level = self._level + (now - self._stamp) * self.rate
        self._level = level if level < self.capacity else self.capacity
        self._stamp = now

    def reserve(self, cost: float = 1.0) -> float:
        """Book ``cost`` tokens; return the seconds to wait before they are available."""
        self._refill(self._clock())
        need = cost if cost < self.capacity else self.capacity
        wait = (need - self._level) / self.rate if self._level < need else 0.0
        self._level -= cost
        return wait

    def refund(self, cost: float = 1.0) -> None:
        """Give back a reservation that was not used (e.g. the waiting task was cancelled)."""
        self._refill(self._clock())
        self._level = min(self.capacity, self._level + cost)

    @property
    def level(self) -> float:
        self._refill(self._clock())
        return self._level

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g})"
