"""The ``pixtill_metadata`` column: reading it from a row, refusing a value that is not one, and
failing one row of a step with its error recorded there.

A row's metadata is a dict, or a JSON string of one (as a CSV or JSON Lines file stores it), or
absent. Anything else (``"junk"``, a list) is an input error of that row alone: the step that
meets it fails the row with a `RowError` naming step, row and column, and its neighbours go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pixtill.errors import RowError
from pixtill.run_report import FAILURE_PREFIX, failure_record
from pixtill.steps.typing import Row

METADATA_COLUMN = "pixtill_metadata"


def decode_metadata(value: Any) -> dict[str, Any] | None:
    """A metadata value as a dict: a dict, a JSON string of one, or ``{}`` for None; None when
    it is none of these."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, (str, bytes)):
        try:
            decoded = json.loads(value)
        except ValueError:
            return None
        return decoded if isinstance(decoded, dict) else None
    return None


def metadata_of(row: Row) -> dict[str, Any]:
    """The row's ``pixtill_metadata`` as a dict; ``{}`` when absent or unusable (a step fails a
    row with an unusable value with `check_metadata` first)."""
    return decode_metadata(row.get(METADATA_COLUMN)) or {}


def check_metadata(row: Row, step: str, index: int | None) -> None:
    """Raise `RowError` naming step, row and column when the row's ``pixtill_metadata`` is
    neither a dict nor a JSON string of one (a string such as ``"junk"``, a list)."""
    value = row.get(METADATA_COLUMN)
    if decode_metadata(value) is None:
        raise RowError(
            f"must be a dict (or a JSON string of one), got {type(value).__name__} "
            f"{str(value)[:60]!r}",
            step=step,
            row=index,
            column=METADATA_COLUMN,
        )


def failed_row(
    row: Row,
    *,
    step: str,
    error: str,
    kind: str,
    outputs: Iterable[str] = (),
    status: int | None = None,
) -> Row:
    """``row`` failed by ``step``: its ``outputs`` set to None, ``error`` kept under
    ``pixtill_metadata["error_<step>"]`` and the failure as data, ``{"kind": kind, "status":
    status}``, under ``failure_<step>`` (see `pixtill.run_report.failure_record`: ``"input"``
    when the row's own value could not be used, ``"model"`` when the step's local model
    failed...), so that the run summary groups it under its kind. An unusable metadata value
    is replaced (the error quotes it). Every other column is kept."""
    meta = dict(metadata_of(row))
    meta[f"error_{step}"] = error
    meta[f"{FAILURE_PREFIX}{step}"] = failure_record(kind, status)
    return {**row, **dict.fromkeys(outputs), METADATA_COLUMN: meta}


__all__ = ["METADATA_COLUMN", "check_metadata", "decode_metadata", "failed_row", "metadata_of"]
