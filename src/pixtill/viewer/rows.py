"""What the viewer shows of a row: column kinds, cells as JSON values, errors, tokens, and
queries (failed rows, text search, sort by a number) computed a batch at a time.

A row becomes ``{"row": i, "error": str | None, "tokens": {"input": n, "output": m} | None,
"cells": {column: value}}``: an image cell is ``{"thumb": url, "full": url}`` (a list of them
for a list of images, None for a missing image), text stays text (the page shows it as text,
never as HTML), numbers stay numbers, anything else is JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]

from pixtill.viewer.source import Leaf

METADATA_COLUMNS = ("pixtill_metadata", "distilabel_metadata")
MAX_TEXT = 20_000  # characters of one cell sent to the page
ImageUrl = Callable[[int, str, int, str], str]  # (row, column, position in list, size) -> URL


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "image", "images", "text", "number", "model", "metadata", "other"

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind}


def _is_image_struct(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) and {t.field(i).name for i in range(t.num_fields)} >= {
        "bytes",
        "path",
    }


def column_kind(field: pa.Field) -> str:
    t = field.type
    if field.name in METADATA_COLUMNS:
        return "metadata"
    if _is_image_struct(t):
        return "image"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_image_struct(t.value_type):
        return "images"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        name = field.name
        if name == "model_name" or name.startswith("model_name_") or name.endswith("_model"):
            return "model"
        return "text"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    return "other"


def columns_of(schema: pa.Schema) -> list[Column]:
    """The leaf's columns, images first (source and generated side by side), then the rest in
    their own order."""
    cols = [Column(f.name, column_kind(f)) for f in schema]
    return [c for c in cols if c.kind in ("image", "images")] + [
        c for c in cols if c.kind not in ("image", "images")
    ]


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # stored as JSON text when Arrow could not give it one type
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def row_error(metadata: Any) -> str | None:
    """The row's errors (``error_<step>`` keys of its metadata), one per line, or None."""
    errors = [
        str(v) for k, v in sorted(_metadata(metadata).items()) if k.startswith("error_") and v
    ]
    return "\n".join(errors) or None


def row_tokens(metadata: Any) -> dict[str, int] | None:
    """Input and output tokens summed over the ``statistics_<step>`` entries, or None."""
    total = {"input": 0, "output": 0}
    found = False
    for key, stats in _metadata(metadata).items():
        if not key.startswith("statistics_") or not isinstance(stats, dict):
            continue
        for side in ("input", "output"):
            value = stats.get(f"{side}_tokens")
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, (int, float)):
                    total[side] += int(v)
                    found = True
    return total if found else None


def _cell(column: Column, value: Any, row: int, image_url: ImageUrl) -> Any:
    if column.kind == "image":
        if not value or not (value.get("bytes") or value.get("path")):
            return None
        return {
            "thumb": image_url(row, column.name, 0, "thumb"),
            "full": image_url(row, column.name, 0, "full"),
        }
    if column.kind == "images":
        return [
            None
            if not v
            else {
                "thumb": image_url(row, column.name, k, "thumb"),
                "full": image_url(row, column.name, k, "full"),
            }
            for k, v in enumerate(value or [])
        ]
    if column.kind in ("text", "model"):
        return None if value is None else str(value)[:MAX_TEXT]
    if column.kind == "number":
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return None
        return value
    if value is None:
        return None
    return json.dumps(value, default=str, ensure_ascii=False)[:MAX_TEXT]


def rows_json(
    table: pa.Table, indices: Sequence[int], columns: Sequence[Column], image_url: ImageUrl
) -> list[dict[str, Any]]:
    """The page's rows (``table`` holds the rows at ``indices``) as JSON-ready dicts."""
    out = []
    shown = [c for c in columns if c.kind != "metadata"]
    meta = next((c.name for c in columns if c.kind == "metadata"), None)
    for position, row in enumerate(table.to_pylist()):
        index = indices[position]
        metadata = row.get(meta) if meta else None
        out.append(
            {
                "row": index,
                "error": row_error(metadata),
                "tokens": row_tokens(metadata),
                "cells": {c.name: _cell(c, row.get(c.name), index, image_url) for c in shown},
            }
        )
    return out


