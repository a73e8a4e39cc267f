"""Errors a user sees. Every error about a row says which step, row and column it concerns."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass


class PixtillError(Exception):
    """Base class of pixtill's own errors."""


def locate(
    message: str, *, step: str | None = None, row: int | None = None, column: str | None = None
) -> str:
    """Prefix ``message`` with where it happened: ``step 'vision': row 3, column 'image': ...``."""
    where = []
    if step is not None:
        where.append(f"step {step!r}")
    place = []
    if row is not None:
        place.append(f"row {row}")
    if column is not None:
        place.append(f"column {column!r}")
    if place:
        where.append(", ".join(place))
    return ": ".join([*where, message])


class RowError(PixtillError, ValueError):
    """One row could not be used. The row is named; its neighbours are unaffected."""

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.step = step
        self.row = row
        self.column = column
        super().__init__(locate(message, step=step, row=row, column=column))


class MissingColumnError(RowError):
    """A row lacks a column that the step requires."""


class StepConfigError(PixtillError, ValueError):
    """A step is configured inconsistently (checked at construction or ``load()``)."""


class ModelUnavailableError(PixtillError):
    """A model cannot serve any request, for a reason that will not go away by itself: its
    server refuses connections, its host name does not resolve, it rejects the credentials
    (401/403), the endpoint does not exist (404), or every one of the first attempts failed.

    Not a row error: a task lets it propagate and the run stops with this one message. It names
    the step, the model, the URL (never a key) and the cause, with a hint when one helps.
    """

    def __init__(
        self,
        cause: str,
        *,
        url: str = "",
        hint: str = "",
        model: str | None = None,
        step: str | None = None,
    ) -> None:
        self.cause = cause
        self.url = url
        self.hint = hint
        self.model = model
        self.step = step
        super().__init__(self._message())

    def _message(self) -> str:
        who = f"model {self.model!r}" if self.model else "the model"
        at = f" at {self.url}" if self.url else ""
        text = f"{who}{at} is unavailable: {self.cause}"
        if self.hint:
            text += f"; {self.hint}"
        return locate(text, step=self.step)

    def located(
        self, *, model: str | None = None, step: str | None = None
    ) -> ModelUnavailableError:
        """The same error with the model and/or step named (kept when already set)."""
        return ModelUnavailableError(
            self.cause,
            url=self.url,
            hint=self.hint,
            model=self.model or model,
            step=self.step or step,
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_unavailable, (self.cause, self.url, self.hint, self.model, self.step))


def _rebuild_unavailable(
    cause: str, url: str, hint: str, model: str | None, step: str | None
) -> ModelUnavailableError:
    return ModelUnavailableError(cause, url=url, hint=hint, model=model, step=step)


# `locate`'s prefix, read back: ``step 'x': row 3, column 'image': cause``.
_QUOTED = r"(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_LOCATION = re.compile(
    rf"^(?:step (?P<step>{_QUOTED}): )?"
    rf"(?:(?:row (?P<row>\d+))?(?:, )?(?:column (?P<column>{_QUOTED}))?: )?"
)


@dataclass(frozen=True)
class Location:
    """A row error's message split into where it happened and why (see `split_location`)."""

    step: str | None
    row: int | None
    column: str | None
    cause: str


def split_location(message: str) -> Location:
    """The inverse of `locate`: ``"step 'v': row 2, column 'image': boom"`` ->
    ``Location("v", 2, "image", "boom")``; a message without a location is all cause."""
    match = _LOCATION.match(message)
    if match is None or not match.group(0):
        return Location(None, None, None, message)
    step, row, column = match.group("step"), match.group("row"), match.group("column")
    return Location(
        None if step is None else str(ast.literal_eval(step)),
        None if row is None else int(row),
        None if column is None else str(ast.literal_eval(column)),
        message[match.end() :],
    )


def locate_once(
    message: str, *, step: str | None = None, row: int | None = None, column: str | None = None
) -> str:
    """`locate`, unless ``message`` already says where it happened (an input error located when
    the row was formatted): the same message is never located twice."""
    if step is not None and message.startswith(f"step {step!r}: "):
        return message
    return locate(message, step=step, row=row, column=column)
