"""HTTP transport: the one place in pixtill that talks to model servers.

:class:`RequestEngine` keeps up to ``max_concurrent_requests`` requests in flight as a sliding
window - the next request starts the moment any one finishes - and retries each request on its
own (429 / 408 / 5xx / timeouts / connection errors, exponential backoff with full jitter,
``Retry-After`` honoured).  On 429 the window shrinks multiplicatively and grows back by one
after a run of successes (AIMD).  Optional requests-per-minute and tokens-per-minute buckets
pace attempts.

Sessions and the window's wait queue are kept per event loop, so sync code may drive one engine
through successive ``asyncio.run`` calls: a session is closed when its loop shuts down (via the
loop's async-generator shutdown hook) or by :meth:`RequestEngine.close`.

Not thread-safe: drive an engine from one event loop at a time.  With manually managed loops,
``await engine.close()`` before closing the loop.

Secrets: headers given to the engine are never put in reprs, exceptions or log records; logs and
errors show URLs without query string or credentials, and never payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiohttp.payload
import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from yarl import URL

from pixtill.models._ratelimit import AdaptiveLimit, SlotPool, TokenBucket, parse_retry_after
from pixtill.utils import fast_json

__all__ = [
    "EngineConfig",
    "EngineStats",
    "RequestEngine",
    "RequestError",
    "encode_json",
]

_log = logging.getLogger("pixtill.transport")

_RETRY_STATUSES = frozenset({408, 429})
_ERROR_BODY_CHARS = 500
_ERROR_READ_BYTES = 16 * 1024
_NON_RETRYABLE_CLIENT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(aiohttp, name)
    for name in ("InvalidURL", "ClientSSLError", "TooManyRedirects", "NonHttpUrlClientError")
    if hasattr(aiohttp, name)
)


_MAX_PARSED_URLS = 256


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
    """Validated knobs of a :class:`RequestEngine` (no secrets: headers are passed separately)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_requests: int = Field(64, ge=1)
    min_concurrent_requests: int = Field(1, ge=1)
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    aimd_decrease: float = Field(0.5, gt=0, le=1)
    aimd_increase_after: int = Field(20, ge=1)
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

    in_flight: int = 0  # attempts on the wire right now
    done: int = 0  # requests that succeeded
    retried: int = 0  # retries scheduled (one request may count several times)
    failed: int = 0  # requests that ended in RequestError
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


class RequestError(Exception):
    """Final failure of one request (retries exhausted, or a non-retryable outcome)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        body: str = "",
        attempts: int = 1,
        retryable: bool = False,
        method: str = "",
        url: str = "",
        detail: str = "",
    ) -> None:
        self.reason = reason
        self.status = status
        self.body = body
        self.attempts = attempts
        self.retryable = retryable
        self.method = method
        self.url = url
        self.detail = detail
        plural = "" if attempts == 1 else "s"
        msg = f"{reason} after {attempts} attempt{plural}"
        target = f"{method} {url}".strip()
        if target:
            msg += f" ({target})"
        tail = detail or body
        if tail:
            msg += f": {tail}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "status": self.status,
            "body": self.body,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "method": self.method,
            "url": self.url,
            "detail": self.detail,
        }
        return (_rebuild_error, (type(self), self.reason, kwargs))


def _rebuild_error(cls: type[RequestError], reason: str, kwargs: dict[str, Any]) -> RequestError:
    return cls(reason, **kwargs)


class _Failure(Exception):
    """Outcome of one failed attempt (internal)."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None,
        retryable: bool,
        body: str = "",
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.body = body
        self.detail = detail
        self.retry_after = retry_after


