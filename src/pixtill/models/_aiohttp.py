"""The default transport: aiohttp, one pooled session per event loop.

Sessions are kept per event loop, so sync code may drive one engine through successive
``asyncio.run`` calls: a session is closed when its loop shuts down (via the loop's
async-generator shutdown hook) or by :meth:`AiohttpTransport.aclose`.

Failures without an HTTP answer become `TransportError` with a short reason; the underlying
exception's text goes to ``detail`` without the URL (``ClientResponseError`` would print it).
"""

from __future__ import annotations

import asyncio
import errno as errno_codes
import logging
import os
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import aiohttp
import aiohttp.payload
from yarl import URL

from pixtill.models.http import ErrorKind, HttpRequest, HttpResponse, TransportError

__all__ = ["AiohttpTransport"]

_log = logging.getLogger("pixtill.transport")

_ERROR_READ_BYTES = 16 * 1024
_MAX_PARSED_URLS = 256
_MAX_TIMEOUTS = 16
# Seconds to open a connection: a blackholed host fails fast even with a long read timeout.
CONNECT_TIMEOUT = 10.0
_NON_RETRYABLE_CLIENT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(aiohttp, name)
    for name in ("InvalidURL", "ClientSSLError", "TooManyRedirects", "NonHttpUrlClientError")
    if hasattr(aiohttp, name)
)
_DNS_ERRORS: tuple[type[BaseException], ...] = (
    socket.gaierror,
    *(getattr(aiohttp, name) for name in ("ClientConnectorDNSError",) if hasattr(aiohttp, name)),
)


@dataclass(slots=True)
class _LoopSession:
    session: aiohttp.ClientSession
    keeper: AsyncGenerator[None, None]


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Parked async generator: ``loop.shutdown_asyncgens()`` (run by ``asyncio.run`` before the
    loop closes) finalises it, which closes the session while its loop is still alive."""
    try:
        yield
    finally:
        await session.close()


class AiohttpTransport:
    """`Transport` over aiohttp (keep-alive pooling, no connection limit: the engine's window
    is the only limit). ``trust_env`` honours HTTP(S)_PROXY / NO_PROXY."""

    def __init__(self, *, trust_env: bool = False) -> None:
        self.trust_env = trust_env
        self._sessions: dict[asyncio.AbstractEventLoop, _LoopSession] = {}
        self._cur_loop: asyncio.AbstractEventLoop | None = None
        self._cur: _LoopSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        cur = self._cur
        if loop is self._cur_loop and cur is not None and not cur.session.closed:
            return cur.session
        state = self._sessions.get(loop)
        if state is None or state.session.closed:
            for old in [lp for lp in self._sessions if lp.is_closed()]:
                del self._sessions[old]
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, trust_env=self.trust_env)
            state = _LoopSession(session, _close_with_loop(session))
            self._sessions[loop] = state
            await state.keeper.__anext__()  # registers it with the loop's asyncgen hooks
        self._cur_loop, self._cur = loop, state
        return state.session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        tmo = self._timeouts.get(seconds)
        if tmo is None:
            tmo = aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, CONNECT_TIMEOUT))
            if len(self._timeouts) < _MAX_TIMEOUTS:
                self._timeouts[seconds] = tmo
        return tmo

    def _parsed_url(self, url: str) -> URL:
        """``url`` parsed once: most engines send every request to one or two URLs."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _MAX_PARSED_URLS:
                self._urls.clear()
            parsed = self._urls[url] = URL(url)
        return parsed

    async def send(self, request: HttpRequest) -> HttpResponse:
        session = await self._session()
        # A ready payload and a parsed URL spare aiohttp its per-request type lookup and URL
        # parsing.
        data = None if request.body is None else aiohttp.payload.BytesPayload(request.body)
        try:
            async with session.request(
                request.method,
                self._parsed_url(request.url),
                data=data,
                headers=request.headers,
                timeout=self._timeout(request.timeout),
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    body = await _read_body(resp, request.max_bytes, status)
                else:
                    body = await _read_error_body(resp)
                return HttpResponse(status, body, resp.headers, resp.content_type)
        except TransportError:
            raise
        except asyncio.TimeoutError:
            raise TransportError(ErrorKind.TIMEOUT, "timeout") from None
        except aiohttp.ClientSSLError as exc:  # https:// to a plain-http port, a bad cert
            raise TransportError(
                ErrorKind.CONNECTION,
                "TLS handshake failed",
                detail=_desc(exc),
                retryable=False,
                fatal=True,
            ) from None
        except _NON_RETRYABLE_CLIENT_ERRORS as exc:
            raise TransportError(
                ErrorKind.BAD_REQUEST, "client error", detail=_desc(exc), retryable=False
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _connection_error(exc) from None

    async def aclose(self) -> None:
        """Close the sessions of every loop this transport was used from (it stays usable)."""
        states = list(self._sessions.items())
        self._sessions.clear()
        self._cur_loop = self._cur = None
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


async def _read_error_body(resp: aiohttp.ClientResponse) -> bytes:
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
    return b"".join(chunks)


def _too_large(status: int, length: int | None, cap: int) -> TransportError:
    got = f"{length} bytes" if length is not None else "more"
    return TransportError(
        ErrorKind.INVALID_RESPONSE,
        "response too large",
        detail=f"{got} exceeds max_bytes={cap}",
        retryable=False,
        status=status,
    )


def _connection_error(exc: BaseException) -> TransportError:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(ErrorKind.CONNECTION, "server disconnected", detail=_desc(exc))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(ErrorKind.CONNECTION, "incomplete response", detail=_desc(exc))
    err = getattr(exc, "os_error", exc)
    if isinstance(exc, _DNS_ERRORS) or isinstance(err, socket.gaierror):
        return TransportError(
            ErrorKind.CONNECTION, "host name not found", detail=_desc(exc), fatal=True
        )
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0:
        fatal = code in (errno_codes.ECONNREFUSED, errno_codes.EHOSTUNREACH)
        reason = f"connection error ({os.strerror(code).lower()})"
        return TransportError(ErrorKind.CONNECTION, reason, detail=_desc(exc), fatal=fatal)
    return TransportError(ErrorKind.CONNECTION, "connection error", detail=_desc(exc))


def _desc(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):  # its str() would show the full URL
        return f"{type(exc).__name__}: {exc.status} {exc.message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
