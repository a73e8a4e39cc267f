"""The request engine's edge: HTTP exchanges and failures as plain data, and the transport seam.

* :class:`HttpRequest` / :class:`HttpResponse` - one attempt on the wire and its answer (any
  status: the engine decides what a status means).
* :class:`ErrorKind` and :class:`RequestError` - why a request finally failed, as data: the kind
  (rate limited, timeout, connection, bad request, auth, server, invalid response), the HTTP
  status if any, and whether retrying could help.
* :class:`Transport` - what the engine sends attempts through. `AiohttpTransport`
  (``pixtill.models._aiohttp``) is the default; :class:`MockTransport` calls a handler, so the
  engine's logic (retries, backoff, AIMD, fail-fast) is tested without sockets.
* :class:`Clock` - monotonic time and sleeping; tests inject :class:`ManualClock` (a virtual
  clock) so that no engine test waits on the wall clock.

The design follows httpx's single transport seam (``httpx.MockTransport``) and NeMo Data
Designer's request/response dataclasses at the client edge.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Clock",
    "ErrorKind",
    "HttpRequest",
    "HttpResponse",
    "ManualClock",
    "MockTransport",
    "RequestError",
    "SystemClock",
    "Transport",
    "TransportError",
]


class ErrorKind(str, enum.Enum):
    """Why a request failed (a string, so it compares and serialises as its value)."""

    RATE_LIMITED = "rate_limited"  # 429
    TIMEOUT = "timeout"  # 408, or no answer in time
    CONNECTION = "connection"  # refused, reset, DNS failure, incomplete response
    BAD_REQUEST = "bad_request"  # other 4xx: the request itself is wrong (404 included)
    AUTH = "auth"  # 401 / 403
    SERVER = "server"  # 5xx
    INVALID_RESPONSE = "invalid_response"  # 2xx whose body is not what was promised

    @classmethod
    def of_status(cls, status: int) -> ErrorKind:
        if status == 429:
            return cls.RATE_LIMITED
        if status == 408:
            return cls.TIMEOUT
        if status in (401, 403):
            return cls.AUTH
        if status >= 500:
            return cls.SERVER
        return cls.BAD_REQUEST


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One attempt: ``body`` is the encoded payload (None for GET); ``timeout`` in seconds for
    the whole attempt; ``max_bytes`` caps a 2xx body (larger -> `TransportError`)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_bytes: int = 64 * 2**20


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the server answered: a 2xx body in full, other statuses' first ~16 KB."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"


class TransportError(Exception):
    """An attempt that got no usable HTTP answer (raised by a `Transport`).

    ``reason`` is short and user-facing ("connection refused", "timeout"); ``detail`` the
    underlying exception; ``fatal`` marks causes that retrying will not fix on a server that
    never answered (refused connection, unknown host) - the engine's fail-fast uses it.
    """

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        detail: str = "",
        retryable: bool = True,
        fatal: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.fatal = fatal
        self.status = status


class Transport(Protocol):
    """Sends one attempt. Returns the response whatever its status; raises `TransportError`
    when there is none (or it is too large). Must not retry: the engine does."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...

    async def aclose(self) -> None:
        """Release connections (called by `RequestEngine.close`)."""


Handler = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]


class MockTransport:
    """A transport that calls ``handler(request)`` (sync or async) instead of the network.

    The handler returns an `HttpResponse` or raises `TransportError`. ``requests`` keeps every
    attempt it saw, for assertions.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self.closed = False

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        result = self.handler(request)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, HttpResponse), "a MockTransport handler returns HttpResponse"
        return result

    async def aclose(self) -> None:
        self.closed = True


class Clock(Protocol):
    """Monotonic seconds and sleeping (injectable: see `ManualClock`)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A virtual clock for tests: time moves only when every sleeper is waiting on it.

    ``sleep(seconds)`` books a deadline and waits; once the event loop has gone
    ``settle_rounds`` turns without anyone else booking or running (the code under test is
    blocked on this clock), time jumps to the earliest pending deadline and the sleepers due
    then wake - so concurrent sleeps overlap as on a real clock, backoffs and pauses cost no
    wall time, and ``now`` ends at the latest deadline reached. ``sleeps`` records every
    requested delay (seconds); ``advance`` moves time by hand (e.g. a handler "hanging" for
    its timeout). The idea is trio's ``MockClock(autojump_threshold=0)`` for asyncio.
    """

    def __init__(self, start: float = 0.0, *, settle_rounds: int = 8) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._settle = settle_rounds
        self._pending: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._booked = 0  # bookings so far: a tie-breaker and a "something happened" marker
        self._driver: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0.0:  # already due: one turn of the loop, as on the real clock
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._booked += 1
        heapq.heappush(self._pending, (self.now + seconds, self._booked, waiter))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await waiter

    async def _drive(self) -> None:
        """Wake due sleepers whenever the loop has settled, until nobody sleeps."""
        while self._pending:
            await self._settled()
            while self._pending and self._pending[0][2].done():  # cancelled sleepers
                heapq.heappop(self._pending)
            if not self._pending:
                return
            self.now = max(self.now, self._pending[0][0])
            while self._pending and self._pending[0][0] <= self.now:
                waiter = heapq.heappop(self._pending)[2]
                if not waiter.done():
                    waiter.set_result(None)

    async def _settled(self) -> None:
        """Return once ``settle_rounds`` loop turns in a row saw no new booking and (where the
        loop shows it: asyncio's own loops) no other callback ready to run."""
        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        quiet, seen = 0, self._booked
        while quiet < self._settle:
            await asyncio.sleep(0)
            busy = seen != self._booked or bool(ready)
            seen = self._booked
            quiet = 0 if busy else quiet + 1


class RequestError(Exception):
    """Final failure of one request (retries exhausted, or a non-retryable outcome).

    Errors as data: ``kind`` (`ErrorKind`), ``status`` (HTTP status or None), ``retryable``
    (whether a later try could succeed), ``attempts``, and the safe ``url`` (no query string or
    credentials). ``str()`` reads ``HTTP 400 after 1 attempt (POST <url>): <body excerpt>``.
    """

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
        kind: ErrorKind | str | None = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.body = body
        self.attempts = attempts
        self.retryable = retryable
        self.method = method
        self.url = url
        self.detail = detail
        if kind is None:
            kind = ErrorKind.of_status(status) if status else ErrorKind.CONNECTION
        self.kind = ErrorKind(kind)
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
            "kind": self.kind.value,
        }
        return (_rebuild_error, (type(self), self.reason, kwargs))


def _rebuild_error(cls: type[RequestError], reason: str, kwargs: dict[str, Any]) -> RequestError:
    return cls(reason, **kwargs)
