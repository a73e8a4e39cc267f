"""Errors a user sees. Every error about a row says which step, row and column it concerns."""

from __future__ import annotations


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
