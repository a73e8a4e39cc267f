from __future__ import annotations

from typing import Any

from pydantic import Field

from pixtill.steps.base import GeneratorStep
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
        total = len(self.data)
        if total == 0 or offset >= total:
            yield [], True
            return
        for start in range(offset, total, self.batch_size):
            end = min(start + self.batch_size, total)
            yield [dict(row) for row in self.data[start:end]], end >= total


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
        batch: list[dict[str, Any]] = []
        for position, row in enumerate(self.data):
            if position < offset:
                continue
            batch.append(dict(row))
            if len(batch) == self.batch_size:
                yield batch, False
                batch = []
        yield batch, True
