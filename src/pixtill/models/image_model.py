"""What text-to-image and image-editing models share: the canonical call, the output shape and
the async bridge.

The tasks call `ImageModel.generate_results` / `AsyncImageModel.agenerate_result` with
`ModelRequest` s and get `ModelResult` s whose generations carry `GeneratedImage` s; the built-in
backends answer those natively. distilabel's public ``generate`` / ``agenerate`` (lists of
``{"images": [<base64>]}`` dicts) stay, and a model written for distilabel that implements only
them is read through `ModelResult.from_image_outputs`.

`ImageModel` is generic in the input of one request (a prompt ``str`` for text-to-image, an
`EditInput` for editing). The two kinds stay distinct classes (`ImageGenerationModel`,
`ImageEditingModel`), each deriving from its own parametrisation, so that a task asking for a
text-to-image model cannot be handed an editing model by accident, and vice versa.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pixtill.models.base import AsyncBridge, BaseModel
from pixtill.models.outputs import ImageGenerationOutput
from pixtill.models.request import ModelRequest, speaks_canonical
from pixtill.models.results import ModelResult, results_for_inputs

__all__ = [
    "AsyncImageModel",
    "ImageGenerationOutput",
    "ImageModel",
    "failed_image_outputs",
]

InputT = TypeVar("InputT")


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

    def generate_results(self, requests: Sequence[ModelRequest[InputT]]) -> list[ModelResult]:
        """The canonical call the tasks make: one `ModelResult` per request, in order.

        The requests of one call share ``n`` and settings (a task's batch); raises
        `ValueError` otherwise. A built-in backend answers natively (`_generate_results`); another
        model is called through `generate_outputs`, its dicts read with
        `ModelResult.from_image_outputs`.
        """
        if not requests:
            return []
        first = requests[0]
        if any(not first.same_call(r) for r in requests[1:]):
            raise ValueError("the requests of one generate call must share n and settings")
        if speaks_canonical(self, "generate"):
            return self._generate_results(requests)
        outputs = self.generate_outputs(
            inputs=[r.input for r in requests], num_generations=first.n, **first.call_kwargs()
        )
        results = [ModelResult.from_image_outputs(o) for o in outputs]
        return results_for_inputs(results, len(requests), first.n, type(self).__name__)

    def _generate_results(self, requests: Sequence[ModelRequest[InputT]]) -> list[ModelResult]:
        """A built-in backend's native batch call (its `generate` is marked `canonical_edge`)."""
        raise NotImplementedError(f"{type(self).__name__} has no canonical generate")


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

    async def agenerate_result(self, request: ModelRequest[InputT]) -> ModelResult:
        """The canonical call the tasks make for one input: natively (`_agenerate_result`) for a
        built-in backend, else through `agenerate` and `ModelResult.from_image_outputs`.
        Exceptions propagate (the task makes them data)."""
        if speaks_canonical(self, "agenerate"):
            return await self._agenerate_result(request)
        outputs = await self.agenerate(request.input, request.n, **request.call_kwargs())
        return ModelResult.from_image_outputs(outputs)

    async def _agenerate_result(self, request: ModelRequest[InputT]) -> ModelResult:
        """A built-in backend's native call (its `agenerate` is marked `canonical_edge`)."""
        raise NotImplementedError(f"{type(self).__name__} has no canonical agenerate")

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
