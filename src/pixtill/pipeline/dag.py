"""The old import path of `pixtill.pipeline.pipeline` (kept for code that imports it)."""

from pixtill.pipeline.errors import PipelineError, StepLoadError
from pixtill.pipeline.graph import apply_parameters
from pixtill.pipeline.pipeline import Pipeline

__all__ = ["Pipeline", "PipelineError", "StepLoadError", "apply_parameters"]
