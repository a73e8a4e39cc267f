"""A batch result line's failure as data: the providers' batch APIs report a failed request
inside the results (OpenAI: the HTTP status the request would have had, or an error code such
as ``batch_expired``; Anthropic: an error *type* such as ``rate_limit_error``, or the result
types ``expired`` / ``canceled``). Both become a `ResultError` with the kind, HTTP status and
retryability a direct request would have had, so a row failed in a batch reads like one failed
by a direct call (``failure_<step>`` in the row's metadata, the run summary's kinds).

Sources: https://platform.openai.com/docs/guides/batch (error file lines) and
https://docs.anthropic.com/en/api/errors (error types and their HTTP statuses).
"""

from __future__ import annotations

from typing import Any

from pixtill.models.http import ErrorKind
from pixtill.models.results import ResultError

__all__ = ["anthropic_line_error", "batch_error", "openai_batch_kind", "openai_line_error"]

_RETRYABLE = {ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT, ErrorKind.SERVER, ErrorKind.CONNECTION}

# Anthropic's error types and the HTTP status each comes with.
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _of_status(message: str, status: int) -> ResultError:
    kind = ErrorKind.TIMEOUT if status == 504 else ErrorKind.of_status(status)
    return ResultError(message, kind.value, status, kind in _RETRYABLE)


def _expired(message: str) -> ResultError:
    # The provider did not get to the request within the batch's window: a later try can.
    return ResultError(message, ErrorKind.TIMEOUT.value, retryable=True)


def batch_error(message: str, kind: str) -> ResultError:
    """A request that a whole batch's failure left without a result, as ``kind``."""
    return ResultError(message, kind, retryable=kind in {k.value for k in _RETRYABLE})


def openai_batch_kind(status: str) -> str:
    """The kind of an OpenAI batch that ended without all its results: ``expired`` (the
    provider did not finish within the window: a timeout), ``failed`` (the input file was
    refused: a bad request), ``cancelled`` (no answer came: ``"model"``)."""
    if status == "expired":
        return ErrorKind.TIMEOUT.value
    if status == "failed":
        return ErrorKind.BAD_REQUEST.value
    return "model"


def openai_line_error(message: str, status: Any, error: Any) -> ResultError:
    """An OpenAI Batch API line that failed: ``status`` is its ``response.status_code``,
    ``error`` its ``error`` object (``{"code", "message"}``) or None. A 4xx/5xx status gives
    that status's kind; the ``batch_expired`` code is a timeout; a line that says neither is
    an invalid response."""
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return _of_status(message, status)
    code = error.get("code") if isinstance(error, dict) else None
    if code == "batch_expired":
        return _expired(message)
    if error:
        return ResultError(message)  # cancelled, or a code this version does not know
    return ResultError(message, ErrorKind.INVALID_RESPONSE.value)


def anthropic_line_error(message: str, result_type: Any, error: Any) -> ResultError:
    """An Anthropic Message Batches result that did not succeed: ``result_type`` is
    ``"errored"``, ``"expired"`` or ``"canceled"``; ``error`` the ``error`` object (its
    ``type`` is the API error type, possibly nested as ``{"type": "error", "error": {...}}``)."""
    if result_type == "expired":
        return _expired(message)
    while isinstance(error, dict) and error.get("type") == "error":
        error = error.get("error")
    name = error.get("type") if isinstance(error, dict) else None
    status = _ANTHROPIC_STATUS.get(name) if isinstance(name, str) else None
    if status is not None:
        return _of_status(message, status)
    return ResultError(message)
