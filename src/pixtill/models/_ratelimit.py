"""Flow-control primitives for :mod:`pixtill.models.transport`.

* :class:`AdaptiveLimit` - the AIMD controller: the current concurrency ceiling, lowered when
  the recent 429 share says a limit is real (or paused on ``Retry-After``), raised by about one
  slot per window of successes.
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
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["AdaptiveLimit", "SlotPool", "TokenBucket", "parse_retry_after"]


class AdaptiveLimit:
    """Robust AIMD concurrency ceiling (additive increase, multiplicative decrease).

    The signals and what they do:

    * every response of an attempt (success, error, 429) is counted in the current *epoch*
      (the responses since the last decrease); the counts slide over about two windows
      (``max(value, min_sample)`` responses each), so the 429 *share* describes the recent past;
    * a 429 lowers the limit only when that share is at least ``threshold`` over at least half
      a window of responses (``max(value / 2, min_sample)``), i.e. when the limit is real.
      Random 429s (a few percent) never reach it; a real ceiling K does as soon as the window
      is ~15 % above K. Each request votes once per epoch (see `RequestEngine`);
    * a decrease happens at most once per epoch: attempts that started before the latest
      decrease are not counted, so one burst of 429s lowers the limit once. The new value is
      ``value * max(decrease, 1 - share / 2)`` (never below ``minimum``): a cut that follows
      how far above the limit the window is, instead of halving blindly (the half: 429s are
      answered at once, so they are over-represented among recent responses);
    * a real limit whose 429s carry ``Retry-After`` first becomes a *pause* of new starts
      (`paused_for`) without a cut; only when the limit is still real in the window after the
      pause (a concurrency limit, not a time limit) is the value cut as well;
    * every success adds ``1 / value``: about one slot per window's worth of successes (per
      round trip when the window is full), whatever the error rate.

    Sources: TCP congestion avoidance (RFC 5681, additive increase per RTT, one decrease per
    window of data), Netflix's ``concurrency-limits`` AIMD limiter (decrease on a drop share).

    ``clock`` returns seconds (monotonic); inject one in tests. Not thread-safe.
    """

    __slots__ = (
        "_clock",
        "_limited",
        "_pause_tried",
        "_paused_until",
        "_responses",
        "_value",
        "decrease",
        "epoch",
        "maximum",
        "min_sample",
        "minimum",
        "threshold",
    )

    def __init__(
        self,
        *,
        minimum: int,
        maximum: int,
        decrease: float = 0.5,
        threshold: float = 0.15,
        min_sample: int = 16,
        initial: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        if not 0 < decrease <= 1 or not 0 < threshold <= 1:
            raise ValueError("need 0 < decrease <= 1 and 0 < threshold <= 1")
        self.minimum = minimum
        self.maximum = maximum
        self.decrease = decrease
        self.threshold = threshold
        self.min_sample = max(1, min_sample)
        start = maximum if initial is None else min(maximum, max(minimum, initial))
        self._value = float(start)
        self.epoch = 0
        self._responses = 0.0
        self._limited = 0.0
        self._paused_until = -math.inf
        self._pause_tried = False
        self._clock = clock

    @property
    def value(self) -> int:
        """The current ceiling (requests in flight at most)."""
        return int(self._value)

    @property
    def share(self) -> float:
        """429 share of the recent responses of this epoch (0 when there are none)."""
        return self._limited / self._responses if self._responses else 0.0

    def paused_for(self) -> float:
        """Seconds until new attempts may start (0 when not paused)."""
        left = self._paused_until - self._clock()
        return left if left > 0 else 0.0

    def _count(self, epoch: int, limited: bool) -> bool:
        """Count one response; False when it belongs to an older epoch (ignored)."""
        if epoch != self.epoch:
            return False
        span = 2 * max(self._value, self.min_sample)
        if self._responses >= span:  # slide: the older half weighs half
            self._responses *= 0.5
            self._limited *= 0.5
        self._responses += 1
        if limited:
            self._limited += 1
        return True

    def record_success(self, epoch: int | None = None) -> bool:
        """Count one success of an attempt started in ``epoch`` (default: the current one);
        return True when the integer limit was raised."""
        self._count(self.epoch if epoch is None else epoch, False)
        if (
            self._pause_tried
            and self._responses >= self.min_sample
            and self.share < self.threshold / 4
        ):
            self._pause_tried = False  # the pause worked: the next real limit pauses again
        if self._value >= self.maximum:
            return False
        before = int(self._value)
        self._value = min(float(self.maximum), self._value + 1.0 / self._value)
        return int(self._value) > before

    def record_response(self, epoch: int | None = None) -> None:
        """Count a response that is neither a success nor a 429 (a 500, a timeout...): it
        dilutes the 429 share but does not grow the window."""
        self._count(self.epoch if epoch is None else epoch, False)

    def record_rate_limited(self, epoch: int, retry_after: float | None = None) -> bool:
        """React to a 429 of an attempt started in ``epoch``; ``retry_after`` is the server's
        ``Retry-After`` in seconds, if any. Return True when the limit was lowered."""
        if not self._count(epoch, True):
            return False
        if self._responses < max(self.min_sample, self._value / 2) or self.share < self.threshold:
            return False  # too early to tell, or random 429s: the request retries
        if retry_after is not None and not self._pause_tried:
            self._pause(retry_after)
            self._pause_tried = True
            self._new_epoch()
            return False
        if retry_after is not None:
            self._pause(retry_after)
        factor = max(self.decrease, 1.0 - self.share / 2)
        new = max(float(self.minimum), math.floor(self._value * factor))
        self._new_epoch()
        if new >= self._value:
            return False
        self._value = new
        return True

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _new_epoch(self) -> None:
        self.epoch += 1
        self._responses = self._limited = 0.0

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

    async def acquire(self, *, first: bool = False) -> None:
        """Wait for a slot; ``first`` queues ahead of everyone (a retry: its row has waited
        already, and rows behind it in a streaming pipeline wait for it)."""
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(fut)
        else:
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
