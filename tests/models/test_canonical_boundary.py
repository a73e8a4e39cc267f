"""The canonical boundary between tasks and models: one `ModelRequest` in, one `ModelResult`
out, for text and image models alike; distilabel-style models (dicts in and out) still work
through the adapter, and a subclass overriding a built-in ``generate``/``agenerate`` is still
called through its override."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from doubles import png_for
from http_servers import serve
from models.fake_providers import FAST, FakeProviders, loaded
from pixtill.models.http import RequestError
from pixtill.models.image_generation import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    ImageGenerationOutput,
    OpenAIImageGeneration,
)
from pixtill.models.llms import LLM, GenerateOutput, OpenAILLM
from pixtill.models.request import ModelRequest, speaks_canonical
from pixtill.models.results import GeneratedImage, Generation, ModelResult, ResultError
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration, TextGeneration

KEY = "sk-test-canonical-SECRET-0123456789"


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


# ------------------------------------------------------------------ the request


def test_request_of_a_distilabel_call() -> None:
    request = ModelRequest.of_call(
        [{"role": "user", "content": "hi"}],
        3,
        {"temperature": 0.2, "top_p": None, "structured_output": {"type": "object"}},
        {"temperature": 1.0, "max_tokens": 64},
    )
    assert request.n == 3
    assert dict(request.settings) == {"temperature": 0.2, "max_tokens": 64}  # call wins, no Nones
    assert request.structured_output == {"type": "object"}
    assert request.call_kwargs() == {
        "temperature": 0.2,
        "max_tokens": 64,
        "structured_output": {"type": "object"},
    }
    with pytest.raises(ValueError, match="n >= 1"):
        ModelRequest("p", 0)


def test_one_batched_call_needs_one_shape_of_request() -> None:
    model = OpenAIImageGeneration(base_url="http://127.0.0.1:9/v1", api_key=KEY)
    with pytest.raises(ValueError, match="share n and settings"):
        model.generate_results([ModelRequest("a", 1), ModelRequest("b", 2)])


# ------------------------------------------------------------------ image results


def test_image_results_round_trip_through_distilabels_dicts() -> None:
    result = ModelResult.of(
        [Generation.of_image("aGVsbG8=", "PNG", 5, 272), Generation.failed("blocked")]
    )
    outputs = result.to_image_outputs()
    assert outputs == [{"images": ["aGVsbG8="]}, {"images": [None], "error": "blocked"}]
    back = ModelResult.from_image_outputs(outputs)
    assert back.images == [GeneratedImage("aGVsbG8="), None]
    assert back.generations[1].error == ResultError("blocked")
    assert back.error is None  # one generation made it: the request did not fail


@pytest.mark.parametrize(
    ("output", "why"),
    [
        ({"images": [None]}, "the model returned no image"),
        ({"images": []}, "the model returned no image"),
        ({"images": [b"png bytes"]}, "the model's image 0 is a bytes, not base64 text"),
        ("aGVsbG8=", "the model returned a str, not images"),
        ({"images": [None], "error": "quota"}, "quota"),
    ],
)
def test_what_a_custom_image_model_returns_is_checked(output: Any, why: str) -> None:
    result = ModelResult.from_image_outputs([output])
    assert result.error == ResultError(why)
    assert result.generations[0].error == ResultError(why)


def test_a_message_given_as_error_becomes_data() -> None:
    assert Generation(None, error="refused").error == ResultError("refused")  # type: ignore[arg-type]


# ------------------------------------------------------------------ backends at their edge


def test_a_failed_chunk_keeps_its_error_kind(url: str) -> None:
    """dall-e-3 takes one image per request: the second of three is rate limited for good;
    its generation fails with the error as data, the others succeed."""
    model = OpenAIImageGeneration(base_url=f"{url}/v1", api_key=KEY, **FAST)
    calls: list[int] = []

    async def request(engine: Any, payload: dict[str, Any], n: int) -> list[Generation]:
        calls.append(n)
        if len(calls) == 2:
            raise RequestError("HTTP 429", status=429, attempts=4, retryable=True, url=url)
        return [Generation.of_image(png_for("p", len(calls)))] * n

    object.__setattr__(model, "_request", request)

    async def main() -> ModelResult:
        try:
            return await model.agenerate_result(ModelRequest("p", 3))
        finally:
            await model.aclose()

    result = asyncio.run(main())
    assert [g.ok for g in result.generations] == [True, False, True]
    error = result.generations[1].error
    assert error is not None
    assert (error.kind, error.status, error.retryable) == ("rate_limited", 429, True)
    assert result.error is None


def test_gpt_image_usage_reaches_the_rows_statistics(url: str) -> None:
    model = OpenAIImageGeneration(model="gpt-image-1", base_url=f"{url}/v1", api_key=KEY, **FAST)
    task = ImageGeneration(name="paint", image_generation_model=model, num_generations=3)
    with loaded(task):
        rows = next(task.process([{"prompt": "a red cube on grass"}]))
    stats = [row[METADATA_COLUMN]["statistics_paint"] for row in rows]
    assert [s["input_tokens"] for s in stats] == [5, 5, 5]
    assert [s["output_tokens"] for s in stats] == [273, 272, 272]  # 817 split, adds up
    assert all(row["image"] for row in rows)


def test_the_task_sends_one_typed_request(url: str) -> None:
    seen: list[ModelRequest[Any]] = []

    class Recording(OpenAILLM):
        async def _agenerate_result(self, request: ModelRequest[Any]) -> ModelResult:
            seen.append(request)
            return ModelResult.of([Generation(f"answer {k}", 3, 2) for k in range(request.n)])

    llm = Recording(model="m", base_url=f"{url}/v1", api_key=KEY, generation_kwargs={"seed": 7})
    assert speaks_canonical(llm, "agenerate")
    task = TextGeneration(name="write", llm=llm, num_generations=2)
    with loaded(task):
        rows = next(task.process([{"instruction": "say hi"}]))
    assert [row["generation"] for row in rows] == ["answer 0", "answer 1"]
    (request,) = seen
    assert (request.n, dict(request.settings), request.structured_output) == (2, {"seed": 7}, None)
    assert request.input == [{"role": "user", "content": "say hi"}]


# ------------------------------------------------------------------ distilabel's contract


class DictModel(ImageGenerationModel):
    """An image model as written for distilabel: ``generate`` returns dicts."""

    @property
    def model_name(self) -> str:
        return "dict-model"

    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        outputs: list[list[ImageGenerationOutput]] = []
        for prompt in inputs:
            if prompt == "broken":
                outputs.append([{"images": ["not an image at all"]}] * num_generations)
            else:
                outputs.append([{"images": [png_for(prompt, k)]} for k in range(num_generations)])
        return outputs


def test_a_distilabel_style_image_model_runs_in_the_task() -> None:
    task = ImageGeneration(name="paint", image_generation_model=DictModel(), num_generations=2)
    with loaded(task):
        rows = next(task.process([{"prompt": "a fox"}, {"prompt": "broken"}]))
    assert [row["image"] for row in rows[:2]] == [png_for("a fox", 0), png_for("a fox", 1)]
    assert [row["image"] for row in rows[2:]] == [None, None]
    error = rows[2][METADATA_COLUMN]["error_paint"]
    assert "not a decodable image" in error and "row 1" in error
    # The public call keeps distilabel's shape.
    assert DictModel().generate_outputs(["x"]) == [[{"images": [png_for("x", 0)]}]]


def test_a_subclass_overriding_agenerate_is_called_through_it() -> None:
    class Stamped(OpenAIImageGeneration):
        async def agenerate(
            self, input: str, num_generations: int = 1, **kwargs: Any
        ) -> list[ImageGenerationOutput]:
            return [{"images": [png_for(f"stamped {input}", k)]} for k in range(num_generations)]

    model = Stamped(base_url="http://127.0.0.1:9/v1", api_key=KEY)  # nothing listens there
    assert not speaks_canonical(model, "agenerate")
    task = ImageGeneration(name="paint", image_generation_model=model)
    with loaded(task):
        rows = next(task.process([{"prompt": "owl"}]))
    assert rows[0]["image"] == png_for("stamped owl", 0)


class ShortLLM(LLM):
    """A distilabel-style LLM that answers for the first input only."""

    @property
    def model_name(self) -> str:
        return "short"

    def generate(
        self, inputs: list[Any], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [{"generations": ["only one"] * num_generations, "statistics": {}}]


def test_a_model_that_answers_for_fewer_inputs_fails_only_the_missing_rows() -> None:
    task = TextGeneration(name="write", llm=ShortLLM())
    with loaded(task):
        rows = next(task.process([{"instruction": "a"}, {"instruction": "b"}]))
    assert [row["generation"] for row in rows] == ["only one", None]
    error = rows[1][METADATA_COLUMN]["error_write"]
    assert "ShortLLM returned 1 outputs for 2 inputs; none for this one" in error


def test_a_custom_image_model_may_answer_with_the_canonical_result() -> None:
    class Canonical(AsyncImageGenerationModel):
        @property
        def model_name(self) -> str:
            return "canonical"

        async def agenerate(  # type: ignore[override]
            self, input: str, num_generations: int = 1, **kwargs: Any
        ) -> ModelResult:
            return ModelResult.of(
                [Generation.of_image(png_for(input, k), "PNG") for k in range(num_generations)]
            )

    task = ImageGeneration(name="paint", image_generation_model=Canonical(), num_generations=2)
    with loaded(task):
        rows = next(task.process([{"prompt": "heron"}]))
    assert [row["image"] for row in rows] == [png_for("heron", 0), png_for("heron", 1)]


def test_exceptions_become_error_kinds() -> None:
    from pixtill.models.remote import InvalidResponseError

    bad = ResultError.of(InvalidResponseError("OpenAILLM", "the response has no choices"))
    assert (bad.kind, bad.retryable) == ("invalid_response", False)
    assert bad.message == "InvalidResponseError: OpenAILLM: the response has no choices"
    assert ResultError.of(TimeoutError("slow")).kind == "timeout"
    assert ResultError.of(ConnectionResetError("reset")).kind == "connection"
    assert ResultError.of(ValueError("odd")) == ResultError("ValueError: odd")
