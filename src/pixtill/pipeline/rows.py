"""Row bookkeeping shared by every executor: pure functions over plain-dict rows.

- an `Item` is a row and its key: the loader's global row number, plus a generation index per
  fan-out; the key is what the cache, the reorder buffer and joins use, and it is global, so
  rows from different shards never collide;
- `to_step_view` / `to_dataset_view` apply a step's input mappings and undo them without losing
  a column the mapping shadows;
- `delta` / `apply_delta` are what the cache stores of a step's work on a row;
- `merge_rows` joins the rows of several branches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from pixtill.images import ImageError, ImageRef, ImageType, coerce_image
from pixtill.steps.base import _Step
from pixtill.steps.metadata import metadata_of
from pixtill.steps.tasks.base import METADATA_COLUMN, _Task
from pixtill.steps.typing import Row


class Item(NamedTuple):
    """A row and its position: the generator's row number, plus a generation index per fan-out.

    A named tuple: one is made per row per step, and a frozen dataclass costs ~1 us more each."""

    key: tuple[int, ...]
    row: Row


def fan_out(item: Item, rows: list[Row]) -> list[Item]:
    """The items a row became: one keeps its key, several get a generation index each."""
    if len(rows) == 1:
        return [Item(item.key, rows[0])]
    return [Item((*item.key, k), row) for k, row in enumerate(rows)]


# -- mappings ------------------------------------------------------------------------------------


def to_step_view(step: _Step, row: Row) -> Row:
    """``row`` with the step's input mappings applied (``{step column: dataset column}``)."""
    if not step.input_mappings:
        return row
    out = dict(row)
    for step_col, data_col in step.input_mappings.items():
        if data_col in row:
            out[step_col] = row[data_col]
        elif step_col != data_col:
            # The mapped column is missing: the step must not silently read its own name
            # (the row fails with a missing-column error; the column comes back afterwards).
            out.pop(step_col, None)
    for step_col, data_col in step.input_mappings.items():
        if data_col in row and data_col != step_col and data_col not in step.input_mappings:
            del out[data_col]
    return out


def to_dataset_view(
    step: _Step, original: Row, rows: list[Row], outputs: frozenset[str] = frozenset()
) -> list[Row]:
    """The step's output ``rows`` (step view) with dataset names back, and every column of the
    ``original`` dataset row that a mapping shadowed restored: with ``{"instruction":
    "question"}`` over ``{"question": ..., "instruction": "keep me"}`` the result keeps both.
    A column the step itself writes (``outputs``, dataset names) is never overwritten."""
    mappings = step.input_mappings
    if not mappings:
        return rows
    out = []
    for row in rows:
        row = dict(row)
        renamed = {}
        for step_col, data_col in mappings.items():
            if step_col == data_col:
                continue
            if step_col in outputs:
                # an output mapped onto the input's step-side name holds it: the input's own
                # column keeps the dataset's value
                if data_col in original and data_col not in outputs:
                    renamed[data_col] = original[data_col]
                continue
            if step_col in row:
                value = row.pop(step_col)
                if data_col not in outputs:  # an output mapped onto the input replaces it
                    renamed[data_col] = value
        row.update(renamed)  # after every pop, so that swapped names swap back
        out.append(row)
    return restore_shadowed(step, original, out, outputs)


def restore_shadowed(
    step: _Step, original: Row, rows: list[Row], outputs: frozenset[str] = frozenset()
) -> list[Row]:
    """``rows`` (dataset view) with the columns of ``original`` that an input mapping shadowed
    put back, except those the step writes (``outputs``)."""
    for row in rows:
        for step_col, data_col in step.input_mappings.items():
            if step_col != data_col and step_col in original and step_col not in outputs:
                row[step_col] = original[step_col]
    return rows


# -- what a step adds ----------------------------------------------------------------------------


def output_columns(step: _Step) -> frozenset[str]:
    """The dataset columns a step writes (after its output mappings; a task's model name too)."""
    names = {*step.get_outputs(), *(["model_name"] if isinstance(step, _Task) else [])}
    return frozenset(step.output_mappings.get(n, n) for n in names)


def delta(before: Row, after: Row, outputs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What a step added or changed in a row: all the cache needs to keep. The step's own
    output columns always count, even when the value is the very object it replaced."""
    changed = {
        k: v for k, v in after.items() if k in outputs or k not in before or before[k] is not v
    }
    meta_before = metadata_of(before)
    if METADATA_COLUMN in changed:
        changed[METADATA_COLUMN] = {
            k: v for k, v in changed[METADATA_COLUMN].items() if k not in meta_before
        }
    return changed


def apply_delta(row: Row, change: Mapping[str, Any]) -> Row:
    """``row`` with a stored `delta` applied (metadata merged, not replaced)."""
    out = {**row, **change}
    if METADATA_COLUMN in change:
        out[METADATA_COLUMN] = {**metadata_of(row), **change[METADATA_COLUMN]}
    return out


def merge_rows(rows: list[Row], owned: list[frozenset[str]] | None = None) -> Row:
    """One row from the rows of several branches, metadata merged. ``owned[i]``: the columns
    that only branch ``i`` writes (`Graph.branch_columns`), taken from its row even where a
    later branch still carries an older value from above the fork; any other column is the
    same on every branch that has it (the last one's value is kept)."""
    merged: Row = {}
    meta: dict[str, Any] = {}
    for row in rows:
        merged.update(row)
        meta.update(metadata_of(row))
    for row, columns in zip(rows, owned or ()):
        for column in columns:
            if column in row:
                merged[column] = row[column]
    if meta:
        merged[METADATA_COLUMN] = meta
    return merged


# -- images --------------------------------------------------------------------------------------


def with_image_refs(step: _Step, row: Row) -> Row:
    """The row (step view) with the step's image inputs decoded into `ImageRef`s, once.

    The cache key, the task and the shard writer then share one decoded image instead of
    each decoding the base64 again. A value that does not coerce is left for the task to
    report as a row error.
    """
    image_type: ImageType = getattr(step, "image_type", "auto")
    step_side = {data: own for own, data in step.input_mappings.items()}
    out = row
    for data_column in step.image_columns():
        column = step_side.get(data_column, data_column)  # the row already has step-side names
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            refs = [_shared_ref(v, image_type) for v in value]
            new: Any = refs if any(r is not v for r, v in zip(refs, value)) else value
        else:
            new = _shared_ref(value, image_type)
        if new is not value:
            if out is row:
                out = dict(row)
            out[column] = new
    return out


def _shared_ref(value: Any, image_type: ImageType) -> Any:
    """``value`` as an `ImageRef`, or unchanged: a URL (nothing to share, and the dataset must
    not fetch it) or a value that does not coerce (the task reports it as a row error)."""
    if isinstance(value, ImageRef):
        return value
    try:
        ref = coerce_image(value, image_type)
    except ImageError:
        return value
    return value if ref.kind == "url" else ref
