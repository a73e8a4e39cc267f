"""Text models: chat messages (possibly holding images) in, generations out."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any, Optional

from pydantic import Field
from typing_extensions import TypedDict

from pixtill.mixins.runtime_parameters import RuntimeParameter
from pixtill.models.base import AsyncBridge, BaseModel

# OpenAI-style chat messages. The tasks put images in a message's content list as OpenAI
# ``{"type": "image_url", "image_url": {"url": ImageURL}}`` parts (`pixtill.image_url`: the URL
# string holds its `ImageRef`); ``{"type": "image", "image": <any image form>}`` parts are
# accepted too. Backends read either with `_wire._image_of` and encode for their wire format.
ChatType = list[dict[str, Any]]
FormattedInput = ChatType


class TokenStatistics(TypedDict, total=False):
    input_tokens: list[int]
    output_tokens: list[int]


class GenerateOutput(TypedDict, total=False):
    """What a text model returns for one input: ``num_generations`` generations.

    A failed request gives ``None`` generations and the reason in ``error``.
    """

    generations: list[str | None]
    statistics: TokenStatistics
    error: str | None


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
        generations: list[str | None] = []
        tokens: dict[str, list[int]] = {}
        for single in singles:
            one: Any = {"generations": single} if isinstance(single, list) else single
            if hasattr(one, "to_generate_output"):  # a `ModelResult` from a custom LLM
                one = one.to_generate_output()
            generations += list(one.get("generations") or [None])[:1]
            for key in ("input_tokens", "output_tokens"):
                counts = (one.get("statistics") or {}).get(key)
                if counts:
                    tokens.setdefault(key, []).extend(counts[:1])
        statistics: TokenStatistics = {}
        if "input_tokens" in tokens:
            statistics["input_tokens"] = tokens["input_tokens"]
        if "output_tokens" in tokens:
            statistics["output_tokens"] = tokens["output_tokens"]
        return {"generations": generations, "statistics": statistics}

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
