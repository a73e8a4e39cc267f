"""Hugging Face text models, at distilabel's import paths
(``pixtill.models.llms.huggingface.inference_endpoints`` / ``.transformers``)."""

from pixtill.models.llms.huggingface.inference_endpoints import InferenceEndpointsLLM
from pixtill.models.llms.huggingface.transformers import TransformersLLM

__all__ = ["InferenceEndpointsLLM", "TransformersLLM"]
