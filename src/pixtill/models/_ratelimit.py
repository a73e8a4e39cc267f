"""Flow-control primitives for :mod:`pixtill.models.transport`.

* :class:`AdaptiveLimit` - the AIMD controller: the current concurrency ceiling, lowered
  multiplicatively on rate-limit responses and raised by one after a run of successes.
* :class:`SlotPool` - the sliding window: at most ``limit.value`` holders at a time, FIFO
  hand-off to waiters, capacity may change while tasks wait.  One pool per event loop (it
  creates its futures on the running loop), all pools of an engine share one ``AdaptiveLimit``.
* :class:`TokenBucket` - continuous-refill token bucket for requests/tokens per minute.  It
  holds no asyncio objects at all (reservation based: callers get the number of seconds to
  sleep), so it works from any event loop.
* :func:`parse_retry_after` - the ``Retry-After`` header in seconds.

Nothing here is thread-safe; an engine is driven from one event loop at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import time
from collections import deque
from datetime import datetime, timezone

__all__ = ["AdaptiveLimit", "SlotPool", "TokenBucket", "parse_retry_after"]


class AdaptiveLimit:
    """Additive-increase / multiplicative-decrease concurrency ceiling.

    ``epoch`` counts decreases.  A caller records the epoch when its attempt starts and hands it
    back on a rate-limit response; responses to attempts that started before the latest decrease
    are ignored, so one burst of 429s (every in-flight request hitting the same wall) lowers the
    limit once instead of collapsing it to the minimum.
    """

    __slots__ = ("_streak", "decrease", "epoch", "increase_after", "maximum", "minimum", "value")

    def __init__(
        self,
        *,
        minimum: int,
        maximum: int,
        decrease: float,
        increase_after: int,
        initial: int | None = None,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum = minimum
        self.maximum = maximum
        self.decrease = decrease
        self.increase_after = max(1, increase_after)
        self.value = maximum if initial is None else min(maximum, max(minimum, initial))
        self.epoch = 0
        self._streak = 0

    def record_success(self) -> bool:
        """Count one success; return True when the limit was raised."""
        self._streak += 1
        if self._streak < self.increase_after:
            return False
        self._streak = 0
        if self.value >= self.maximum:
            return False
        self.value += 1
        return True

    def record_rate_limited(self, epoch: int) -> bool:
        """React to a rate-limit response of an attempt started in ``epoch``.

        Return True when the limit was lowered.
        """
        self._streak = 0
        if epoch != self.epoch:
            return False
        self.epoch += 1
        new = max(self.minimum, math.floor(self.value * self.decrease))
        if new >= self.value:
            return False
        self.value = new
        return True

    def __repr__(self) -> str:
        return f"AdaptiveLimit(value={self.value}, minimum={self.minimum}, maximum={self.maximum})"


class SlotPool:
    """A semaphore whose capacity is read from an :class:`AdaptiveLimit` on every operation.

    Slots are handed over FIFO: ``release`` passes the freed slot straight to the oldest waiter,
    so late arrivals cannot overtake tasks that are already queued.  When the limit shrinks
    below the number of holders, no slot is handed out until enough holders have released.
    """

    __slots__ = ("_limit", "_waiters", "in_use")

    def __init__(self, limit: AdaptiveLimit) -> None:
        self._limit = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_use = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot without waiting if one is free and nobody is queued."""
        if self.in_use < self._limit.value and not self._waiters:
            self.in_use += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The slot was handed to us just before the cancellation landed: pass it on.
                self.release()
            else:
                with contextlib.suppress(ValueError):  # already popped by wake()
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.in_use -= 1
        if self._waiters:
            self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters (after a release or when the limit grew)."""
        waiters = self._waiters
        limit = self._limit.value
        while waiters and self.in_use < limit:
            fut = waiters.popleft()
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)


class TokenBucket:
    """Continuous-refill token bucket with reservations.

    ``reserve(cost)`` books ``cost`` tokens immediately (the level may go negative) and returns
    how long the caller must sleep before using them, so concurrent callers are served in the
    order they asked, without locks or loop-bound primitives.  A cost larger than the capacity
    only waits for a full bucket and then leaves the bucket in debt, which delays later callers:
    the long-run rate is exact.
    """

    __slots__ = ("_level", "_stamp", "capacity", "rate")

    def __init__(self, rate_per_second: float, capacity: float) -> None:
        if rate_per_second <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate_per_second
        self.capacity = capacity
        self._level = capacity
        self._stamp = time.monotonic()

    @classmethod
    def per_minute(cls, amount: float, *, burst_seconds: float = 0.1) -> TokenBucket:
        """A bucket refilled with ``amount`` per minute holding ``burst_seconds`` worth (>= 1)."""
        rate = amount / 60.0
        return cls(rate, max(1.0, rate * burst_seconds))

    def _refill(self, now: float) -> None:
        level = self._level + (now - self._stamp) * self.rate
        self._level = level if level < self.capacity else self.capacity
        self._stamp = now

    def reserve(self, cost: float = 1.0) -> float:
        """Book ``cost`` tokens; return the seconds to wait before they are available."""
        self._refill(time.monotonic())
        need = cost if cost < self.capacity else self.capacity
        wait = (need - self._level) / self.rate if self._level < need else 0.0
        self._level -= cost
        return wait

    def refund(self, cost: float = 1.0) -> None:
        """Give back a reservation that was not used (e.g. the waiting task was cancelled)."""
        self._refill(time.monotonic())
        self._level = min(self.capacity, self._level + cost)

    @property
    def level(self) -> float:
        self._refill(time.monotonic())
        return self._level

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g})"


def parse_retry_after(value: str | None, *, max_seconds: float = 600.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    None when absent or unparseable; clamped to ``[0, max_seconds]``.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), max_seconds)
