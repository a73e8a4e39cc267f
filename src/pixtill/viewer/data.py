"""The viewer's model of a dataset: leaves, their columns, pages of rows and images.

Both the local server and the static export read through `ViewerData`, so both show the
same thing. Query results (which rows, in which order) are kept for the last few queries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

from pixtill.viewer.rows import Column, ImageUrl, Query, columns_of, rows_json, select_rows
from pixtill.viewer.source import Leaf, open_source
from pixtill.viewer.thumbs import (
    ImageUnavailable,
    ThumbnailCache,
    browser_image,
    make_thumbnail,
    stored_bytes,
)

DEFAULT_PAGE_ROWS = 50
MAX_PAGE_ROWS = 500
_QUERY_CACHE = 8


@dataclass(frozen=True)
class Page:
    total: int  # rows the query keeps
    offset: int
    rows: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "rows": self.rows}


class ViewerData:
    """The leaves of one source (see `open_source`) and what the viewer asks of them."""

    def __init__(self, leaves: Sequence[Leaf], title: str = "pixtill") -> None:
        self.title = title
        self.leaves = list(leaves)
        self.columns: list[list[Column]] = [columns_of(leaf.schema) for leaf in self.leaves]
        self.thumbnails = ThumbnailCache()
        self._queries: OrderedDict[tuple[int, Query], pa.Array | None] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, spec: str | Path) -> ViewerData:
        return cls(open_source(spec), title=str(spec))

    def leaves_json(self) -> list[dict[str, Any]]:
        return [
            {
                "name": leaf.name,
                "rows": leaf.num_rows,
                "columns": [c.as_json() for c in columns],
            }
            for leaf, columns in zip(self.leaves, self.columns)
        ]

    def _selection(self, leaf: int, query: Query) -> pa.Array | None:
        key = (leaf, query)
        with self._lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        selected = select_rows(self.leaves[leaf], self.columns[leaf], query)
        with self._lock:
            self._queries[key] = selected
            while len(self._queries) > _QUERY_CACHE:
                self._queries.popitem(last=False)
        return selected

    def page(self, leaf: int, query: Query, offset: int, limit: int, image_url: ImageUrl) -> Page:
        """Rows ``offset .. offset + limit`` of what ``query`` keeps of leaf number ``leaf``.

        Raises IndexError for an unknown leaf, ValueError for a bad query."""
        source = self.leaves[leaf]
        limit = max(0, min(limit, MAX_PAGE_ROWS))
        offset = max(0, offset)
        selected = self._selection(leaf, query)
        total = source.num_rows if selected is None else len(selected)
        stop = min(total, offset + limit)
        if offset >= stop:
            return Page(total, offset, [])
        if selected is None:
            indices = list(range(offset, stop))
        else:
            indices = selected.slice(offset, stop - offset).to_pylist()
        table = source.take(indices)
        return Page(total, offset, rows_json(table, indices, self.columns[leaf], image_url))

    def image(
        self, leaf: int, row: int, column: str, position: int, size: str
    ) -> tuple[bytes, str]:
        """``(bytes, MIME type)`` of one image cell: ``size`` is "thumb" or "full".

        Raises IndexError for an unknown leaf or row, KeyError for an unknown image column,
        `ImageUnavailable` when the cell holds no showable image."""
        source = self.leaves[leaf]
        kinds = {c.name: c.kind for c in self.columns[leaf]}
        if kinds.get(column) not in ("image", "images"):
            raise KeyError(f"{column!r} is not an image column")
        key = (leaf, row, column, position)
        if size == "thumb":
            cached = self.thumbnails.get(key)
            if cached is not None:
                return cached
        value = source.take([row], [column]).column(0)[0].as_py()
        if kinds[column] == "images":
            if not isinstance(value, list) or not 0 <= position < len(value):
                raise ImageUnavailable("no image at this position")
            value = value[position]
        data = stored_bytes(value)
        if size != "thumb":
            return browser_image(data)
        made = make_thumbnail(data)
        self.thumbnails.put(key, made)
        return made


__all__ = ["DEFAULT_PAGE_ROWS", "MAX_PAGE_ROWS", "Page", "ViewerData"]
