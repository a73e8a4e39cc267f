"""Errors of a run as a whole (a row's errors are data: see `pixtill.errors.RowError`)."""

from __future__ import annotations

from pixtill.errors import PixtillError


class PipelineError(PixtillError, RuntimeError):
    """The run as a whole failed (a worker died, nothing was produced...)."""


class StepLoadError(PipelineError):
    """A step's `load` raised: the run stops before any row is processed."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        super().__init__(f"step {step!r} failed to load: {type(cause).__name__}: {cause}")


def worker_error(step: str, exc: BaseException) -> PipelineError:
    """The error a run raises when the worker of ``step`` died of ``exc``."""
    return PipelineError(f"step {step!r} failed: {type(exc).__name__}: {exc}")
