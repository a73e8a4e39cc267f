"""`ImageTask`: a task driven by an image-generation model."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
)
from pixtill.steps.tasks.abstract_task import _Task
from pixtill.steps.tasks.image_outputs import agenerate_image_results, generate_image_results
from pixtill.steps.tasks.references import replace_images
from pixtill.steps.tasks.results import GenerationResult


class ImageTask(_Task):
    """A task driven by an image-generation model.

    ``llm`` is a read-only alias of ``image_generation_model``, kept because the seed
    documentation's custom tasks call ``self.llm``; the library itself never uses it.
    """

    image_generation_model: ImageGenerationModel

    @model_validator(mode="before")
    @classmethod
    def _reject_llm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "llm" in data:
            raise ValueError("`ImageTask` takes its model as `image_generation_model`, not `llm`")
        return data

    @property
    def llm(self) -> ImageGenerationModel:
        return self.image_generation_model

    @property
    def model(self) -> ImageGenerationModel:
        return self.image_generation_model

    async def agenerate_results(self, formatted: Any) -> list[GenerationResult]:
        model = self.image_generation_model
        if not isinstance(model, AsyncImageGenerationModel):
            return await super().agenerate_results(formatted)
        return await agenerate_image_results(model, self.model_request(formatted), self.name)

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        requests = [self.model_request(item) for item in formatted]
        return generate_image_results(self.image_generation_model, requests)

    def _raw_output_reference(self, output: Any) -> Any:
        return replace_images(output)
