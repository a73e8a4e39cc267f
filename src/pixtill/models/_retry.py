"""The retry policy of `pixtill.models.transport` (internal): whether a failed attempt is tried
again, how long to wait first, and the `RequestError` a request that gives up raises.

Both attempt loops of the engine (requests in a window slot, and image fetches inside the slot
of the request being built) follow these rules, so they retry and fail alike.
"""

from __future__ import annotations

import logging
import random

from pixtill.models._failures import Failure, safe_url
from pixtill.models.engine_settings import EngineConfig
from pixtill.models.http import RequestError

__all__ = ["gives_up", "giving_up", "retry_delay"]

_log = logging.getLogger("pixtill.transport")


def gives_up(failure: Failure, attempt: int, timeouts: int, cfg: EngineConfig) -> bool:
    """True when the request stops after its ``attempt``-th attempt (1-based) failed with
    ``failure``: the failure is not retryable, ``cfg.max_retries`` retries are spent, or it
    timed out ``timeouts`` times, more than ``cfg.max_timeout_retries`` allows (a hung server
    must not hold a row for ``max_retries`` full timeouts)."""
    return not failure.retryable or attempt > cfg.max_retries or timeouts > cfg.max_timeout_retries


def retry_delay(failure: Failure, attempt: int, cfg: EngineConfig, method: str, url: str) -> float:
    """Seconds to wait before the next attempt after the ``attempt``-th failed with
    ``failure`` (logged at DEBUG): the server's ``Retry-After`` plus a little jitter, else
    exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
    Jitter") capped at ``cfg.backoff_max``."""
    if failure.retry_after is not None:
        delay = failure.retry_after + random.uniform(0.0, min(1.0, cfg.backoff_base))
    else:
        delay = random.uniform(0.0, min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1)))
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "retrying %s %s after %s (status %s, attempt %d/%d) in %.2fs",
            method,
            safe_url(url),
            failure.reason,
            failure.status,
            attempt,
            cfg.max_retries + 1,
            delay,
        )
    return delay


def giving_up(failure: Failure, attempts: int, method: str, url: str) -> RequestError:
    """The error a request raises after ``attempts`` attempts, the last one failing with
    ``failure``. The URL loses its query string and credentials; the body is the server's
    excerpt, which callers scrub (`RemoteModel` knows every secret)."""
    safe = safe_url(url)
    _log.debug(
        "giving up on %s %s after %s (status %s, %d attempts)",
        method,
        safe,
        failure.reason,
        failure.status,
        attempts,
    )
    return RequestError(
        failure.reason,
        status=failure.status,
        body=failure.body,
        attempts=attempts,
        retryable=failure.retryable,
        method=method,
        url=safe,
        detail=failure.detail,
        kind=failure.kind,
    )
