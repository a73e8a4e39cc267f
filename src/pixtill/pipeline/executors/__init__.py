"""Executors: who schedules a graph's rows (see `pixtill.pipeline.executors.base`)."""

from __future__ import annotations

from pixtill.pipeline.errors import PipelineError
from pixtill.pipeline.executors.base import Executor, RunContext, RunResult
from pixtill.pipeline.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "RunContext", "RunResult", "resolve_executor"]


def resolve_executor(executor: str | Executor) -> Executor:
    """``"local"`` -> a `LocalExecutor`, ``"ray"`` -> a `RayExecutor` (a local Ray, or the
    cluster ``ray.init`` already connected to); an `Executor` instance is returned as is."""
    if isinstance(executor, str):
        if executor == "local":
            return LocalExecutor()
        if executor == "ray":
            from pixtill.pipeline.executors.ray_executor import RayExecutor

            return RayExecutor()
        raise PipelineError(f"unknown executor {executor!r}; available: 'local', 'ray'")
    if not isinstance(executor, Executor):
        raise PipelineError(
            f"executor must be 'local' or an object with an execute(graph, context) method, "
            f"got {type(executor).__name__}"
        )
    return executor