@dataclass(slots=True)
class _LoopState:
    session: aiohttp.ClientSession
    pool: SlotPool
    keeper: AsyncGenerator[None, None]


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Parked async generator: ``loop.shutdown_asyncgens()`` (run by ``asyncio.run`` before the
    loop closes) finalises it, which closes the session while its loop is still alive."""
    try:
        yield
    finally:
        await session.close()


class RequestEngine:
    """Sliding-window HTTP client with per-request retries; see the module docstring."""

    def __init__(
        self, config: EngineConfig | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        cfg = config if config is not None else EngineConfig()
        self.config = cfg
        self._headers: dict[str, str] = dict(headers or {})
        self._post_headers: dict[str, str] = {"Content-Type": "application/json", **self._headers}
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {cfg.timeout: self._timeout}
        self._limit = AdaptiveLimit(
            minimum=cfg.min_concurrent_requests,
            maximum=cfg.max_concurrent_requests,
            decrease=cfg.aimd_decrease,
            increase_after=cfg.aimd_increase_after,
        )
        self._rpm = (
            TokenBucket.per_minute(cfg.requests_per_minute) if cfg.requests_per_minute else None
        )
        self._tpm = TokenBucket.per_minute(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        self._paced = self._rpm is not None or self._tpm is not None
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._cur_loop: asyncio.AbstractEventLoop | None = None
        self._cur_state: _LoopState | None = None
        self.stats = EngineStats(concurrency_limit=self._limit.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # ----------------------------------------------------------------- public API

    async def post_json(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> Any:
        """POST ``payload`` as JSON; return the decoded JSON body of the 2xx response.

        ``tokens`` is the caller's estimate of the tokens the request consumes (TPM pacing).
        Raises :class:`RequestError` when the request finally fails.
        """
        status, body, _ = await self._post(url, payload, headers, tokens)
        try:
            result = fast_json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            self.stats.failed += 1
            raise RequestError(
                "malformed JSON body",
                status=status,
                body=_excerpt(body),
                retryable=False,
                method="POST",
                url=_safe_url(url),
                detail=f"{exc}; body: {_excerpt(body)}",
            ) from None
        self.stats.done += 1
        return result

    async def post_bytes(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> tuple[bytes, str]:
        """POST ``payload`` as JSON; return the raw body of the 2xx response and its media type
        (e.g. ``"image/png"``; ``"application/octet-stream"`` when the server sends none).

        For endpoints that answer with raw bytes (images). Same window, pacing, retries and size
        cap as :meth:`post_json`; raises :class:`RequestError` when the request finally fails.
        """
        _, body, content_type = await self._post(url, payload, headers, tokens)
        self.stats.done += 1
        return body, content_type

    async def post_body(
        self,
        url: str,
        body: bytes,
        content_type: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, str]:
        """POST a ready ``body`` (e.g. multipart form data) sent as ``content_type``; return the
        raw body of the 2xx response and its media type. Same window, retries and size cap as
        :meth:`post_json` (the body is resent unchanged on a retry)."""
        hdrs = {**self._post_headers, **(headers or {}), "Content-Type": content_type}
        _, data, media = await self._send(
            "POST", url, body, hdrs, self._timeout, self.config.max_response_bytes, 0
        )
        self.stats.done += 1
        return data, media

    async def get_bytes(
        self, url: str, *, timeout: float | None = None, max_bytes: int | None = None
    ) -> bytes:
        """GET ``url`` and return the raw body (size cap enforced while streaming)."""
        tmo = self._timeout
        if timeout is not None:
            tmo = self._timeouts.get(timeout) or aiohttp.ClientTimeout(total=timeout)
            if len(self._timeouts) < 16:
                self._timeouts[timeout] = tmo
        cap = self.config.max_response_bytes if max_bytes is None else max_bytes
        body = (await self._send("GET", url, None, self._headers, tmo, cap, 0))[1]
        self.stats.done += 1
        return body

    async def close(self) -> None:
        """Close the sessions of every loop this engine was used from (it stays usable)."""
        states = list(self._states.items())
        self._states.clear()
        self._cur_loop = self._cur_state = None
        current = asyncio.get_running_loop()
        for loop, state in states:
            if loop is current:
                await state.keeper.aclose()
            elif loop.is_running() and not loop.is_closed():
                fut = asyncio.run_coroutine_threadsafe(state.keeper.aclose(), loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(fut), 10.0)
                except Exception:  # pragma: no cover - best effort
                    _log.debug("could not close a session of another event loop")
            # A stopped loop closes its session itself at shutdown_asyncgens(); a closed one
            # already did (or cannot any more).

    async def __aenter__(self) -> RequestEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- internals

    async def _loop_state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        state = self._states.get(loop)
        if state is None or state.session.closed:
            for old in [lp for lp in self._states if lp.is_closed()]:
                del self._states[old]
            cfg = self.config
            # limit=0: the window is the only limit; pooled keep-alive connections are reused.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=cfg.trust_env
            )
            state = _LoopState(session, SlotPool(self._limit), _close_with_loop(session))
            self._states[loop] = state
            await state.keeper.__anext__()  # registers it with the loop's asyncgen hooks
        self._cur_loop = loop
        self._cur_state = state
        return state

    async def _pace(self, tokens: int) -> None:
        rpm, tpm = self._rpm, self._tpm
        delay = rpm.reserve(1.0) if rpm is not None else 0.0
        if tpm is not None and tokens > 0:
            delay = max(delay, tpm.reserve(float(tokens)))
        if delay > 0.0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                if rpm is not None:
                    rpm.refund(1.0)
                if tpm is not None and tokens > 0:
                    tpm.refund(float(tokens))
                raise

    async def _post(
        self, url: str, payload: Mapping[str, Any], headers: Mapping[str, str] | None, tokens: int
    ) -> tuple[int, bytes, str]:
        """POST ``payload`` as JSON with the engine's headers (``headers`` added), timeout and
        response size cap."""
        hdrs = self._post_headers if not headers else {**self._post_headers, **headers}
        return await self._send(
            "POST", url, payload, hdrs, self._timeout, self.config.max_response_bytes, tokens
        )

    def _parsed_url(self, url: str) -> URL:
        """``url`` parsed once: most engines send every request to one or two URLs."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_PARSED_URLS:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def _send(
        self,
        method: str,
        url: str,
        payload: Mapping[str, Any] | bytes | None,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        max_bytes: int,
        tokens: int,
    ) -> tuple[int, bytes, str]:
        """Run the attempts of one request; return ``(status, body, media type)`` of the 2xx
        response.

        The payload is serialised once, when the first attempt has its slot: callers may queue
        thousands of requests without holding thousands of encoded bodies in memory.
        """
        loop = asyncio.get_running_loop()
        state = self._cur_state
        if loop is not self._cur_loop or state is None:
            state = await self._loop_state(loop)
        session, pool, limit, stats = state.session, state.pool, self._limit, self.stats
        max_attempts = self.config.max_retries + 1
        parsed_url = self._parsed_url(url)
        data: bytes | None = None
        attempt = 0
        while True:
            attempt += 1
            if self._paced:
                await self._pace(tokens)
            if not pool.try_acquire():
                await pool.acquire()
            epoch = limit.epoch
            stats.in_flight += 1
            started = perf_counter()
            try:
                if data is None and payload is not None:
                    # bytes: a body the caller encoded (multipart); else JSON.
                    data = payload if isinstance(payload, bytes) else encode_json(payload)
                # A ready payload and a parsed URL spare aiohttp its per-request type lookup
                # and URL parsing.
                sent = None if data is None else aiohttp.payload.BytesPayload(data)
                async with session.request(
                    method, parsed_url, data=sent, headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        body = await _read_body(resp, max_bytes, status)
                        content_type = resp.content_type
                    else:
                        raise await _status_failure(resp, status)
            except _Failure as exc:
                failure = exc
            except asyncio.TimeoutError:
                failure = _Failure("timeout", status=None, retryable=True)
            except _NON_RETRYABLE_CLIENT_ERRORS as exc:
                failure = _Failure("client error", status=None, retryable=False, detail=_desc(exc))
            except (aiohttp.ClientError, OSError) as exc:
                failure = _Failure(
                    _conn_reason(exc), status=None, retryable=True, detail=_desc(exc)
                )
            else:
                stats.latency_sum += perf_counter() - started
                stats.latency_count += 1
                if limit.record_success():
                    stats.concurrency_limit = limit.value
                    pool.wake()
                return status, body, content_type
            finally:
                stats.in_flight -= 1
                pool.release()

            if failure.status == 429:
                stats.rate_limited += 1
                if limit.record_rate_limited(epoch):
                    stats.concurrency_limit = limit.value
            if not failure.retryable or attempt >= max_attempts:
                self._fail(failure, attempt, method, url)
            cfg = self.config
            delay = failure.retry_after
            if delay is not None:
                delay += random.uniform(0.0, min(1.0, cfg.backoff_base))
            else:
                delay = random.uniform(
                    0.0, min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1))
                )
            stats.retried += 1
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "retrying %s %s after %s (status %s, attempt %d/%d) in %.2fs",
                    method,
                    _safe_url(url),
                    failure.reason,
                    failure.status,
                    attempt,
                    max_attempts,
                    delay,
                )
            await asyncio.sleep(delay)

    def _fail(self, failure: _Failure, attempts: int, method: str, url: str) -> NoReturn:
        self.stats.failed += 1
        safe = _safe_url(url)
        _log.debug(
            "giving up on %s %s after %s (status %s, %d attempts)",
            method,
            safe,
            failure.reason,
            failure.status,
            attempts,
        )
        raise RequestError(
            failure.reason,
            status=failure.status,
            body=failure.body,
            attempts=attempts,
            retryable=failure.retryable,
            method=method,
            url=safe,
            detail=failure.detail,
        )


