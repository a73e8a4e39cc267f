"""Image models: a text prompt in, images (base64 strings) out.

The shared machinery (output shape, async bridge) lives in `pixtill.models.image_model`.
"""

from __future__ import annotations

from pixtill.models.image_model import (
    AsyncImageModel,
    ImageGenerationOutput,
    ImageModel,
    failed_image_outputs,
)

__all__ = [
    "AsyncImageGenerationModel",
    "ImageGenerationModel",
    "ImageGenerationOutput",
    "failed_image_outputs",
]


class ImageGenerationModel(ImageModel[str]):
    """A text-to-image model: ``generate(prompts)`` gives, for each prompt, one
    `ImageGenerationOutput` per generation, in input order."""


class AsyncImageGenerationModel(AsyncImageModel[str], ImageGenerationModel):
    """A text-to-image model with one coroutine per prompt (``agenerate``)."""
