"""The request engine's settings and live counters, and its JSON encoder (plain data: no
sockets, no event loop)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pixtill.utils import fast_json

__all__ = ["EngineConfig", "EngineStats", "encode_json"]


def encode_json(payload: Any) -> bytes:
    """Compact JSON of ``payload`` (orjson: one C pass, even over a 40 KB data URL).

    NaN and infinities raise `ValueError`, as with ``json.dumps(allow_nan=False)``, rather than
    going out as the nulls orjson would write.
    """
    if _has_non_finite(payload):
        json.dumps(payload, allow_nan=False)  # raises, naming the problem
    return fast_json.dumps(payload, option=orjson.OPT_NON_STR_KEYS)


def _has_non_finite(value: Any) -> bool:
    """Whether a float in ``value`` is NaN or infinite (strings, however long, are skipped)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


class EngineConfig(BaseModel):
    """Validated knobs of a :class:`RequestEngine` (no secrets: headers are passed separately).

    Times in seconds. Defaults give up on a hung server in about two minutes: 60 s per attempt
    (10 s to connect), timeouts retried once per request, and fail-fast when the first
    ``fail_fast_attempts`` attempts all fail.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_requests: int = Field(64, ge=1)
    min_concurrent_requests: int = Field(1, ge=1)  # the AIMD floor
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)
    max_timeout_retries: int = Field(1, ge=0)  # a request that timed out twice has failed
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    aimd_decrease: float = Field(0.5, gt=0, le=1)  # the deepest single cut
    aimd_threshold: float = Field(0.15, gt=0, le=1)  # 429 share that means a real limit
    aimd_min_sample: int = Field(16, ge=1)  # responses before the share is trusted
    fail_fast_attempts: int = Field(8, ge=0)  # 0: never conclude the server is dead
    fail_fast_seconds: float = Field(120.0, gt=0)  # ... nor from time (see RequestEngine)
    max_response_bytes: int = Field(64 * 2**20, ge=1)
    trust_env: bool = False  # honour HTTP(S)_PROXY / NO_PROXY from the environment

    @model_validator(mode="after")
    def _check_bounds(self) -> EngineConfig:
        if self.min_concurrent_requests > self.max_concurrent_requests:
            raise ValueError("min_concurrent_requests must be <= max_concurrent_requests")
        return self


@dataclass(slots=True)
class EngineStats:
    """Live counters (plain attributes: cheap to read from a progress bar)."""

    in_flight: int = 0  # attempts holding a slot right now (building or on the wire)
    done: int = 0  # requests that succeeded
    retried: int = 0  # retries scheduled (one request may count several times)
    failed: int = 0  # requests that ended in RequestError / ModelUnavailableError
    rate_limited: int = 0  # 429 responses seen
    concurrency_limit: int = 0  # current AIMD window
    latency_sum: float = 0.0  # seconds, over successful attempts
    latency_count: int = 0

    @property
    def mean_latency(self) -> float:
        return self.latency_sum / self.latency_count if self.latency_count else 0.0

    def snapshot(self) -> dict[str, float | int]:
        return {
            "in_flight": self.in_flight,
            "done": self.done,
            "retried": self.retried,
            "failed": self.failed,
            "rate_limited": self.rate_limited,
            "concurrency_limit": self.concurrency_limit,
            "latency_sum": self.latency_sum,
            "latency_count": self.latency_count,
            "mean_latency": self.mean_latency,
        }
