"""Text models: chat messages (possibly holding images) in, generations out."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Optional

from pydantic import Field

from pixtill.mixins.runtime_parameters import RuntimeParameter
from pixtill.models.base import AsyncBridge, BaseModel
from pixtill.models.outputs import GenerateOutput, TokenStatistics
from pixtill.models.request import ModelRequest, speaks_canonical
from pixtill.models.results import Generation, ModelResult, results_for_inputs

# OpenAI-style chat messages. The tasks put images in a message's content list as OpenAI
# ``{"type": "image_url", "image_url": {"url": ImageURL}}`` parts (`pixtill.image_url`: the URL
# string holds its `ImageRef`); ``{"type": "image", "image": <any image form>}`` parts are
# accepted too. Backends read either with `_wire._image_of` and encode for their wire format.
ChatType = list[dict[str, Any]]
FormattedInput = ChatType

__all__ = [
    "LLM",
    "AsyncLLM",
    "ChatType",
    "FormattedInput",
    "GenerateOutput",
    "TokenStatistics",
    "failed_generate_output",
]


def failed_generate_output(error: BaseException | str, num_generations: int) -> GenerateOutput:
    """distilabel's dict for an input whose request failed (the same as
    ``ModelResult.failed(error, num_generations).to_generate_output()``)."""
    return {
        "generations": [None] * num_generations,
        "statistics": {},
        "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
    }


class LLM(BaseModel):
    """A text-generating model (possibly multimodal on the input side).

    ``use_offline_batch_generation=True`` (distilabel's flag) sends every input through
    `offline_batch_generate`: the batch backends (`OpenAIBatchLLM`, `AnthropicBatchLLM`)
    implement it; other models raise `NotImplementedError` when asked to generate. A task
    whose model sets the flag is global (it gets every row at once, so they make one set of
    provider batches), and a task that cannot work that way refuses the model.
    """

    use_offline_batch_generation: Optional[RuntimeParameter[bool]] = Field(
        default=False,
        description="Whether to use the `offline_batch_generate` method to generate the responses.",
    )
    offline_batch_generation_block_until_done: Optional[RuntimeParameter[int]] = Field(
        default=None,
        description="If provided, then polling will be done until the "
        "`offline_batch_generate` method is able to retrieve the results. The value is the "
        "time to wait between each polling (seconds).",
    )

    @abstractmethod
    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """One `GenerateOutput` per input, in input order."""

    def generate_outputs(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """Entry point the tasks call: `generate`, or `offline_batch_generate` when
        ``use_offline_batch_generation`` is set."""
        if self.use_offline_batch_generation:
            return self.offline_batch_generate(
                inputs=inputs, num_generations=num_generations, **kwargs
            )
        return self.generate(inputs=inputs, num_generations=num_generations, **kwargs)

    def generate_results(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        """The canonical call the tasks make: one `ModelResult` per request, in order.

        The requests of one call share ``n``, settings and structured output (a task's batch);
        raises `ValueError` otherwise. A built-in backend answers natively
        (`_generate_results`); any other model (one written for distilabel, or a subclass
        overriding `generate`) is called through `generate_outputs` and its dicts are read
        with `ModelResult.from_generate_output`.
        """
        if not requests:
            return []
        first = requests[0]
        if any(not first.same_call(r) for r in requests[1:]):
            raise ValueError("the requests of one generate call must share n and settings")
        entry = "offline_batch_generate" if self.use_offline_batch_generation else "generate"
        if speaks_canonical(self, entry):
            return self._generate_results(requests)
        outputs = self.generate_outputs(
            inputs=[r.input for r in requests], num_generations=first.n, **first.call_kwargs()
        )
        results = [ModelResult.from_generate_output(o) for o in outputs]
        return results_for_inputs(results, len(requests), first.n, type(self).__name__)

    def _generate_results(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        """A built-in backend's native batch call (its `generate` is marked `canonical_edge`)."""
        raise NotImplementedError(f"{type(self).__name__} has no canonical generate")

    def offline_batch_generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """Generate through a provider's batch API (results within hours, about half price).

        Raises `NotImplementedError` here: only the batch backends implement it.
        """
        raise NotImplementedError(
            f"`offline_batch_generate` is not implemented for `{type(self).__name__}`: use "
            "`OpenAIBatchLLM` or `AnthropicBatchLLM` for offline batch generation"
        )


class AsyncLLM(AsyncBridge, LLM):
    """A model whose natural interface is one coroutine per input (HTTP backends)."""

    @abstractmethod
    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        """Generate for one input."""

    async def agenerate_n(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        """`agenerate`, or ``num_generations`` concurrent calls of one generation each when the
        model says it cannot make several at once (``_num_generations_param_supported =
        False``, distilabel's flag for APIs without ``n``); their generations and token
        counts are concatenated in order. One failing call fails the input."""
        if num_generations == 1 or getattr(self, "_num_generations_param_supported", True):
            return await self.agenerate(input, num_generations=num_generations, **kwargs)
        singles = await asyncio.gather(
            *(self.agenerate(input, num_generations=1, **kwargs) for _ in range(num_generations))
        )
        generations: list[Generation] = []
        for single in singles:  # a dict, a bare list, or a `ModelResult` from a custom LLM
            first = ModelResult.from_generate_output(single).generations[:1]
            generations += first or [Generation(None)]
        return ModelResult.of(generations).to_generate_output()

    async def agenerate_result(self, request: ModelRequest[FormattedInput]) -> ModelResult:
        """The canonical call the tasks make for one input. A built-in backend answers
        natively (`_agenerate_result`); any other model (written for distilabel, or a subclass
        overriding `agenerate`) is called through `agenerate_n` and its dict is read with
        `ModelResult.from_generate_output`. Exceptions propagate (the task makes them data)."""
        if speaks_canonical(self, "agenerate") and (
            request.n == 1 or getattr(self, "_num_generations_param_supported", True)
        ):
            return await self._agenerate_result(request)
        output = await self.agenerate_n(request.input, request.n, **request.call_kwargs())
        return ModelResult.from_generate_output(output)

    async def _agenerate_result(self, request: ModelRequest[FormattedInput]) -> ModelResult:
        """A built-in backend's native call (its `agenerate` is marked `canonical_edge`)."""
        raise NotImplementedError(f"{type(self).__name__} has no canonical agenerate")

    async def agenerate_many(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return await self._gather_per_input(
            inputs,
            lambda item: self.agenerate_n(item, num_generations=num_generations, **kwargs),
            lambda exc: failed_generate_output(self.describe_error(exc), num_generations),
        )

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return self._run_sync(self.agenerate_many(inputs, num_generations, **kwargs))

    async def aclose(self) -> None:
        """Release async resources (connection pools). Runs on the model's loop."""

    def unload(self) -> None:
        self._stop_loop(self.aclose)
        super().unload()
