"""Where the viewer's rows come from: one `Leaf` per table, read a row group / batch at a time.

`open_source(spec)` accepts a pixtill output folder (``<leaf>/data-*.parquet``), a folder
written by ``Distiset.save_to_disk`` or ``datasets``' ``save_to_disk``, a folder of Parquet
files, one ``.parquet`` / ``.arrow`` file, or a Hub dataset id (``owner/name``). Nothing is
read at opening except Parquet footers and Arrow memory maps, so a dataset of a million rows
opens in about the time it takes to read its footers; memory holds a few row groups at most.
"""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import datasets  # type: ignore[import-untyped,unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from pixtill.errors import PixtillError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_ROW_GROUP_CACHE = 4  # row groups kept decoded (a page and the thumbnails it asks for)
SCAN_BATCH_ROWS = 4096
_FOOTER_THREADS = 8  # footers are small reads: overlap their latency


class SourceError(PixtillError, ValueError):
    """The path or id names nothing the viewer can read."""


class Leaf(Protocol):
    """One table: a leaf step of a run, a split, or a folder of Parquet files."""

    name: str
    num_rows: int
    schema: pa.Schema

    def take(self, indices: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        """The rows at ``indices`` (positions in the leaf, in that order)."""
        ...

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """Every row of ``columns``, in order, a bounded batch at a time."""
        ...


@dataclass(frozen=True)
class _RowGroup:
    file: int
    index: int
    start: int  # position of its first row in the leaf
    num_rows: int


def _row_group_sizes(path: str) -> list[int]:
    """Rows per row group, from the file's footer (the footer itself is not kept)."""
    meta = pq.read_metadata(path)
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


class ParquetLeaf:
    """Parquet files read as one table, a row group at a time (a few kept in an LRU)."""

    def __init__(self, name: str, files: Sequence[Path]) -> None:
        self.name = name
        self._paths = [str(f) for f in files]
        # Only the footers are read here; files are opened when a row group is needed, so a
        # run of thousands of shards does not hold thousands of open files.
        with ThreadPoolExecutor(max_workers=_FOOTER_THREADS) as pool:
            counts = list(pool.map(_row_group_sizes, self._paths))
        self.schema = pq.read_schema(self._paths[0])
        self._groups: list[_RowGroup] = []
        start = 0
        for f, sizes in enumerate(counts):
            for g, rows in enumerate(sizes):
                self._groups.append(_RowGroup(f, g, start, rows))
                start += rows
        self.num_rows = start
        self._starts = [g.start for g in self._groups]
        self._cache: OrderedDict[tuple[int, tuple[str, ...]], pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def _group(self, g: int, columns: tuple[str, ...]) -> pa.Table:
        key = (g, columns)
        with self._lock:
            table = self._cache.get(key)
            if table is not None:
                self._cache.move_to_end(key)
                return table
        group = self._groups[g]
        with pq.ParquetFile(self._paths[group.file]) as parquet:
            table = parquet.read_row_group(group.index, columns=list(columns))
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > _ROW_GROUP_CACHE:
                self._cache.popitem(last=False)
        return table

    def take(self, indices: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        names = tuple(columns if columns is not None else self.schema.names)
        if not indices:
            return self.schema.empty_table().select(list(names))
        parts: list[pa.Table] = []
        run_group, run_rows = -1, list[int]()
        for index in indices:
            if not 0 <= index < self.num_rows:
                raise IndexError(f"row {index} is out of range (0..{self.num_rows - 1})")
            g = bisect.bisect_right(self._starts, index) - 1
            if g != run_group and run_rows:
                parts.append(self._group(run_group, names).take(run_rows))
                run_rows = []
            run_group = g
            run_rows.append(index - self._starts[g])
        parts.append(self._group(run_group, names).take(run_rows))
        return pa.concat_tables(parts, promote_options="default")

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        for path in self._paths:
            with pq.ParquetFile(path) as parquet:
                yield from parquet.iter_batches(batch_size=SCAN_BATCH_ROWS, columns=list(columns))


class ArrowLeaf:
    """A memory-mapped `datasets.Dataset` (``save_to_disk``, an ``.arrow`` file, the Hub)."""

    def __init__(self, name: str, dataset: Any) -> None:
        if getattr(dataset, "_indices", None) is not None:  # a filtered or shuffled view
            dataset = dataset.flatten_indices()
        self.name = name
        self._table: pa.Table = dataset.data.table
        self.schema = self._table.schema
        self.num_rows = self._table.num_rows

    def take(self, indices: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        table = self._table if columns is None else self._table.select(list(columns))
        for index in indices:
            if not 0 <= index < self.num_rows:
                raise IndexError(f"row {index} is out of range (0..{self.num_rows - 1})")
        return table.take(pa.array(indices, type=pa.int64()))

    def scan(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        yield from self._table.select(list(columns)).to_batches(max_chunksize=SCAN_BATCH_ROWS)


def _parquet_leaves(root: Path) -> list[Leaf]:
    """One leaf per folder holding Parquet files (hidden folders such as ``.arrow`` skipped)."""
    by_folder: dict[Path, list[Path]] = {}
    for file in sorted(root.rglob("*.parquet")):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        by_folder.setdefault(relative.parent, []).append(file)
    leaves: list[Leaf] = []
    for folder, files in sorted(by_folder.items()):
        name = folder.as_posix() if folder != Path(".") else root.name or "data"
        leaves.append(ParquetLeaf(name, files))
    return leaves


def _dataset_folder_leaves(root: Path) -> list[Leaf] | None:
    if (root / "distiset.json").is_file():
        manifest = json.loads((root / "distiset.json").read_text(encoding="utf-8"))
        columnless = set(manifest.get("columnless", ()))
        return [
            ArrowLeaf(leaf, datasets.load_from_disk(str(root / leaf)))
            for leaf in manifest["leaves"]
            if leaf not in columnless
        ]
    if (root / "dataset_dict.json").is_file():
        loaded = datasets.load_from_disk(str(root))
        return [ArrowLeaf(split, ds) for split, ds in loaded.items()]
    if (root / "state.json").is_file() and (root / "dataset_info.json").is_file():
        return [ArrowLeaf(root.name or "data", datasets.load_from_disk(str(root)))]
    return None


def _hub_leaves(repo_id: str) -> list[Leaf]:
    """Every config and split of a Hub dataset (a pixtill push has one config per leaf); uses
    the token of ``hf auth login`` / ``HF_TOKEN``, like `datasets` does."""
    leaves: list[Leaf] = []
    configs = datasets.get_dataset_config_names(repo_id)
    for config in configs:
        loaded = datasets.load_dataset(repo_id, config)
        for split, dataset in loaded.items():
            name = split if len(configs) == 1 else f"{config}/{split}"
            leaves.append(ArrowLeaf(name, dataset))
    return leaves


def open_source(spec: str | Path) -> list[Leaf]:
    """The leaves behind ``spec`` (see the module docstring), in a stable order.

    Raises `SourceError` when the path holds no table, or names neither a path nor a Hub id.
    """
    path = Path(spec)
    leaves: list[Leaf] | None
    if path.is_file():
        if path.suffix == ".parquet":
            leaves = [ParquetLeaf(path.stem, [path])]
        elif path.suffix == ".arrow":
            leaves = [ArrowLeaf(path.stem, datasets.Dataset.from_file(str(path)))]
        else:
            raise SourceError(f"{path}: not a .parquet or .arrow file")
    elif path.is_dir():
        leaves = _dataset_folder_leaves(path)
        if leaves is None:
            leaves = _parquet_leaves(path)
        if not leaves:
            raise SourceError(
                f"{path}: no dataset here (no Parquet files, and not a save_to_disk folder)"
            )
    elif _HUB_ID.match(str(spec)) and "/" in str(spec) and not path.parent.is_dir():
        # "owner/name" with no local folder "owner": a Hub id, unless the Hub says otherwise.
        try:
            leaves = _hub_leaves(str(spec))
        except Exception as exc:
            raise SourceError(
                f"{spec}: no such local file or folder, and the Hub could not open it as a"
                f" dataset id ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        raise SourceError(f"{spec}: no such file or folder, and not a Hub dataset id")
    return leaves


__all__ = ["ArrowLeaf", "Leaf", "ParquetLeaf", "SourceError", "open_source"]
