"""`ImageTask`: a task driven by an image-generation model."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import model_validator

from pixtill.errors import ModelUnavailableError
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    failed_image_outputs,
)
from pixtill.steps.tasks.abstract_task import _Task
from pixtill.steps.tasks.references import replace_images
from pixtill.steps.tasks.results import GenerationResult, results_from_image_outputs


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
        try:
            outputs = await model.agenerate(
                formatted, num_generations=self.num_generations, **model.get_generation_kwargs()
            )
        except ModelUnavailableError as exc:  # the run's problem, not the row's
            raise exc.located(model=model.model_name, step=self.name) from None
        except Exception as exc:
            outputs = failed_image_outputs(model.describe_error(exc), self.num_generations)
            return results_from_image_outputs(outputs)
        # Decoding checks cost milliseconds per image: off the event loop.
        return await asyncio.to_thread(results_from_image_outputs, outputs)

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        model = self.image_generation_model
        outputs = model.generate_outputs(
            inputs=formatted, num_generations=self.num_generations, **model.get_generation_kwargs()
        )
        return [results_from_image_outputs(o) for o in outputs]

    def _raw_output_reference(self, output: Any) -> Any:
        return replace_images(output)
