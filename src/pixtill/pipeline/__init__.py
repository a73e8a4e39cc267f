from pixtill.pipeline.errors import PipelineError, StepLoadError
from pixtill.pipeline.pipeline import Pipeline
from pixtill.pipeline.progress import RunObserver, RunSummary, StepSummary

__all__ = [
    "Pipeline",
    "PipelineError",
    "RunObserver",
    "RunSummary",
    "StepLoadError",
    "StepSummary",
]