# --------------------------------------------------------------------- helpers


async def _read_body(resp: aiohttp.ClientResponse, cap: int, status: int) -> bytes:
    length = resp.content_length
    if length is not None:
        if length > cap:
            raise _too_large(status, length, cap)
        if "Content-Encoding" not in resp.headers:
            return await resp.read()
    chunks: list[bytes] = []
    size = 0
    stream = resp.content
    while True:
        chunk = await stream.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise _too_large(status, None, cap)
        chunks.append(chunk)


def _too_large(status: int, length: int | None, cap: int) -> _Failure:
    got = f"{length} bytes" if length is not None else "more"
    return _Failure(
        "response too large",
        status=status,
        retryable=False,
        detail=f"{got} exceeds max_bytes={cap}",
    )


async def _status_failure(resp: aiohttp.ClientResponse, status: int) -> _Failure:
    retryable = status in _RETRY_STATUSES or status >= 500
    retry_after = parse_retry_after(resp.headers.get("Retry-After")) if retryable else None
    chunks: list[bytes] = []
    size = 0
    try:
        while size < _ERROR_READ_BYTES:
            chunk = await resp.content.readany()
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        pass  # the status is what matters; a partial body is fine
    body = _excerpt(b"".join(chunks))
    return _Failure(
        f"HTTP {status}", status=status, retryable=retryable, body=body, retry_after=retry_after
    )


def _excerpt(raw: bytes | bytearray | str) -> str:
    if isinstance(raw, str):
        text = raw.strip()
    else:
        text = bytes(raw[: _ERROR_BODY_CHARS * 4]).decode("utf-8", "replace").strip()
    return text if len(text) <= _ERROR_BODY_CHARS else text[:_ERROR_BODY_CHARS] + "..."


def _safe_url(url: str) -> str:
    """URL without userinfo, query string or fragment (they may carry API keys)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _conn_reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "incomplete response"
    err = getattr(exc, "os_error", exc)
    errno = getattr(err, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return f"connection error ({os.strerror(errno).lower()})"
    return "connection error"


def _desc(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):  # its str() would show the full URL
        return f"{type(exc).__name__}: {exc.status} {exc.message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
