"""``pixtill view --export DIR``: the viewer as a self-contained static folder.

The folder opens from disk (``file://``) or any static web host, with no server and no
network: ``index.html`` and its script and style, ``data/leaves.js`` and
``data/rows-<leaf>-<chunk>.js`` (the rows, loaded as scripts because browsers refuse
``fetch`` on ``file://``), and ``images/<leaf>/`` (a thumbnail and the full image of every
image cell). Search, the failed-rows filter and sorting then run in the browser.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pixtill.viewer.data import ViewerData
from pixtill.viewer.rows import Query
from pixtill.viewer.server import static_text
from pixtill.viewer.thumbs import ImageUnavailable

CHUNK_ROWS = 500
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


def _json(value: Any) -> str:
    """JSON that stays inert even if someone inlines it in HTML (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _script(variable: str, value: Any) -> str:
    # JSON is valid JavaScript; loaded as separate files, never inlined into the page.
    return f"{variable}({_json(value)});\n"


def export_static(data: ViewerData, out_dir: str | Path, *, max_rows: int | None = None) -> Path:
    """Write the static viewer of ``data`` to ``out_dir`` (created; its old ``data/`` and
    ``images/`` replaced) and return the path of its ``index.html``. ``max_rows`` caps the rows
    exported per leaf (default: all of them)."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    for old in ("data", "images", "static"):
        shutil.rmtree(root / old, ignore_errors=True)
    (root / "static").mkdir()
    (root / "data").mkdir()
    for name in ("app.js", "style.css"):
        (root / "static" / name).write_text(static_text(name), encoding="utf-8")
    leaves = data.leaves_json()
    for number, leaf in enumerate(data.leaves):
        rows = leaf.num_rows if max_rows is None else min(leaf.num_rows, max_rows)
        columns = {c.name: i for i, c in enumerate(data.columns[number])}
        images = root / "images" / str(number)
        images.mkdir(parents=True)
        written: dict[str, str] = {}

        def url(
            row: int,
            column: str,
            position: int,
            size: str,
            number: int = number,
            columns: dict[str, int] = columns,
            images: Path = images,
            written: dict[str, str] = written,
        ) -> str:
            stem = f"{row}-{columns[column]}-{position}-{size}"
            if stem not in written:
                try:
                    body, mime = data.image(number, row, column, position, size)
                except ImageUnavailable:
                    written[stem] = ""
                else:
                    name = f"{stem}.{_EXTENSIONS.get(mime, 'png')}"
                    (images / name).write_bytes(body)
                    written[stem] = f"images/{number}/{name}"
            return written[stem]

        chunks = 0
        for offset in range(0, rows, CHUNK_ROWS):
            page = data.page(number, Query(), offset, min(CHUNK_ROWS, rows - offset), url)
            part = {"leaf": number, "rows": page.rows}
            path = root / "data" / f"rows-{number}-{chunks}.js"
            path.write_text(_script("window.PIXTILL_ROWS.push", part), encoding="utf-8")
            chunks += 1
        leaves[number]["chunks"] = chunks
        leaves[number]["rows"] = rows
    info = {"title": data.title, "leaves": leaves}
    (root / "data" / "leaves.js").write_text(
        "window.PIXTILL_ROWS = [];\nwindow.PIXTILL_STATIC = " + _json(info) + ";\n",
        encoding="utf-8",
    )
    html = static_text("index.html").replace(
        "<!--pixtill:static-data-->", '<script src="data/leaves.js"></script>'
    )
    index = root / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


__all__ = ["export_static"]
