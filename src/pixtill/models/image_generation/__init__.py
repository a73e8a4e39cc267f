from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.image_generation.diffusers import DiffusersImageGeneration
from pixtill.models.image_generation.huggingface import InferenceEndpointsImageGeneration
from pixtill.models.image_generation.openai import OpenAIImageGeneration

__all__ = [
    "AsyncImageGenerationModel",
    "DiffusersImageGeneration",
    "ImageGenerationModel",
    "ImageGenerationOutput",
    "InferenceEndpointsImageGeneration",
    "OpenAIImageGeneration",
]
