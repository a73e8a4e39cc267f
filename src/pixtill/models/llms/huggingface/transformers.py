"""`TransformersLLM` at distilabel's path; it lives in `pixtill.models.llms.transformers`."""

from pixtill.models.llms.transformers import TransformersLLM

__all__ = ["TransformersLLM"]
