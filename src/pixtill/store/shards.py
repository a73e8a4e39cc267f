"""Write a step's rows as Parquet shards while the run goes, one chunk of rows in memory.

Shards are named ``data-00000.parquet``, ``data-00001.parquet``, ... Rows are converted and
appended to the open shard a chunk at a time (a Parquet row group of at most 100 rows), so
the encoding and the disk writes happen while the run goes rather than in one burst per shard
(the last of which would delay the end of the run). A shard is written as ``<name>.tmp`` and
renamed when complete, so a reader never sees a partial file. A shard also ends early when
the schema of the rows widens (a new column, a new metadata key, a wider type): every chunk
of a shard has the shard's schema. The schemas carry the ``datasets`` features
(``huggingface`` metadata), so ``datasets`` reads image columns back as `datasets.Image`
features.

How columns are typed:

- **Image columns** (listed in ``image_columns``, or whose first non-null value is a PIL image,
  an `ImageRef`, bytes, a Hugging Face image dict or a ``data:image/`` URL) are stored as
  ``datasets.Image()``: ``{"bytes": <encoded image>, "path": <original path or None>}``. A
  column whose first value is a list of images becomes ``datasets.List(datasets.Image())``.
  A value that cannot be read as an image is stored as null, with a warning, and kept as
  given in the row's ``pixtill_metadata["original_<column>"]`` (a path as its string). An
  image column whose first non-null value is an http(s) URL stays a string column (nothing
  is fetched); images that arrive later in such a column are stored as data URLs.
- **Other columns** are typed by pyarrow. The schema of a shard is unified with the earlier
  ones (null -> any type, int -> float, struct fields added, ...): a column that is all None at
  first, or a metadata dict that gains an ``error_<step>`` key later, just widens the schema.
- **JSON fallback**: a column that pyarrow cannot type (values of mixed types, such as chat
  messages whose ``content`` is a string in one message and a list of parts in the next, an empty
  dict, an int over 64 bits) or whose new type cannot be unified with the earlier one becomes a
  JSON string column, listed in the schema metadata as ``{"pixtill": {"json_columns": [...]}}``.
  Decode it with ``json.loads``.

The schema can only be widened after a shard is on disk, so `close` rewrites the shards written
under an older schema (`pixtill.store.schema`): every shard ends up with the same final schema.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets  # type: ignore[import-untyped,unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from pixtill.images import ImageError
from pixtill.store.columns import (
    ARROW_ERRORS,
    ColumnKind,
    as_text,
    conform,
    decide,
    estimate_nbytes,
    has_empty_struct,
    informative,
    to_hf_image,
    to_json,
    unify,
)
from pixtill.store.image_column import (
    IMAGE_ARROW_TYPE,
    METADATA_COLUMN,
    ImageColumnBuffer,
    keep_originals,
    null_mask,
)
from pixtill.store.parquet_options import parquet_options
from pixtill.store.schema import Shard, reconcile, temporary

logger = logging.getLogger(__name__)

PIXTILL_METADATA_KEY = b"pixtill"

# `datasets.List` is datasets 4's name for what datasets 3 calls `Sequence`.
_LIST_FEATURE: Any = getattr(datasets, "List", None) or datasets.Sequence
_CHUNK_ROWS = 100  # rows per conversion, and per Parquet row group (as `datasets` does for images)
_CHUNK_BYTES = 64 * 2**20


class _OpenShard:
    """A shard being written: Parquet row groups and/or Arrow record batches are appended to
    temporary files, renamed into place by `finish`."""

    def __init__(
        self,
        path: Path | None,
        arrow_path: Path | None,
        schema: pa.Schema,
        json_columns: frozenset[str],
    ) -> None:
        self.path, self.arrow_path, self.schema = path, arrow_path, schema
        self.json_columns = json_columns
        self.rows = 0
        self.nbytes = 0
        self._parquet: Any = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            options = parquet_options(schema)
            self._parquet = pq.ParquetWriter(str(temporary(path)), schema, **options)
        self._arrow: Any = None
        self._arrow_sink: Any = None
        if arrow_path is not None:
            arrow_path.parent.mkdir(parents=True, exist_ok=True)
            self._arrow_sink = pa.OSFile(str(temporary(arrow_path)), "wb")
            self._arrow = pa.ipc.new_stream(self._arrow_sink, schema)

    def append(self, table: pa.Table) -> None:
        if self._parquet is not None:
            self._parquet.write_table(table)
        if self._arrow is not None:
            self._arrow.write_table(table)
        self.rows += table.num_rows
        self.nbytes += table.nbytes

    def _close_files(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._arrow is not None:
            self._arrow.close()
            self._arrow_sink.close()

    def _paths(self) -> list[Path]:
        return [p for p in (self.path, self.arrow_path) if p is not None]

    def discard(self) -> None:
        try:
            self._close_files()
        finally:
            for path in self._paths():
                temporary(path).unlink(missing_ok=True)

    def finish(self) -> None:
        self._close_files()
        for path in self._paths():
            os.replace(temporary(path), path)


class ShardWriter:
    """Writes rows as Parquet shards while a run goes; memory is bounded by one chunk.

    Not thread-safe: call it from one thread at a time. ``rows_written`` counts the rows in
    shards on disk (after `close`, all of them).

    With ``arrow_directory`` each shard is also written there as an Arrow stream file, the
    form `datasets` memory-maps: the run's result is then ready when the last shard is
    written, instead of `datasets` converting every Parquet shard again after the run.
    """

    def __init__(
        self,
        directory: Path,
        *,
        image_columns: Iterable[str] = (),
        rows_per_shard: int = 1000,
        max_shard_bytes: int = 256 * 2**20,
        arrow_directory: Path | None = None,
        parquet: bool = True,
        name_prefix: str = "data",
    ) -> None:
        if not parquet and arrow_directory is None:
            raise ValueError("a shard writer needs Parquet files, an arrow_directory, or both")
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
        if max_shard_bytes < 1:
            raise ValueError(f"max_shard_bytes must be at least 1, got {max_shard_bytes}")
        self.directory = Path(directory)
        self.arrow_directory = None if arrow_directory is None else Path(arrow_directory)
        self.parquet = parquet
        self.name_prefix = name_prefix
        self.image_columns = frozenset(image_columns)
        self.rows_per_shard = rows_per_shard
        self.max_shard_bytes = max_shard_bytes
        self.rows_written = 0
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._rows_seen = 0  # rows converted so far: the row numbers in warnings
        self._columns: dict[str, None] = {}  # first-seen order
        self._kinds: dict[str, ColumnKind] = {}
        self._types: dict[str, pa.DataType] = {}
        self._shards: list[Shard] = []
        self._open: _OpenShard | None = None
        self._image_buffers: dict[str, ImageColumnBuffer] = {}
        self._schema_memo: tuple[tuple[Any, ...], pa.Schema] | None = None
        self._lost: dict[int, dict[str, Any]] = {}  # this chunk's non-images, by row
        self._closed = False

    @property
    def pending_rows(self) -> int:
        """Rows not yet in a finished shard."""
        return len(self._pending) + (self._open.rows if self._open is not None else 0)

    @property
    def json_columns(self) -> list[str]:
        return [c for c in self._columns if self._kinds.get(c) == "json"]

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Buffer ``rows``; each full chunk is appended to the open shard."""
        if self._closed:
            raise RuntimeError(f"the shard writer for {self.directory} is closed")
        for row in rows:
            self._pending.append(row)
            self._pending_bytes += estimate_nbytes(row)
            room_rows = self.rows_per_shard - (self._open.rows if self._open else 0)
            room_bytes = self.max_shard_bytes - (self._open.nbytes if self._open else 0)
            if len(self._pending) >= min(_CHUNK_ROWS, room_rows) or self._pending_bytes >= min(
                _CHUNK_BYTES, room_bytes
            ):
                self._write_chunk()

    def close(self) -> list[Path]:
        """Write the last rows, bring every shard to the final schema, return their paths
        (the Parquet files; the Arrow files when the writer writes no Parquet)."""
        if not self._closed:
            self._write_chunk()
            self._finish_shard()
            self._closed = True
            self._reconcile()
        return [p for shard in self._shards if (p := shard.path or shard.arrow_path) is not None]

    def abort(self) -> None:
        """Give up after a failed run: close the open shard's files and remove them (finished
        shards stay). Idempotent."""
        self._closed = True
        self._pending = []
        shard, self._open = self._open, None
        if shard is not None:
            shard.discard()

    @property
    def arrow_paths(self) -> list[Path]:
        """The Arrow copies of the shards, in order (empty without ``arrow_directory``)."""
        return [shard.arrow_path for shard in self._shards if shard.arrow_path is not None]

    # -- one chunk, one shard ------------------------------------------------------------
    def _write_chunk(self) -> None:
        rows, self._pending, self._pending_bytes = self._pending, [], 0
        if not rows:
            return
        for row in rows:
            self._columns.update(dict.fromkeys(row))
        # Image columns first: a value that is no image is kept in the row's metadata, which
        # is built after them (`keep_originals`).
        self._lost = {}
        built = {
            name: self._column_array(name, rows, self._rows_seen)
            for name in self._columns
            if name != METADATA_COLUMN
        }
        if self._lost:
            keep_originals(rows, self._lost)
            self._columns.setdefault(METADATA_COLUMN)
        if METADATA_COLUMN in self._columns:
            built[METADATA_COLUMN] = self._column_array(METADATA_COLUMN, rows, self._rows_seen)
        arrays = [built[name] for name in self._columns]
        self._rows_seen += len(rows)
        schema = self._schema()
        table = pa.Table.from_arrays(arrays, schema=schema)
        if self._open is not None and not self._open.schema.equals(schema, check_metadata=True):
            self._finish_shard()  # the schema widened: these rows start the next shard
        if self._open is None:
            name = f"{self.name_prefix}-{len(self._shards):05d}"
            path = self.directory / f"{name}.parquet" if self.parquet else None
            arrow_path = None
            if self.arrow_directory is not None:
                arrow_path = self.arrow_directory / f"{name}.arrow"
            self._open = _OpenShard(path, arrow_path, schema, frozenset(self.json_columns))
        self._open.append(table)
        del table, arrays  # the image buffers are reused by the next chunk
        if self._open.rows >= self.rows_per_shard or self._open.nbytes >= self.max_shard_bytes:
            self._finish_shard()

    def _finish_shard(self) -> None:
        shard, self._open = self._open, None
        if shard is None:
            return
        shard.finish()
        self._shards.append(Shard(shard.path, shard.schema, shard.json_columns, shard.arrow_path))
        self.rows_written += shard.rows

    def _column_array(self, name: str, rows: list[dict[str, Any]], offset: int) -> pa.Array:
        values = [row.get(name) for row in rows]
        if name not in self._kinds:
            sample = informative(values)
            if sample is not None:
                self._kinds[name] = decide(sample, name in self.image_columns)
        kind = self._kinds.get(name)
        if kind == "image":
            self._types[name] = IMAGE_ARROW_TYPE
            return self._image_buffer(name).build(self._images(name, values, offset))
        if kind == "image_list":
            self._types[name] = pa.list_(IMAGE_ARROW_TYPE)
            lists = [
                None if v is None else v if isinstance(v, (list, tuple)) else [v] for v in values
            ]
            flat: list[Any] = []
            ends = [0]
            for i, images in enumerate(lists):
                if images is not None:
                    flat.extend(self._images(name, list(images), offset + i, in_list=True))
                ends.append(len(flat))
            missing = [images is None for images in lists]
            return pa.ListArray.from_arrays(
                pa.array(ends, type=pa.int32()),
                self._image_buffer(name).build(flat),
                type=self._types[name],
                mask=null_mask(missing),
            )
        if kind == "text":
            values = [self._text(name, v, offset + i) for i, v in enumerate(values)]
        if kind != "json":
            try:
                array = pa.array(values)
                if has_empty_struct(array.type):
                    raise pa.ArrowInvalid("empty struct")
                dtype = unify(self._types.get(name), array.type)
                array = conform(array, dtype)
            except ARROW_ERRORS as exc:
                logger.info("column %r is stored as JSON strings: %s", name, exc)
                self._kinds[name] = "json"
            else:
                self._types[name] = dtype
                return array
        self._types[name] = pa.string()
        return pa.array([to_json(v) for v in values], type=pa.string())

    def _image_buffer(self, name: str) -> ImageColumnBuffer:
        if name not in self._image_buffers:
            self._image_buffers[name] = ImageColumnBuffer()
        return self._image_buffers[name]

    def _images(
        self, name: str, values: list[Any], offset: int, *, in_list: bool = False
    ) -> list[Any]:
        out = []
        for i, value in enumerate(values):
            row = offset if in_list else offset + i
            try:
                out.append(to_hf_image(value, column=name, row=row))
            except (ImageError, OSError) as exc:
                logger.warning(
                    "%s: stored as null in %s, the value in %s['original_%s']",
                    exc,
                    self.directory,
                    METADATA_COLUMN,
                    name,
                )
                lost = self._lost.setdefault(row - self._rows_seen, {})
                if in_list:
                    lost.setdefault(name, []).append(value)
                else:
                    lost[name] = value
                out.append(None)
        return out

    def _text(self, name: str, value: Any, row: int) -> Any:
        try:
            return as_text(value)
        except (ImageError, OSError) as exc:
            logger.warning("row %d, column %r: %s: stored as null", row, name, exc)
            return None

    def _features(self) -> datasets.Features:
        features = datasets.Features.from_arrow_schema(
            pa.schema([(name, self._types.get(name, pa.null())) for name in self._columns])
        )
        for name in self._columns:
            if self._kinds.get(name) == "image":
                features[name] = datasets.Image()
            elif self._kinds.get(name) == "image_list":
                features[name] = _LIST_FEATURE(datasets.Image())
        return features

    def _schema(self) -> pa.Schema:
        """The schema of the columns so far; rebuilt (through `datasets`, ~0.3 ms) only when a
        column or a type changed, not for every chunk."""
        key = tuple((name, self._types.get(name), self._kinds.get(name)) for name in self._columns)
        if self._schema_memo is None or self._schema_memo[0] != key:
            self._schema_memo = (key, self._build_schema())
        return self._schema_memo[1]

    def _build_schema(self) -> pa.Schema:
        features = self._features()
        metadata = dict(features.arrow_schema.metadata or {})
        metadata[PIXTILL_METADATA_KEY] = json.dumps({"json_columns": self.json_columns}).encode()
        fields = [(name, self._types.get(name, pa.null())) for name in self._columns]
        return pa.schema(fields, metadata=metadata)

    # -- the final schema ----------------------------------------------------------------
    def _reconcile(self) -> None:
        if self._shards:
            reconcile(self._shards, self._schema(), frozenset(self.json_columns))


__all__ = ["IMAGE_ARROW_TYPE", "ShardWriter", "to_hf_image"]
