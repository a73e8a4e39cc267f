"""distilabel's import path for the pipeline (``from <package>.pipeline.local import Pipeline``),
and the old home of the local executor: both re-exported from where they live now."""

from pixtill.pipeline.executors.local import LocalExecutor
from pixtill.pipeline.pipeline import Pipeline

__all__ = ["LocalExecutor", "Pipeline"]
