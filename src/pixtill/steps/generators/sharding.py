"""Loaders' shards: the part of the data that rank ``rank`` of ``world_size`` reads.

A shard is a batch stream of ``(global row numbers, rows)``. The row number is the row's
position in the whole, unsharded data (the key the cache, the reorder buffer and joins use),
so shards never collide and their union is the data exactly once.

Two ways to cut, chosen per loader:

- `contiguous_range`: when the row count is known up front (in-memory rows, a prepared Arrow
  dataset, a listed folder), rank r reads one contiguous block; block sizes differ by at most
  one row;
- `round_robin`: when it is not (a streaming dataset, any iterator), every rank reads the stream
  and keeps rows ``i`` with ``i % world_size == rank``: correct for any loader, but each rank
  pays for reading the whole stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.typing import Row

ShardBatch = tuple[list[int], list[Row], bool]
"""One batch of a shard: the rows' global numbers, the rows, and whether it is the last."""


def check_shard(rank: int, world_size: int) -> None:
    """Raise ``ValueError`` unless ``0 <= rank < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def contiguous_range(total: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s block of ``range(total)``: the first ``total % world_size`` ranks get
    one row more than the others."""
    check_shard(rank, world_size)
    size, extra = divmod(total, world_size)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (1 if rank < extra else 0))


def round_robin(
    batches: Iterable[tuple[list[Row], bool]], rank: int, world_size: int, batch_size: int
) -> Iterator[ShardBatch]:
    """Rows ``i`` with ``i % world_size == rank`` of a full ``(rows, is_last)`` batch stream,
    in batches of ``batch_size``."""
    check_shard(rank, world_size)

    def mine() -> Iterator[tuple[int, Row]]:
        position = 0
        for rows, last in batches:
            for row in rows:
                if position % world_size == rank:
                    yield position, row
                position += 1
            if last:
                return

    for pairs, last in batches_with_last(mine(), batch_size):
        yield [n for n, _ in pairs], [row for _, row in pairs], last


def numbered(batches: Iterable[tuple[list[Row], bool]], first: int) -> Iterator[ShardBatch]:
    """A ``(rows, is_last)`` stream numbered from ``first`` on."""
    position = first
    for rows, last in batches:
        yield list(range(position, position + len(rows))), rows, last
        position += len(rows)
        if last:
            return


def islice_rows(batches: Iterable[tuple[list[Row], bool]], count: int) -> Iterator[Row]:
    """The first ``count`` rows of a ``(rows, is_last)`` stream, one by one."""
    if count <= 0:
        return
    for rows, last in batches:
        for row in rows:
            yield row
            count -= 1
            if count == 0:
                return
        if last:
            return
