"""When an attempt may start (internal to `pixtill.models.transport`): the window's slots,
``Retry-After`` pauses of new starts, and requests/tokens-per-minute pacing.

`Admission` owns the engine's `AdaptiveLimit`, one `SlotPool` per event loop (futures belong to
one loop) and the optional token buckets; every sleep goes through the engine's clock.
"""

from __future__ import annotations

import asyncio

from pixtill.models._pacing import TokenBucket
from pixtill.models._ratelimit import AdaptiveLimit, SlotPool
from pixtill.models.engine_settings import EngineConfig
from pixtill.models.http import Clock

__all__ = ["Admission"]


class Admission:
    """Admission control of one engine, built from its `EngineConfig` and `Clock`."""

    def __init__(self, cfg: EngineConfig, clock: Clock) -> None:
        self.clock = clock
        now = clock.monotonic
        self.limit = AdaptiveLimit(
            minimum=cfg.min_concurrent_requests,
            maximum=cfg.max_concurrent_requests,
            decrease=cfg.aimd_decrease,
            threshold=cfg.aimd_threshold,
            min_sample=cfg.aimd_min_sample,
            clock=now,
        )
        rpm, tpm = cfg.requests_per_minute, cfg.tokens_per_minute
        self._rpm = TokenBucket.per_minute(rpm, clock=now) if rpm else None
        self._tpm = TokenBucket.per_minute(tpm, clock=now) if tpm else None
        self._pools: dict[asyncio.AbstractEventLoop, SlotPool] = {}

    def clear(self) -> None:
        """Forget the wait queues (the engine was closed)."""
        self._pools.clear()

    def pool(self) -> SlotPool:
        """The window's wait queue on the running loop."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            for old in [lp for lp in self._pools if lp.is_closed()]:
                del self._pools[old]
            pool = self._pools[loop] = SlotPool(self.limit)
        return pool

    async def pace(self, tokens: int) -> None:
        """Wait for this attempt's share of the per-minute budgets (``tokens``: the caller's
        estimate; 0 skips TPM). A cancelled wait gives its reservation back."""
        rpm, tpm = self._rpm, self._tpm
        if rpm is None and tpm is None:
            return
        delay = rpm.reserve(1.0) if rpm is not None else 0.0
        if tpm is not None and tokens > 0:
            delay = max(delay, tpm.reserve(float(tokens)))
        if delay > 0.0:
            try:
                await self.clock.sleep(delay)
            except asyncio.CancelledError:
                if rpm is not None:
                    rpm.refund(1.0)
                if tpm is not None and tokens > 0:
                    tpm.refund(float(tokens))
                raise

    async def admit(self, pool: SlotPool, retry: bool) -> None:
        """Take a slot, honouring a ``Retry-After`` pause of new starts. A retry queues ahead
        of first attempts, so a row that waited out a backoff does not then wait behind every
        row queued since (which would hold back a streaming pipeline's output order)."""
        limit, clock = self.limit, self.clock
        while True:
            wait = limit.paused_for()
            if wait > 0.0:
                await clock.sleep(wait)
                continue
            if not pool.try_acquire():
                await pool.acquire(first=retry)
            if limit.paused_for() > 0.0:  # the pause began while we queued
                pool.release()
                continue
            return
