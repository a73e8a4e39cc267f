from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from pydantic import Field

from pixtill.steps.base import GeneratorStep
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.sharding import ShardBatch
from pixtill.steps.typing import GeneratorStepOutput, StepColumns


class LoadDataFromDicts(GeneratorStep):
    """Rows given inline as a list of dicts."""

    data: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def outputs(self) -> StepColumns:
        return list(self.data[0]) if self.data else []

    def total_rows(self) -> int:
        return len(self.data)

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        yield from batches_with_last((dict(row) for row in self.data[offset:]), self.batch_size)

    def process_shard(self, rank: int = 0, world_size: int = 1) -> Iterator[ShardBatch]:
        """A contiguous block of the rows (see `GeneratorStep.process_shard`)."""
        return self._contiguous_shard(len(self.data), rank, world_size)


class LoadDataFromIterable(GeneratorStep):
    """Rows from any iterable of mappings (a list, a `datasets.Dataset`, a generator).

    Iterated lazily, so a large `datasets.Dataset` is never copied into a list.
    """

    data: Any

    def total_rows(self) -> int | None:
        try:
            return len(self.data)
        except TypeError:
            return None

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        rows = (dict(row) for row in islice(self.data, offset, None))
        yield from batches_with_last(rows, self.batch_size)

    def process_shard(self, rank: int = 0, world_size: int = 1) -> Iterator[ShardBatch]:
        """A contiguous block when the data has a length (a list, a `datasets.Dataset`);
        otherwise every rank reads the iterator and keeps its rows (round robin)."""
        total = self.total_rows()
        if total is None:
            return super().process_shard(rank, world_size)
        return self._contiguous_shard(total, rank, world_size)
