"""What text-to-image and image-editing models share: the output shape and the async bridge.

`ImageModel` is generic in the input of one request (a prompt ``str`` for text-to-image, an
`EditInput` for editing). The two kinds stay distinct classes (`ImageGenerationModel`,
`ImageEditingModel`), each deriving from its own parametrisation, so that a task asking for a
text-to-image model cannot be handed an editing model by accident, and vice versa.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic, TypeVar

from typing_extensions import TypedDict

from pixtill.models.base import AsyncBridge, BaseModel

__all__ = [
    "AsyncImageModel",
    "ImageGenerationOutput",
    "ImageModel",
    "failed_image_outputs",
]

InputT = TypeVar("InputT")


class ImageGenerationOutput(TypedDict, total=False):
    """One generation: its image(s) as base64 strings; ``None`` and ``error`` when it failed."""

    images: list[str | None]
    error: str | None


def failed_image_outputs(
    error: BaseException | str, num_generations: int
) -> list[ImageGenerationOutput]:
    """``num_generations`` failed outputs (``images: [None]``) carrying ``error`` (a message,
    or an exception written as ``"TypeName: message"``)."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return [{"images": [None], "error": message} for _ in range(num_generations)]


class ImageModel(BaseModel, Generic[InputT]):
    """A model that makes images from one ``InputT`` per request."""

    @abstractmethod
    def generate(
        self, inputs: list[InputT], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        """For each input, one `ImageGenerationOutput` per generation, in input order."""

    def generate_outputs(
        self, inputs: list[InputT], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self.generate(inputs=inputs, num_generations=num_generations, **kwargs)


class AsyncImageModel(AsyncBridge, ImageModel[InputT], Generic[InputT]):
    """An image model whose natural interface is one coroutine per input (HTTP backends).

    A failing input becomes failed outputs (`failed_image_outputs`) without taking its
    neighbours down; a dead server stops the caller (see `AsyncBridge`).
    """

    @abstractmethod
    async def agenerate(
        self, input: InputT, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        """``num_generations`` images for one input."""

    async def agenerate_many(
        self, inputs: list[InputT], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return await self._gather_per_input(
            inputs,
            lambda item: self.agenerate(item, num_generations=num_generations, **kwargs),
            lambda exc: failed_image_outputs(self.describe_error(exc), num_generations),
        )

    def generate(
        self, inputs: list[InputT], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self._run_sync(self.agenerate_many(inputs, num_generations, **kwargs))

    async def aclose(self) -> None:
        """Release async resources (connection pools). Runs on the model's loop."""

    def unload(self) -> None:
        self._stop_loop(self.aclose)
        super().unload()
