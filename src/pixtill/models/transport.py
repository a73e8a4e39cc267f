"""The request engine: the one place in pixtill that talks to model servers.

:class:`RequestEngine` keeps up to ``max_concurrent_requests`` requests in flight as a sliding
window - the next request starts the moment any one finishes - and retries each request on its
own (429 / 408 / 5xx / timeouts / connection errors, exponential backoff with full jitter,
``Retry-After`` honoured; the policy is `pixtill.models._retry`). It is the only owner of the
window: a request holds a slot while its payload is built (``payload`` may be a coroutine
function, so images are encoded only when a slot is free) and while it is on the wire, never
while it waits out a backoff.

Adaptive concurrency (`AdaptiveLimit`): the window shrinks only when the recent 429 share says a
limit is real, at most once per window of responses (429s answered while attempts from before
the last cut still hold the server do not vote), never below the concurrency the server has just
sustained (Little's law); a real limit whose 429s carry ``Retry-After`` pauses new starts
instead; the window grows back by about one slot per window of successes. Optional
requests-per-minute and tokens-per-minute buckets pace attempts.

Fail-fast (`~pixtill.models._failfast.FailFast`): until a model request has succeeded, a
refused connection, an unknown host, 401/403, 404/405, the first ``fail_fast_attempts`` attempts
all failing, or ``fail_fast_seconds`` passing over two such failures raise
`~pixtill.errors.ModelUnavailableError`, now and for every later request of the engine.

Attempts go through a `~pixtill.models.http.Transport` (aiohttp by default, `MockTransport` in
tests) and sleeps through a `~pixtill.models.http.Clock`, so the engine's logic is tested
without sockets or wall time.

Not thread-safe: drive an engine from one event loop at a time. Secrets: headers given to the
engine are never put in reprs, exceptions or log records; logs and errors show URLs without
query string or credentials, and never payloads.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Union

from pixtill.errors import ModelUnavailableError
from pixtill.models._admission import Admission
from pixtill.models._aiohttp import AiohttpTransport
from pixtill.models._failfast import FailFast
from pixtill.models._failures import Failure, excerpt, safe_url, scrub_secrets, url_origin
from pixtill.models._ratelimit import AdaptiveLimit
from pixtill.models._retry import gives_up, giving_up, retry_delay
from pixtill.models.engine_settings import EngineConfig, EngineStats, encode_json
from pixtill.models.http import (
    Clock,
    ErrorKind,
    HttpRequest,
    RequestError,
    SystemClock,
    Transport,
    TransportError,
)
from pixtill.utils import fast_json

__all__ = [
    "Body",
    "EngineConfig",
    "EngineStats",
    "ErrorKind",
    "Payload",
    "RequestEngine",
    "RequestError",
    "encode_json",
    "scrub_secrets",
]

# A JSON payload, or a coroutine function building it once a slot is free.
Payload = Union[Mapping[str, Any], Callable[[], Awaitable[Mapping[str, Any]]]]
# A ready body (e.g. multipart form data), or a coroutine function building it in the slot.
Body = Union[bytes, Callable[[], Awaitable[bytes]]]

# The engine whose slot the running payload builder holds: `get_bytes` called from inside a
# builder (an image URL the backend must inline) runs in that slot instead of queueing for a
# second one, which at a window of 1 would wait for itself forever.
_BUILDING_IN: contextvars.ContextVar[RequestEngine | None] = contextvars.ContextVar(
    "pixtill_building_in", default=None
)


class RequestEngine:
    """Sliding-window HTTP client with per-request retries; see the module docstring.

    ``transport`` defaults to aiohttp, ``clock`` to the system clock (tests inject
    `~pixtill.models.http.MockTransport` and `~pixtill.models.http.ManualClock`).
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        clock: Clock | None = None,
        origins: Iterable[str] = (),
    ) -> None:
        cfg = config if config is not None else EngineConfig()
        self.config = cfg
        self._headers: dict[str, str] = dict(headers or {})
        # A GET to a URL a model returned or a row holds (another host) must not carry the
        # model's credentials: headers go only to the model's own origins.
        self._origins: set[str] = {url_origin(o) for o in origins if o}
        self._posted_to: set[str] = set()  # URLs whose origin is in _origins already
        self._post_headers: dict[str, str] = {"Content-Type": "application/json", **self._headers}
        self.transport: Transport = transport or AiohttpTransport(trust_env=cfg.trust_env)
        self.clock: Clock = clock or SystemClock()
        self._admission = Admission(cfg, self.clock)
        self._limit = self._admission.limit
        now = self.clock.monotonic
        self._fail_fast = FailFast(cfg.fail_fast_attempts, cfg.fail_fast_seconds, now)
        self.stats = EngineStats(concurrency_limit=self._limit.value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @property
    def limit(self) -> AdaptiveLimit:
        """The adaptive window (read its ``value`` for the current concurrency ceiling)."""
        return self._limit

    # ----------------------------------------------------------------- public API

    async def post_json(
        self,
        url: str,
        payload: Payload,
        *,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> Any:
        """POST ``payload`` as JSON; return the decoded JSON body of the 2xx response.

        ``payload`` may be a coroutine function returning the payload: it is called once, when
        the first attempt has its slot. ``tokens`` is the caller's estimate of the tokens the
        request consumes (TPM pacing). Raises :class:`RequestError` when the request finally
        fails, `ModelUnavailableError` when the server looks dead or misconfigured.
        """
        status, body, _ = await self._post(url, payload, headers, tokens)
        try:
            result = fast_json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError,
            self.stats.failed += 1  # and nesting deeper than the parser's stack
            # Many in a row, before any answer parsed: not the API at all (fail-fast).
            self._fail_fast.invalid_answer("a body that is not JSON", body, url)
            raise RequestError(
                "malformed JSON body",
                status=status,
                body=excerpt(body),
                retryable=False,
                method="POST",
                url=safe_url(url),
                detail=f"{exc}; body: {excerpt(body)}",
                kind=ErrorKind.INVALID_RESPONSE,
            ) from None
        self._fail_fast.answered()
        self.stats.done += 1
        return result

    async def post_bytes(
        self,
        url: str,
        payload: Payload,
        *,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> tuple[bytes, str]:
        """POST ``payload`` as JSON; return the raw body of the 2xx response and its media type
        (e.g. ``"image/png"``; ``"application/octet-stream"`` when the server sends none).

        For endpoints that answer with raw bytes (images). Same window, pacing, retries,
        fail-fast and size cap as :meth:`post_json`.
        """
        _, body, content_type = await self._post(url, payload, headers, tokens)
        self.stats.done += 1
        return body, content_type

    async def post_body(
        self,
        url: str,
        body: Body,
        content_type: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, str]:
        """POST ``body`` (e.g. multipart form data) sent as ``content_type``; return the raw
        body of the 2xx response and its media type. ``body`` may be a coroutine function
        building the bytes once the first attempt has its slot (it may fetch image URLs with
        :meth:`get_bytes`, in that slot). Same window, retries, fail-fast and size cap as
        :meth:`post_json` (the body is resent unchanged on a retry)."""
        hdrs = {**self._post_headers, **(headers or {}), "Content-Type": content_type}
        self._remember_origin(url)
        cfg = self.config
        _, data, media = await self._send(
            "POST", url, body, hdrs, cfg.timeout, cfg.max_response_bytes, 0, True
        )
        self.stats.done += 1
        return data, media

    async def get_bytes(
        self, url: str, *, timeout: float | None = None, max_bytes: int | None = None
    ) -> bytes:
        """GET ``url`` and return the raw body (size cap enforced while streaming).

        For URLs a model returned or a row holds (not the model's endpoint): a failure here is
        the request's own, never a reason to call the model unavailable. Called from a payload
        builder (an image the backend must inline), it runs inside that request's slot rather
        than taking a second one; otherwise it takes a slot of its own.
        """
        tmo = self.config.timeout if timeout is None else timeout
        cap = self.config.max_response_bytes if max_bytes is None else max_bytes
        if _BUILDING_IN.get() is self:
            return await self._fetch_in_slot(url, tmo, cap)
        headers = self._get_headers(url)
        body = (await self._send("GET", url, None, headers, tmo, cap, 0, False))[1]
        self.stats.done += 1
        return body

    async def close(self) -> None:
        """Close the transport's connections (the engine stays usable) and forget a previous
        "unavailable" verdict."""
        self._admission.clear()
        self._fail_fast.reset()
        await self.transport.aclose()

    async def __aenter__(self) -> RequestEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- internals

    def _get_headers(self, url: str) -> Mapping[str, str]:
        return self._headers if url_origin(url) in self._origins else {}

    def _remember_origin(self, url: str) -> None:
        # Every request POSTs to one of a few URLs: parse each URL once, not per request.
        if url not in self._posted_to:
            self._posted_to.add(url)
            self._origins.add(url_origin(url))

    async def _post(
        self, url: str, payload: Payload, headers: Mapping[str, str] | None, tokens: int
    ) -> tuple[int, bytes, str]:
        self._remember_origin(url)
        hdrs = self._post_headers if not headers else {**self._post_headers, **headers}
        cfg = self.config
        return await self._send(
            "POST", url, payload, hdrs, cfg.timeout, cfg.max_response_bytes, tokens, True
        )

    async def _send(
        self,
        method: str,
        url: str,
        payload: Payload | Body | None,
        headers: Mapping[str, str],
        timeout: float,
        max_bytes: int,
        tokens: int,
        model_request: bool,
    ) -> tuple[int, bytes, str]:
        """Run the attempts of one request; return ``(status, body, media type)`` of the 2xx
        response. ``model_request``: a request to the model's endpoint (fail-fast applies).

        The payload is built and serialised once, when the first attempt has its slot: callers
        may queue thousands of requests without holding thousands of encoded bodies.
        """
        fail_fast = self._fail_fast
        fail_fast.raise_if_unavailable()
        admission = self._admission
        pool, limit, stats, clock = admission.pool(), self._limit, self.stats, self.clock
        cfg = self.config
        data: bytes | None = None
        attempt = timeouts = 0
        limited_in = -1  # the epoch in which this request's 429s were last counted
        while True:
            attempt += 1
            await admission.pace(tokens)
            await admission.admit(pool, attempt > 1)
            epoch = limit.started()
            stats.in_flight += 1
            if model_request:
                fail_fast.started()
            try:
                fail_fast.raise_if_unavailable()
                if data is None and payload is not None:
                    if callable(payload):
                        token = _BUILDING_IN.set(self)
                        try:
                            payload = await payload()
                        finally:
                            _BUILDING_IN.reset(token)
                    # bytes: a body the caller encoded (multipart); else JSON, whose
                    # TypeError/ValueError are raised
                    data = payload if isinstance(payload, bytes) else encode_json(payload)
                started = clock.monotonic()
                resp = await self.transport.send(
                    HttpRequest(method, url, headers, data, timeout, max_bytes)
                )
            except TransportError as exc:
                failure = Failure.of_transport(exc)
            else:
                status = resp.status
                if 200 <= status < 300:
                    latency = clock.monotonic() - started
                    stats.latency_sum += latency
                    stats.latency_count += 1
                    if model_request:
                        fail_fast.healthy = True
                    if limit.record_success(epoch, latency):
                        stats.concurrency_limit = limit.value
                        pool.wake()
                    return status, resp.body, resp.content_type
                failure = Failure.of_response(resp)
            finally:
                stats.in_flight -= 1
                limit.finished(epoch)
                pool.release()

            if failure.kind is ErrorKind.RATE_LIMITED:
                stats.rate_limited += 1
                # One vote per request and epoch: a 429 comes back at once, so a request that
                # is refused again and again would otherwise outvote the slow successes.
                if epoch != limited_in:
                    limited_in = epoch
                    if limit.record_rate_limited(epoch, failure.retry_after):
                        stats.concurrency_limit = limit.value
            else:
                limit.record_response(epoch)
            if model_request:
                try:
                    fail_fast.check(failure, url, headers)
                except ModelUnavailableError:
                    stats.failed += 1
                    raise
            timeouts += failure.kind is ErrorKind.TIMEOUT
            if gives_up(failure, attempt, timeouts, cfg):
                stats.failed += 1
                raise giving_up(failure, attempt, method, url)
            stats.retried += 1
            await clock.sleep(retry_delay(failure, attempt, cfg, method, url))
            if fail_fast.unavailable is not None:
                stats.failed += 1
                raise fail_fast.unavailable

    async def _fetch_in_slot(self, url: str, timeout: float, max_bytes: int) -> bytes:
        """`get_bytes` inside the slot of the request being built: the same retries (backoff
        while still holding that slot), no window, pacing or AIMD votes of its own."""
        cfg, attempt, timeouts = self.config, 0, 0
        while True:
            attempt += 1
            try:
                resp = await self.transport.send(
                    HttpRequest("GET", url, self._get_headers(url), None, timeout, max_bytes)
                )
            except TransportError as exc:
                failure = Failure.of_transport(exc)
            else:
                if 200 <= resp.status < 300:
                    self.stats.done += 1
                    return resp.body
                failure = Failure.of_response(resp)
            timeouts += failure.kind is ErrorKind.TIMEOUT
            if gives_up(failure, attempt, timeouts, cfg):
                self.stats.failed += 1
                raise giving_up(failure, attempt, "GET", url)
            self.stats.retried += 1
            await self.clock.sleep(retry_delay(failure, attempt, cfg, "GET", url))
