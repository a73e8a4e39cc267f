"""The executor seam: what `Pipeline.run` hands an executor, and what it gets back.

An executor schedules; it does not decide what happens to a row. It reads the `Graph`, feeds
every step's rows through the run's `RowRunner` (cache, fan-out, mappings, per-row failure),
writes the leaves through the store's `ShardWriter`, and returns the leaves' files and the
run's summary. ``Pipeline.run(executor=...)`` takes ``"local"`` or any object with this shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pixtill.pipeline.errors import StepLoadError
from pixtill.pipeline.graph import Graph
from pixtill.pipeline.progress import RunObserver, RunSummary
from pixtill.pipeline.runtime import Runtime
from pixtill.steps.base import _Step
from pixtill.store.cache import ResponseCache

_log = logging.getLogger("pixtill.pipeline")


@dataclass
class RunContext:
    """Everything a run needs besides its graph: where the dataset goes (``output_dir``, one
    folder per leaf), the cache (None: no cache), who hears about progress, how the process may
    be tuned, how many rows a shard holds, and which shard of the loaders' rows to read."""

    output_dir: Path
    cache: ResponseCache | None
    observer: RunObserver
    runtime: Runtime = field(default_factory=Runtime)
    rows_per_shard: int = 1000
    rank: int = 0
    world_size: int = 1
    """Which part of the loaders' rows this run reads (`GeneratorStep.process_shard`)."""

    @property
    def shard_prefix(self) -> str:
        """How this run's shard files start: ``data`` alone, ``rank00001-of-00004-data`` for
        one rank of several (ranks write side by side in the same leaf folders)."""
        if self.world_size == 1:
            return "data"
        return f"rank{self.rank:05d}-of-{self.world_size:05d}-data"


@dataclass
class RunResult:
    """Per leaf, its dataset's files in row order (Arrow stream files that `Distiset`
    memory-maps), and the run's summary."""

    files: dict[str, list[Path]]
    summary: RunSummary


@runtime_checkable
class Executor(Protocol):
    """Runs a validated graph whose steps are not loaded yet; returns the leaves' files."""

    def execute(self, graph: Graph, context: RunContext) -> RunResult: ...


def load_steps(graph: Graph, order: list[str]) -> list[_Step]:
    """Load the steps in ``order``; on a failure unload those loaded and raise `StepLoadError`."""
    loaded: list[_Step] = []
    for name in order:
        step = graph.steps[name]
        try:
            step.load()
        except Exception as exc:
            unload_steps(loaded)
            raise StepLoadError(name, exc) from exc
        loaded.append(step)
    return loaded


def unload_steps(steps: list[_Step]) -> None:
    """Unload in reverse order; a failure is logged, never raised (the run's error matters)."""
    for step in reversed(steps):
        try:
            step.unload()
        except Exception:
            _log.exception("step %r failed to unload", step.name)
