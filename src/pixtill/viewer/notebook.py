"""Small HTML galleries for notebooks: `Distiset._repr_html_` and `gallery(dataset)`.

The first few rows of each table, images as small inline thumbnails (data URLs) and text
cells escaped with `html.escape`, so a caption is always shown as text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

from pixtill.viewer.rows import column_kind, row_error
from pixtill.viewer.thumbs import ImageUnavailable, make_thumbnail, stored_bytes

GALLERY_ROWS = 6
_THUMB_SIDE = 96
_TEXT = 240  # characters of a text cell shown
_STYLE = (
    "<style>.pixtill-gallery table{border-collapse:collapse;font-size:12px}"
    ".pixtill-gallery td,.pixtill-gallery th{border:1px solid #ddd;padding:4px;"
    "vertical-align:top;text-align:left;max-width:280px}"
    ".pixtill-gallery tr.failed td{background:#fdecea}"
    ".pixtill-gallery img{max-width:96px;max-height:96px}</style>"
)


def _thumb(value: Any) -> str:
    try:
        body, mime = make_thumbnail(stored_bytes(value), _THUMB_SIDE)
    except ImageUnavailable:
        return "<span>—</span>"
    encoded = base64.b64encode(body).decode("ascii")
    return f'<img src="data:{mime};base64,{encoded}" alt="image">'


def _cell(kind: str, value: Any) -> str:
    if value is None:
        return "—"
    if kind == "image":
        return _thumb(value)
    if kind == "images":
        return " ".join(_thumb(v) for v in value[:4])
    text = str(value)
    if len(text) > _TEXT:
        text = text[:_TEXT] + "…"
    return html.escape(text)


def table_html(name: str, table: pa.Table, total: int) -> str:
    """One table's gallery: its first rows (``table``) out of ``total``."""
    fields = [(f.name, column_kind(f)) for f in table.schema]
    shown = [(n, k) for n, k in fields if k in ("image", "images")]
    shown += [(n, k) for n, k in fields if k not in ("image", "images", "metadata")]
    meta = next((n for n, k in fields if k == "metadata"), None)
    head = "".join(f"<th>{html.escape(n)}</th>" for n, _ in shown)
    rows = []
    for row in table.to_pylist():
        error = row_error(row.get(meta)) if meta else None
        cells = "".join(f"<td>{_cell(k, row.get(n))}</td>" for n, k in shown)
        err = f"<td>{html.escape(error)}</td>" if error else "<td></td>"
        rows.append(f'<tr class="{"failed" if error else "row"}">{cells}{err}</tr>')
    return (
        f"<p><b>{html.escape(name)}</b>: {total} rows, {len(fields)} columns"
        f"{' (first ' + str(table.num_rows) + ')' if table.num_rows < total else ''}</p>"
        f"<table><thead><tr>{head}<th>error</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table>"
    )


def _first_rows(dataset: Any, rows: int) -> pa.Table:
    count = min(rows, len(dataset))
    return dataset.with_format("arrow")[:count] if count else dataset.data.table.slice(0, 0)


def gallery_html(datasets: Mapping[str, Any], rows: int = GALLERY_ROWS) -> str:
    """A gallery of each named `datasets.Dataset` (its first ``rows`` rows)."""
    parts = [table_html(name, _first_rows(ds, rows), len(ds)) for name, ds in datasets.items()]
    return f'<div class="pixtill-gallery">{_STYLE}{"".join(parts) or "<p>empty</p>"}</div>'


class Gallery:
    """What `gallery` returns: shown as HTML by Jupyter (``_repr_html_``)."""

    def __init__(self, datasets: Mapping[str, Any], rows: int) -> None:
        self._datasets = datasets
        self._rows = rows

    def _repr_html_(self) -> str:
        return gallery_html(self._datasets, self._rows)

    def __repr__(self) -> str:
        return f"Gallery({', '.join(self._datasets)})"


def gallery(data: Any, rows: int = GALLERY_ROWS) -> Gallery:
    """Show a `datasets.Dataset` (or a `Distiset`, or any mapping of name -> dataset) in a
    notebook: ``gallery(ds)`` as the last expression of a cell renders its first rows."""
    datasets = data if isinstance(data, Mapping) else {"dataset": data}
    return Gallery(datasets, rows)


__all__ = ["GALLERY_ROWS", "Gallery", "gallery", "gallery_html", "table_html"]
