"""What a failed attempt says, as data, and the fail-fast rules that read it (internal to
`pixtill.models.transport`): classification, the dead-server causes and hints, and scrubbing of
credentials a server echoes back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pixtill.models._ratelimit import parse_retry_after
from pixtill.models.http import ErrorKind, HttpResponse, TransportError

__all__ = [
    "MAX_RETRY_AFTER",
    "Failure",
    "excerpt",
    "safe_url",
    "scrub_secrets",
    "secret_values",
    "systemic_cause",
]

_ERROR_BODY_CHARS = 500
_SYSTEMIC_KINDS = frozenset({ErrorKind.SERVER, ErrorKind.TIMEOUT, ErrorKind.CONNECTION})
MAX_RETRY_AFTER = 120.0
"""The longest ``Retry-After`` (seconds) that a request waits out; a longer one fails it."""
_V1_HINT = "OpenAI-compatible servers usually need /v1 in base_url"


@dataclass(slots=True)
class Failure:
    """Outcome of one failed attempt (internal)."""

    kind: ErrorKind
    reason: str
    status: int | None
    retryable: bool
    body: str = ""
    detail: str = ""
    retry_after: float | None = None
    fatal: bool = False

    @property
    def counts_as_systemic(self) -> bool:
        """A failure that counts towards "every one of the first N attempts failed" (5xx,
        timeouts, resets; not 429s nor 4xx, which say nothing about the server's health)."""
        return self.kind in _SYSTEMIC_KINDS and not self.fatal

    @classmethod
    def of_transport(cls, exc: TransportError) -> Failure:
        return cls(
            exc.kind, exc.reason, exc.status, exc.retryable, detail=exc.detail, fatal=exc.fatal
        )

    @classmethod
    def of_response(cls, resp: HttpResponse) -> Failure:
        status = resp.status
        kind = ErrorKind.of_status(status)
        retryable = kind in (ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT, ErrorKind.SERVER)
        reason = f"HTTP {status}"
        retry_after = None
        if retryable:
            retry_after = parse_retry_after(
                resp.headers.get("Retry-After"), max_seconds=float("inf")
            )
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            # A quota that resets in hours (or a header gone wrong): waiting would hang the row
            # and pause the whole window, so the request fails now and says why.
            reason = (
                f"HTTP {status} (Retry-After: {retry_after:.0f} s, over the "
                f"{MAX_RETRY_AFTER:.0f} s a request may wait)"
            )
            retryable, retry_after = False, None
        return cls(kind, reason, status, retryable, excerpt(resp.body), retry_after=retry_after)


def systemic_cause(
    failure: Failure,
    url: str,
    failed_attempts: int,
    fail_fast_attempts: int,
    waited: float = 0.0,
    fail_fast_seconds: float = float("inf"),
) -> tuple[str, str] | None:
    """``(cause, hint)`` when ``failure``, seen before any success, means the model cannot serve
    at all: a refused connection or unknown host, 401/403, 404/405, ``failed_attempts``
    reaching ``fail_fast_attempts`` (0: never), or at least two failed attempts and ``waited``
    seconds since the first one reaching ``fail_fast_seconds`` (a hung server at low
    concurrency). None otherwise."""
    status = failure.status
    if failure.fatal and failure.reason.startswith("TLS"):
        return (
            f"{failure.reason} ({failure.detail})" if failure.detail else failure.reason,
            "does the server speak https? a local server usually needs http:// in base_url",
        )
    if failure.fatal:
        return failure.reason, "is the server running, and are the host and port right?"
    if status in (401, 403):
        return (
            f"HTTP {status}, the server refused the credentials",
            "check the API key (api_key= or its environment variable)",
        )
    if status in (404, 405):
        hint = _V1_HINT if "/v1" not in url else "check base_url and the model name"
        return f"HTTP {status}, no such endpoint or model", hint
    if failure.counts_as_systemic and fail_fast_attempts and failed_attempts >= fail_fast_attempts:
        return (
            f"each of the first {fail_fast_attempts} attempts failed (the last: {failure.reason})",
            "is the server healthy and the URL right?",
        )
    if (
        failure.counts_as_systemic
        and fail_fast_attempts
        and failed_attempts >= 2
        and waited >= fail_fast_seconds
    ):
        return (
            f"no answer in {waited:.0f} s over {failed_attempts} attempts "
            f"(the last: {failure.reason})",
            "is the server hung or overloaded? raise timeout= if it is just slow",
        )
    return None


_SECRET_HEADER_HINTS = ("auth", "key", "token", "secret", "cookie")


def secret_values(headers: Mapping[str, str]) -> list[str]:
    """Credential values among ``headers`` (``Bearer <key>``: the key too)."""
    found: list[str] = []
    for name, value in headers.items():
        if any(hint in name.lower() for hint in _SECRET_HEADER_HINTS):
            found.append(value)
            token = value.partition(" ")[2]
            if token:
                found.append(token)
    return [v for v in found if len(v) >= 8]


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret, or the start of one that a truncated body cut (8 characters
    or more), replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
        for length in range(len(secret) - 1, 7, -1):
            if secret[:length] in text:
                text = text.replace(secret[:length], "***")
                break
    return text


def excerpt(raw: bytes | bytearray | str) -> str:
    if isinstance(raw, str):
        text = raw.strip()
    else:
        text = bytes(raw[: _ERROR_BODY_CHARS * 4]).decode("utf-8", "replace").strip()
    return text if len(text) <= _ERROR_BODY_CHARS else text[:_ERROR_BODY_CHARS] + "..."


def url_origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (RFC 6454's origin; default ports made explicit),
    lower-cased; ``""`` for a URL that does not parse."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def safe_url(url: str) -> str:
    """URL without userinfo, query string or fragment (they may carry API keys)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
