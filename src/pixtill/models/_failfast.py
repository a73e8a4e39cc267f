"""The request engine's dead-server verdict (internal to `pixtill.models.transport`).

Until one model request has succeeded, `FailFast` counts the failures that look systemic and
asks `~pixtill.models._failures.systemic_cause` whether they add up to a dead or misconfigured
server; once they do, it keeps the `~pixtill.errors.ModelUnavailableError` so that every later
request of the engine raises the same error at once. A success ends the watch: after it,
failures are each request's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NoReturn

from pixtill.errors import ModelUnavailableError
from pixtill.models._failures import (
    Failure,
    safe_url,
    scrub_secrets,
    secret_values,
    systemic_cause,
)

__all__ = ["FailFast"]

_log = logging.getLogger("pixtill.transport")


class FailFast:
    """Fail-fast state of one engine. ``attempts`` / ``seconds``: the engine's
    ``fail_fast_attempts`` / ``fail_fast_seconds``; ``clock``: monotonic seconds."""

    __slots__ = (
        "_alive_at",
        "_answered",
        "_attempts",
        "_clock",
        "_failed",
        "_failed_since",
        "_first",
        "_healthy",
        "_invalid",
        "_seconds",
        "unavailable",
    )

    def __init__(self, attempts: int, seconds: float, clock: Callable[[], float]) -> None:
        self._attempts = attempts
        self._seconds = seconds
        self._clock = clock
        self._healthy = False  # a model request has succeeded
        self.unavailable: ModelUnavailableError | None = None
        self._failed = 0  # systemic-looking failures before the first success
        self._first: float | None = None  # when the first model request started
        self._alive_at = 0.0  # the last success, or answer that shows the server alive
        self._failed_since = 0  # systemic-looking failures since then
        self._answered = False  # a 2xx body was what the API promises (e.g. JSON)
        self._invalid = 0  # 2xx answers that were not, before any that was

    @property
    def healthy(self) -> bool:
        """Whether a model request has succeeded. Set on every success (the engine does), which
        also restarts the watch for a server that dies mid-run."""
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._healthy = value
        if value:
            self._alive()

    def _alive(self) -> None:
        self._alive_at = self._clock()
        self._failed_since = 0

    def reset(self) -> None:
        """Forget a verdict and the failures counted so far (the engine was closed)."""
        self.unavailable = None
        self._failed = 0
        self._first = None
        self._invalid = 0

    def raise_if_unavailable(self) -> None:
        if self.unavailable is not None:
            raise self.unavailable

    def started(self) -> None:
        """A model request's attempt is starting (the time budget runs from the first)."""
        if self._first is None:
            self._first = self._clock()

    def check(self, failure: Failure, url: str, headers: Mapping[str, str]) -> None:
        """Before any success: raise `ModelUnavailableError` when ``failure`` (with those seen
        before) says the server is dead or misconfigured; otherwise return. After a success:
        raise it only when the server died mid-run (`_check_mid_run`)."""
        if self._healthy:
            self._check_mid_run(failure, url)
            return
        if failure.counts_as_systemic:
            self._failed += 1
        waited = self._clock() - (self._first or 0.0)
        found = systemic_cause(failure, url, self._failed, self._attempts, waited, self._seconds)
        if found is None:
            return
        cause, hint = found
        tail = failure.body or failure.detail
        if tail and failure.status is not None:  # servers echo a refused key back: hide it
            cause += f": {scrub_secrets(tail, secret_values(headers))[:200]}"
        self._give_up(ModelUnavailableError(cause, url=safe_url(url), hint=hint))

    def answered(self) -> None:
        """A 2xx answer was what the API promises (it parsed): the server speaks the API. Its
        content may still be unhelpful (an empty reply); that is the row's business."""
        self._answered = True

    def invalid_answer(self, what: str, body: bytes, url: str) -> None:
        """A 2xx answer that is not what the API promises (``what``: e.g. "a body that is not
        JSON"). Before any valid answer, ``attempts`` of them in a row mean the URL is not the
        API (a web page, a proxy's login page, a base_url missing ``/v1``): raise
        `ModelUnavailableError` then (and for every request after), else return."""
        self.raise_if_unavailable()
        if self._answered or not self._attempts:
            return
        self._invalid += 1
        if self._invalid < self._attempts:
            return
        looks_html = body.lstrip().startswith(b"<")  # <!DOCTYPE html>, <html>
        if looks_html:
            cause = f"each of the first {self._invalid} answers was HTML, not JSON"
            hint = "is base_url the API's root, e.g. http://host:8000/v1?"
        else:
            cause = f"each of the first {self._invalid} answers was {what}"
            hint = "is base_url the API's root (e.g. .../v1), and does the server speak it?"
        self._give_up(ModelUnavailableError(cause, url=safe_url(url), hint=hint))

    def _check_mid_run(self, failure: Failure, url: str) -> None:
        """A server that stopped mid-run (crashed, unplugged, hung): no success nor any other
        sign of life for ``seconds``, and at least ``attempts`` attempts in a row failed with a
        refused connection, an unknown host, 5xx or a timeout. Both are needed, so a restart or
        a short outage costs the rows that ran out of retries, not the run; a dead server stops
        the run in minutes instead of failing every remaining row one by one for hours."""
        if not (failure.counts_as_systemic or failure.fatal):
            self._alive()  # a 4xx or 429 is an answer: the server is up
            return
        self._failed_since += 1
        quiet = self._clock() - self._alive_at
        if not self._attempts or self._failed_since < self._attempts or quiet < self._seconds:
            return
        self._give_up(
            ModelUnavailableError(
                f"it stopped answering mid-run: no request succeeded for {quiet:.0f} s, and the "
                f"last {self._failed_since} attempts failed (the last: {failure.reason})",
                url=safe_url(url),
                hint="did the server crash or stop? answered rows are cached: run again to "
                "resume once it is back",
            )
        )

    def _give_up(self, error: ModelUnavailableError) -> NoReturn:
        if self.unavailable is None:
            self.unavailable = error
            _log.debug("model unavailable: %s", error)
        raise self.unavailable
