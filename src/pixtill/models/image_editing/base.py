"""Image editing models: an image and a prompt (and optionally a mask) in, images out.

An edit request is an `EditInput`: the images are `ImageRef` references, encoded only by the
backend at send time. Outputs are `ImageGenerationOutput` dicts (base64 images), the same as
text-to-image models give, so a dataset's image columns look alike whichever model made them.

Editing models are their own kind (not `ImageGenerationModel`): a task that asks for a
text-to-image model cannot be handed an editing model by accident, and vice versa.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from typing_extensions import NotRequired, TypedDict

from pixtill.images import ImageRef
from pixtill.models.base import AsyncBridge, BaseModel
from pixtill.models.image_generation.base import ImageGenerationOutput, failed_image_outputs

__all__ = ["AsyncImageEditingModel", "EditInput", "ImageEditingModel"]


class EditInput(TypedDict):
    """One edit: what to do (``prompt``), to which ``image``, and where (``mask``: transparent
    pixels mark the area to change, as OpenAI's edits API defines it; optional)."""

    prompt: str
    image: ImageRef
    mask: NotRequired[ImageRef | None]


class ImageEditingModel(BaseModel):
    """An image-to-image model."""

    @abstractmethod
    def generate(
        self, inputs: list[EditInput], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        """For each edit, one `ImageGenerationOutput` per generation, in input order."""

    def generate_outputs(
        self, inputs: list[EditInput], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self.generate(inputs=inputs, num_generations=num_generations, **kwargs)


class AsyncImageEditingModel(AsyncBridge, ImageEditingModel):
    """An editing model whose natural interface is one coroutine per edit (HTTP backends)."""

    @abstractmethod
    async def agenerate(
        self, input: EditInput, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        """``num_generations`` edited images of one input."""

    async def agenerate_many(
        self, inputs: list[EditInput], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return await self._gather_per_input(
            inputs,
            lambda item: self.agenerate(item, num_generations=num_generations, **kwargs),
            lambda exc: failed_image_outputs(self.describe_error(exc), num_generations),
        )

    def generate(
        self, inputs: list[EditInput], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self._run_sync(self.agenerate_many(inputs, num_generations, **kwargs))

    async def aclose(self) -> None:
        """Release async resources (connection pools). Runs on the model's loop."""

    def unload(self) -> None:
        self._stop_loop(self.aclose)
        super().unload()
