"""What a run reports while it goes, and what it reports at the end.

The executor calls a `RunObserver`; the CLI's progress bars are one implementation, tests use
another. Observers must be cheap: they are called on the executor's event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

RequestStats = Callable[[], "Mapping[str, float | int] | None"]


@dataclass
class StepSummary:
    rows_in: int = 0
    rows_out: int = 0
    failed: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class RunSummary:
    pipeline: str
    wall_seconds: float = 0.0
    steps: dict[str, StepSummary] = field(default_factory=dict)
    leaf_rows: dict[str, int] = field(default_factory=dict)
    output_dir: Path | None = None

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.steps.values())

    @property
    def tokens(self) -> tuple[int, int]:
        return (
            sum(s.input_tokens for s in self.steps.values()),
            sum(s.output_tokens for s in self.steps.values()),
        )


class RunObserver:
    """No-op base: override what you want to show."""

    def run_started(
        self,
        pipeline: str,
        steps: list[str],
        total_rows: int | None,
        request_stats: Mapping[str, RequestStats],
    ) -> None:
        """Called once, before the first row."""

    def rows_done(self, step: str, summary: StepSummary) -> None:
        """Called after a step finished some input rows; ``summary`` holds its running totals."""

    def step_finished(self, step: str, summary: StepSummary) -> None:
        """Called when a step has processed its last row."""

    def run_finished(self, summary: RunSummary) -> None:
        """Called once, after the dataset is written."""
