"""Schema reconciliation: every shard of a leaf ends with the leaf's final schema.

A shard's schema can only widen after it is on disk (a new column, a new metadata key, a wider
type), so when a writer closes, the shards written under an older schema are rewritten, one at
a time, with missing columns as nulls, types widened and late JSON columns encoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from pixtill.store.columns import conform_chunked, to_json
from pixtill.store.parquet_options import parquet_options


@dataclass
class Shard:
    """A finished shard: its file(s), and the schema and JSON columns it was written with."""

    path: Path | None
    schema: pa.Schema
    json_columns: frozenset[str]
    arrow_path: Path | None = None


def reconcile(shards: Sequence[Shard], final: pa.Schema, json_columns: frozenset[str]) -> None:
    """Rewrite each shard whose schema is not ``final`` (in place, atomically)."""
    for shard in shards:
        if shard.schema.equals(final, check_metadata=True):
            continue
        table = _read(shard)
        arrays = []
        for field in final:
            if field.name not in table.column_names:
                arrays.append(pa.nulls(table.num_rows, type=field.type))
                continue
            column = table.column(field.name)
            if field.name in json_columns and field.name not in shard.json_columns:
                arrays.append(pa.array([to_json(v) for v in column.to_pylist()], pa.string()))
            else:
                arrays.append(conform_chunked(column, field.type))
        write_shard(pa.Table.from_arrays(arrays, schema=final), shard.path, shard.arrow_path)
        shard.schema, shard.json_columns = final, json_columns


def _read(shard: Shard) -> pa.Table:
    if shard.path is not None:
        return pq.read_table(shard.path)
    assert shard.arrow_path is not None
    with pa.memory_map(str(shard.arrow_path), "r") as source:
        return pa.ipc.open_stream(source).read_all()


def write_shard(table: pa.Table, path: Path | None, arrow_path: Path | None) -> None:
    """Write ``table`` as Parquet at ``path`` and/or as an Arrow stream at ``arrow_path``."""
    options = parquet_options(table.schema)
    if path is not None:
        write_atomically(path, lambda tmp: pq.write_table(table, tmp, **options))
    if arrow_path is not None:

        def write_stream(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
                out.write_table(table)

        write_atomically(arrow_path, write_stream)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` to a temporary name, then rename: a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    write(tmp)
    os.replace(tmp, path)


def temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")
