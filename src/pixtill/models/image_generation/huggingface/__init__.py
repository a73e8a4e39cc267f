"""Hugging Face text-to-image, at distilabel's import path
(``pixtill.models.image_generation.huggingface.inference_endpoints``)."""

from pixtill.models.image_generation.huggingface.inference_endpoints import (
    InferenceEndpointsImageGeneration,
)

__all__ = ["InferenceEndpointsImageGeneration"]
