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

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        total = len(self.data)
        if total == 0 or offset >= total:
            yield [], True
            return
        for start in range(offset, total, self.batch_size):
            end = min(start + self.batch_size, total)
            yield [dict(row) for row in self.data[start:end]], end >= total
