"""Flow-control primitives for :mod:`pixtill.models.transport`.

* :class:`AdaptiveLimit` - the AIMD controller: the current concurrency ceiling, lowered when
  the recent 429 share says a limit is real (or paused on ``Retry-After``), raised by about one
  slot per window of successes.
* :class:`SlotPool` - the sliding window: at most ``limit.value`` holders at a time, FIFO
  hand-off to waiters, capacity may change while tasks wait.  One pool per event loop (it
  creates its futures on the running loop), all pools of an engine share one ``AdaptiveLimit``.
  (Requests/tokens-per-minute pacing is `pixtill.models._pacing.TokenBucket`.)
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

__all__ = ["AdaptiveLimit", "SlotPool", "parse_retry_after"]


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
    * a decrease happens at most once per epoch, and an epoch's votes count only once the
      attempts started before the decrease have finished (*recovery*, `started` / `finished`):
      until then those attempts still hold the server's slots, so a 429 answered to a newer
      attempt says nothing about the new window. One burst of 429s thus lowers the limit once
      per round trip, as TCP lowers its window once per window of data. During recovery
      `value` is at most the attempts in flight at the decrease (a new attempt starts only as
      an old one ends), and recovery lasts three mean latencies at most (a hung attempt does
      not silence the 429s for its whole timeout). Callers that do not bracket attempts with
      `started` / `finished` get no recovery, only the epochs;
    * the cut is ``value * max(decrease, 1 - share / 2)`` (a cut that follows how far above
      the limit the window is; the half: 429s are answered at once, so they are
      over-represented among recent responses), but never below the concurrency the server
      has just sustained (`sustained`, Little's law over the recent successes) nor below
      ``minimum``. The floor is capped at 90 % of the window, so a cut always cuts even when
      the estimate runs high;
    * a real limit whose 429s carry ``Retry-After`` first becomes a *pause* of new starts
      (`paused_for`) without a cut; only when the limit is still real in the window after the
      pause (a concurrency limit, not a time limit) is the value cut as well;
    * every success adds ``1 / value``: about one slot per window's worth of successes (per
      round trip when the window is full), whatever the error rate.

    Sources: TCP congestion avoidance (RFC 5681, additive increase per RTT, one decrease per
    window of data; RFC 6582's recovery until the data outstanding at the loss is answered),
    Netflix's ``concurrency-limits`` AIMD limiter (decrease on a drop share), Little's law
    (L = arrival rate x time in system) as BBR uses it to size its window.

    ``clock`` returns seconds (monotonic); inject one in tests. Not thread-safe.
    """

    __slots__ = (
        "_busy",
        "_clock",
        "_cut_at",
        "_held",
        "_in_flight",
        "_limited",
        "_old_open",
        "_pause_tried",
        "_paused_until",
        "_recovery",
        "_responses",
        "_successes",
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
        self._in_flight = 0  # attempts between `started` and `finished`
        self._old_open = 0  # of those, the ones started before the last decrease
        self._recovery = -1  # the non-voting epoch handed out during recovery
        self._cut_at = -math.inf
        self._held = 0  # attempts in flight at the last decrease
        self._successes: deque[tuple[float, float]] = deque()  # (answered at, latency)
        self._busy = 0.0  # sum of the latencies in _successes

    @property
    def value(self) -> int:
        """The current ceiling (requests in flight at most). During recovery it is at most
        the number of attempts that were in flight at the decrease: a new attempt starts only
        when an old one has ended (TCP's packet conservation), so a window still above the
        server's limit does not burn its spare slots on 429s until the votes count again."""
        if self._old_open > 0 and self._recovering():
            return min(int(self._value), max(self.minimum, self._held))
        return int(self._value)

    @property
    def share(self) -> float:
        """429 share of the recent responses of this epoch (0 when there are none)."""
        return self._limited / self._responses if self._responses else 0.0

    def paused_for(self) -> float:
        """Seconds until new attempts may start (0 when not paused)."""
        left = self._paused_until - self._clock()
        return left if left > 0 else 0.0

    # ------------------------------------------------------------- attempts and Little's law

    def started(self) -> int:
        """An attempt starts now; return the epoch it belongs to (during recovery one that
        never equals `epoch`, so it does not vote). Call `finished` with the returned value
        when it ends, whatever the outcome."""
        self._in_flight += 1
        if self._old_open > 0 and self._recovering():
            return self._recovery
        return self.epoch

    def finished(self, epoch: int) -> None:
        """The attempt `started` returned ``epoch`` for has ended (answered, failed or
        cancelled)."""
        self._in_flight = max(0, self._in_flight - 1)
        if epoch < self._recovery:  # started before the last decrease
            self._old_open = max(0, self._old_open - 1)

    def _recovering(self) -> bool:
        # A hung attempt of an old epoch must not silence the 429s for its whole timeout:
        # recovery ends after a few mean latencies at most (it waits for the old attempts
        # before any success, when nothing is known about the server's time per request).
        mean = self.mean_latency
        return mean <= 0.0 or self._clock() < self._cut_at + 3.0 * mean

    @property
    def mean_latency(self) -> float:
        """Mean seconds a recent success took (0 when none is known)."""
        n = len(self._successes)
        return self._busy / n if n else 0.0

    def sustained(self) -> float:
        """Requests the server has recently held at once *and answered with success*.

        Little's law: the mean number in a system is its throughput times the mean time in it,
        here ``sum(latency of the successes answered in the last span) / span``, the span being
        ``max(1 s, 4 x mean latency)``. Requests still in flight are not counted, so it errs
        low; it falls towards 0 when nothing succeeds for longer than a mean latency."""
        now = self._clock()
        self._forget(now)
        successes = self._successes
        if not successes:
            return 0.0
        # Attempts in flight for less than a mean latency are not due yet: the span ends at
        # the last success, or one mean latency ago if that is later (a silence longer than
        # that counts). It starts at most `_span` earlier, or when the oldest success counted
        # started (after an idle stretch, the span covers only the busy time).
        end = max(successes[-1][0], now - self.mean_latency)
        start = max(end - self._span(), min(at - lat for at, lat in successes))
        return self._busy / (end - start) if end > start else 0.0

    def _span(self) -> float:
        return max(1.0, 4.0 * self.mean_latency)

    def _forget(self, now: float) -> None:
        successes, oldest = self._successes, now - self._span()
        while successes and successes[0][0] < oldest:
            self._busy -= successes.popleft()[1]
        if not successes:
            self._busy = 0.0  # no drift from float sums

    # ------------------------------------------------------------- votes

    def _count(self, epoch: int, limited: bool) -> bool:
        """Count one response; False when it belongs to another epoch (ignored)."""
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

    def record_success(self, epoch: int | None = None, latency: float | None = None) -> bool:
        """Count one success of an attempt started in ``epoch`` (default: the current one)
        that took ``latency`` seconds (None: unknown, no Little's-law sample); return True
        when the integer limit was raised."""
        self._count(self.epoch if epoch is None else epoch, False)
        if latency is not None and latency >= 0.0:
            now = self._clock()
            self._successes.append((now, latency))
            self._busy += latency
            self._forget(now)
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
        floor = min(math.floor(self.sustained()), math.floor(0.9 * self._value))
        new = max(float(self.minimum), math.floor(self._value * factor), float(floor))
        self._new_epoch()
        if new >= self._value:
            return False
        self._value = new
        return True

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _new_epoch(self) -> None:
        # Epochs only grow: everything started before this decrease has an epoch below
        # `_recovery`, which attempts started during recovery get, and `epoch` comes after.
        self._recovery = self.epoch + 1
        self.epoch += 2
        self._responses = self._limited = 0.0
        self._old_open = self._held = self._in_flight
        self._cut_at = self._clock()

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
