from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    ImageGenerationOutput,
)

__all__ = ["AsyncImageGenerationModel", "ImageGenerationModel", "ImageGenerationOutput"]
