"""Image models: a text prompt in, images (base64 strings) out."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from typing_extensions import TypedDict

from pixtill.models.base import AsyncBridge, BaseModel


class ImageGenerationOutput(TypedDict, total=False):
    """One generation: its image(s) as base64 strings; ``None`` and ``error`` when it failed."""

    images: list[str | None]
    error: str | None


def failed_image_outputs(
    error: BaseException | str, num_generations: int
) -> list[ImageGenerationOutput]:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return [{"images": [None], "error": message} for _ in range(num_generations)]


class ImageGenerationModel(BaseModel):
    """A text-to-image model."""

    @abstractmethod
    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        """For each prompt, one `ImageGenerationOutput` per generation, in input order."""

    def generate_outputs(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self.generate(inputs=inputs, num_generations=num_generations, **kwargs)


class AsyncImageGenerationModel(AsyncBridge, ImageGenerationModel):
    @abstractmethod
    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        """Generate ``num_generations`` images for one prompt."""

    async def agenerate_many(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return await self._gather_per_input(
            inputs,
            lambda item: self.agenerate(item, num_generations=num_generations, **kwargs),
            lambda exc: failed_image_outputs(self.describe_error(exc), num_generations),
        )

    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return self._run_sync(self.agenerate_many(inputs, num_generations, **kwargs))

    async def aclose(self) -> None:
        """Release async resources (connection pools). Runs on the model's loop."""

    def unload(self) -> None:
        self._stop_loop(self.aclose)
        super().unload()
