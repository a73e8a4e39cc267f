from pixtill.models.image_generation import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
)
from pixtill.models.llms import LLM, AsyncLLM

__all__ = ["LLM", "AsyncImageGenerationModel", "AsyncLLM", "ImageGenerationModel"]
