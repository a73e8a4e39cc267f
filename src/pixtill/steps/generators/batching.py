"""Grouping a stream of rows into the ``(batch, is_last)`` pairs generator steps yield."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batches_with_last(items: Iterable[T], batch_size: int) -> Iterator[tuple[list[T], bool]]:
    """Group ``items`` into ``(batch, is_last)`` pairs, reading one item ahead to know which
    batch is the last. An empty input gives a single ``([], True)``."""
    it = iter(items)
    batch = list(islice(it, batch_size))
    if not batch:
        yield [], True
        return
    while True:
        following = list(islice(it, 1))
        if not following:
            yield batch, True
            return
        yield batch, False
        batch = following + list(islice(it, batch_size - 1))
