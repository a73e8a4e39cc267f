"""A rank's part of data files, read without preparing (or reading) the whole dataset.

Two cuts, both keeping a row's number global, so ranks never collide:

- **Parquet, by row group.** Every file's footer gives its row groups' row counts (a few KB
  read per file, no data), hence each row group's global offset. Rank r reads the row groups
  whose first row falls in its contiguous block of rows (`contiguous_range`), so rank order is
  input order and a row's number is exactly its position in the unsharded data.
- **A stream of shards (JSON, JSON Lines, CSV files; a streaming Hub dataset), by shard.** A
  ``datasets.IterableDataset`` built over several files has one shard per file (a Hub dataset,
  one per data file). Rank r reads a contiguous block of shards (`IterableDataset.shard`, as
  ``datasets.distributed.split_dataset_by_node`` does when shards divide evenly). The row count
  of a shard is not known before reading it, so a row's number is
  ``shard_index * SHARD_STRIDE + position in its shard``: global, unique and in input order,
  but not dense (a run with one rank numbers rows 0, 1, 2, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.sharding import ShardBatch, check_shard, contiguous_range
from pixtill.steps.typing import Row

SHARD_STRIDE = 1 << 40
"""Row numbers per stream shard: a shard of more rows than this would collide with the next."""


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group: its file, index in the file, global first row and row count."""

    file: str
    index: int
    start: int
    rows: int


def resolve_files(patterns: Sequence[str], storage_options: dict[str, Any] | None) -> list[str]:
    """The files ``patterns`` name, in the order ``datasets.load_dataset`` reads them (the
    same resolution, so row numbers match an unsharded run's)."""
    from datasets import DownloadConfig  # type: ignore[import-untyped,unused-ignore]
    from datasets.data_files import DataFilesList  # type: ignore[import-untyped,unused-ignore]

    config = DownloadConfig(storage_options=dict(storage_options or {}))
    return [
        str(file) for file in DataFilesList.from_patterns(list(patterns), download_config=config)
    ]


def open_file(path: str, storage_options: dict[str, Any] | None) -> Any:
    """A binary file object for a local path or an fsspec URL (``s3://``, ``hf://``...)."""
    import fsspec  # type: ignore[import-untyped,unused-ignore]

    return fsspec.open(path, "rb", **dict(storage_options or {})).open()


def parquet_row_groups(
    files: Sequence[str], storage_options: dict[str, Any] | None
) -> list[RowGroup]:
    """Every row group of ``files`` with its global offset, from the files' footers only."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    groups: list[RowGroup] = []
    start = 0
    for file in files:
        with open_file(file, storage_options) as handle:
            metadata = pq.ParquetFile(handle).metadata
            for index in range(metadata.num_row_groups):
                rows = metadata.row_group(index).num_rows
                groups.append(RowGroup(file, index, start, rows))
                start += rows
    return groups


def read_parquet_shard(
    groups: Sequence[RowGroup],
    rank: int,
    world_size: int,
    *,
    features: Any,
    batch_size: int,
    limit: int | None,
    storage_options: dict[str, Any] | None,
) -> Iterator[ShardBatch]:
    """Rank ``rank``'s rows of ``groups`` (only its row groups are read), decoded with the
    ``datasets`` ``features`` (images as PIL, as an unsharded run gives them); ``limit`` caps
    the global row count (``num_examples``)."""
    import pyarrow.parquet as pq

    check_shard(rank, world_size)
    total = sum(group.rows for group in groups)
    if limit is not None:
        total = min(total, limit)
    block = contiguous_range(total, rank, world_size)
    mine = [g for g in groups if g.rows and g.start in block]

    def rows() -> Iterator[tuple[int, Row]]:
        for group in mine:
            with open_file(group.file, storage_options) as handle:
                table = pq.ParquetFile(handle).read_row_group(group.index)
            count = min(group.rows, total - group.start)
            for offset in range(0, count, batch_size):
                piece = table.slice(offset, min(batch_size, count - offset)).to_pydict()
                decoded = features.decode_batch(piece) if features is not None else piece
                names = list(decoded)
                for k, values in enumerate(zip(*decoded.values())):
                    yield group.start + offset + k, dict(zip(names, values))

    produced = False
    for pairs, last in batches_with_last(rows(), batch_size):
        produced = True
        yield [n for n, _ in pairs], [row for _, row in pairs], last
    if not produced:
        yield [], [], True


def read_stream_shard(
    dataset: Any, rank: int, world_size: int, *, batch_size: int
) -> Iterator[ShardBatch]:
    """Rank ``rank``'s contiguous block of ``dataset``'s shards (an ``IterableDataset`` with
    at least ``world_size`` shards); only those shards are read."""
    check_shard(rank, world_size)
    count = int(dataset.num_shards)
    if count < world_size:
        raise ValueError(f"{count} shards cannot be split over {world_size} ranks")

    def rows() -> Iterator[tuple[int, Row]]:
        for index in contiguous_range(count, rank, world_size):
            part = dataset.shard(num_shards=count, index=index, contiguous=True)
            for position, row in enumerate(part):
                yield index * SHARD_STRIDE + position, dict(row)

    produced = False
    for pairs, last in batches_with_last(rows(), batch_size):
        produced = True
        yield [n for n, _ in pairs], [row for _, row in pairs], last
    if not produced:
        yield [], [], True
