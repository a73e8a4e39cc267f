from pixtill.pipeline.dag import Pipeline, PipelineError, StepLoadError
from pixtill.pipeline.progress import RunObserver, RunSummary, StepSummary

__all__ = [
    "Pipeline",
    "PipelineError",
    "RunObserver",
    "RunSummary",
    "StepLoadError",
    "StepSummary",
]
