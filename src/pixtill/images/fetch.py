"""Fetching images by URL, with a timeout and a size cap, asynchronously (aiohttp, for the
event loop) or blocking (the standard library's HTTP client: no thread, no event loop)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import aiohttp

from pixtill.images.errors import ImageFetchError, preview, short

DEFAULT_FETCH_TIMEOUT: float = 30.0
DEFAULT_MAX_FETCH_BYTES: int = 50 * 2**20
_CHUNK = 64 * 1024


def _checked_url(url: str) -> str:
    shown = preview(url, 120)
    if not url.lower().startswith(("http://", "https://")):
        raise ImageFetchError(f"not an http(s) URL: {shown}")
    return shown


async def fetch_url(
    url: str,
    *,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_FETCH_BYTES,
    session: aiohttp.ClientSession | None = None,
) -> bytes:
    """GET an http(s) URL; the body may not exceed ``max_bytes`` (enforced while streaming).

    ``timeout`` (seconds) bounds the whole fetch. Raises `ImageFetchError` for an HTTP error
    status, a timeout, a connection failure or a body over the cap.
    """
    shown = _checked_url(url)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    owned = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.get(url, timeout=client_timeout) as response:
            if response.status >= 400:
                raise ImageFetchError(
                    f"GET {shown} failed: HTTP {response.status} {response.reason or ''}".rstrip()
                )
            too_big = f"GET {shown}: the body is over the limit of {max_bytes} bytes"
            if response.content_length is not None and response.content_length > max_bytes:
                raise ImageFetchError(too_big)
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise ImageFetchError(too_big)
            return bytes(body)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ImageFetchError(f"GET {shown} timed out after {timeout} s") from exc
    except aiohttp.ClientError as exc:
        raise ImageFetchError(f"GET {shown} failed: {short(exc)}") from exc
    finally:
        if owned:
            await client.close()


def fetch_url_sync(
    url: str, *, timeout: float = DEFAULT_FETCH_TIMEOUT, max_bytes: int = DEFAULT_MAX_FETCH_BYTES
) -> bytes:
    """Blocking `fetch_url` with the standard library's client (safe inside or outside an event
    loop; it blocks its caller). ``timeout`` bounds each read, and the whole fetch is checked
    against it between reads (so a trickling server is cut off within about twice ``timeout``)."""
    shown = _checked_url(url)
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "pixtill"})
    too_big = f"GET {shown}: the body is over the limit of {max_bytes} bytes"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise ImageFetchError(too_big)
            body = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                chunk = response.read(_CHUNK)
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > max_bytes:
                    raise ImageFetchError(too_big)
    except urllib.error.HTTPError as exc:
        status = f"HTTP {exc.code} {exc.reason or ''}".rstrip()
        raise ImageFetchError(f"GET {shown} failed: {status}") from None
    except TimeoutError as exc:
        raise ImageFetchError(f"GET {shown} timed out after {timeout} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ImageFetchError(f"GET {shown} timed out after {timeout} s") from exc
        cause = exc.reason if isinstance(exc.reason, BaseException) else exc
        raise ImageFetchError(f"GET {shown} failed: {short(cause)}") from exc
    except (OSError, ValueError) as exc:  # resets, bad chunked encoding, malformed URLs
        raise ImageFetchError(f"GET {shown} failed: {short(exc)}") from exc