# -- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Which rows, in which order: only failed rows, a case-insensitive search in the text
    columns, and a sort by a numeric column (missing values last)."""

    failed: bool = False
    search: str = ""
    sort: str | None = None
    descending: bool = False

    @property
    def is_identity(self) -> bool:
        return not self.failed and not self.search and self.sort is None


def _failed_mask(values: pa.Array) -> pa.Array:
    if pa.types.is_struct(values.type):
        mask = pa.array([False] * len(values))
        for i in range(values.type.num_fields):
            field = values.type.field(i)
            if field.name.startswith("error_"):
                mask = pc.or_(mask, pc.fill_null(pc.is_valid(values.field(i)), False))
        return pc.and_(mask, pc.fill_null(pc.is_valid(values), False))
    return pa.array([row_error(v) is not None for v in values.to_pylist()])


def _as_text(values: pa.Array) -> pa.Array:
    """A column as text to search in: strings as they are, numbers and booleans cast, anything
    nested as the JSON the page shows."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    if pa.types.is_primitive(values.type):
        return pc.cast(values, pa.string())
    texts = [
        None if v is None else json.dumps(v, default=str, ensure_ascii=False)
        for v in values.to_pylist()
    ]
    return pa.array(texts, type=pa.string())


def _batches_with_offsets(
    leaf: Leaf, columns: Sequence[str]
) -> Iterator[tuple[int, pa.RecordBatch]]:
    start = 0
    for batch in leaf.scan(columns):
        yield start, batch
        start += batch.num_rows


def select_rows(leaf: Leaf, columns: Sequence[Column], query: Query) -> pa.Array | None:
    """The positions of the rows the query keeps, in display order (int64), or None for
    "every row in order". Reads only the columns the query needs, a batch at a time; the
    result holds one int64 per kept row."""
    if query.is_identity:
        return None
    by_name = {c.name: c for c in columns}
    meta = next((c.name for c in columns if c.kind == "metadata"), None)
    texts = [c.name for c in columns if c.kind in ("text", "model", "other")]
    needed: list[str] = []
    if query.failed and meta:
        needed.append(meta)
    if query.search:
        needed += texts
    if query.sort is not None:
        if by_name.get(query.sort) is None or by_name[query.sort].kind != "number":
            raise ValueError(f"cannot sort by {query.sort!r}: not a numeric column")
        needed.append(query.sort)
    needed = list(dict.fromkeys(needed))
    kept: list[pa.Array] = []
    keys: list[pa.Array] = []
    if query.failed and not meta:
        return pa.array([], type=pa.int64())
    for start, batch in _batches_with_offsets(leaf, needed):
        mask = pa.array([True] * batch.num_rows)
        if query.failed and meta:
            mask = pc.and_(mask, _failed_mask(batch.column(meta)))
        if query.search:
            hit = pa.array([False] * batch.num_rows)
            for name in texts:
                values = _as_text(batch.column(name))
                found = pc.match_substring(values, query.search, ignore_case=True)
                hit = pc.or_(hit, pc.fill_null(found, False))
            mask = pc.and_(mask, hit)
        positions = pc.indices_nonzero(mask)
        kept.append(pc.add(positions.cast(pa.int64()), start))
        if query.sort is not None:
            keys.append(pc.take(batch.column(query.sort), positions))
    selected = pa.concat_arrays(kept) if kept else pa.array([], type=pa.int64())
    if query.sort is None:
        return selected
    values = pa.concat_arrays(keys) if keys else pa.array([], type=pa.float64())
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_nan(values), None, values)
    # Missing values (and NaN) go last whatever the direction; the sort is stable.
    present = pc.indices_nonzero(pc.is_valid(values))
    missing = pc.indices_nonzero(pc.is_null(values))
    ranked = pc.array_sort_indices(
        pc.take(values, present), order="descending" if query.descending else "ascending"
    )
    order = pa.concat_arrays([pc.take(present, ranked), missing])
    return pc.take(selected, order)


__all__ = [
    "Column",
    "Query",
    "column_kind",
    "columns_of",
    "row_error",
    "row_tokens",
    "rows_json",
    "select_rows",
]
