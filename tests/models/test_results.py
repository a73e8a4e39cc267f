"""The canonical result type at the backends' edge (`ModelResult`) and its conversions to and
from distilabel's ``{"generations": [...], "statistics": {...}}`` dict, which the tasks accept
either way."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from pixtill.models.http import ErrorKind, RequestError
from pixtill.models.llms import AnthropicLLM, AsyncLLM, OpenAILLM
from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.models.results import Generation, ModelResult, ResultError
from pixtill.steps.tasks import METADATA_COLUMN, TextGeneration


def test_round_trip_through_distilabels_dict() -> None:
    result = ModelResult.of(
        [
            Generation("a", 10, 3, finish_reason="stop"),
            Generation("b", 10, 5, finish_reason="length"),
        ]
    )
    output = result.to_generate_output()
    assert output == {
        "generations": ["a", "b"],
        "statistics": {"input_tokens": [10, 10], "output_tokens": [3, 5]},
    }
    back = ModelResult.from_generate_output(output)
    assert back.texts == ["a", "b"]
    assert [(g.input_tokens, g.output_tokens) for g in back.generations] == [(10, 3), (10, 5)]
    assert back.error is None
    assert result.finish_reasons == ["stop", "length"]
    assert ModelResult.from_generate_output(["x", None]).texts == ["x", None]  # pre-1.5 lists


def test_token_lists_only_when_every_generation_has_them() -> None:
    output = ModelResult.of([Generation("a", 10, 3), Generation(None, error="refused")])
    assert output.to_generate_output() == {
        "generations": ["a", None],
        "statistics": {},
        "error": "refused",
    }


def test_a_failed_request_is_data() -> None:
    error = RequestError("HTTP 429", status=429, attempts=7, retryable=True, url="http://h/v1")
    result = ModelResult.failed(error, 2)
    assert result.error is not None
    assert (result.error.kind, result.error.status, result.error.retryable) == (
        ErrorKind.RATE_LIMITED.value,
        429,
        True,
    )
    assert result.error.message.startswith("RequestError: HTTP 429 after 7 attempts")
    assert result.to_generate_output() == {
        "generations": [None, None],
        "statistics": {},
        "error": result.error.message,
    }
    assert ModelResult.from_generate_output(result.to_generate_output()).error == ResultError(
        result.error.message
    )
    assert pickle.loads(pickle.dumps(result)) == result  # travels to Ray workers
    assert ModelResult.failed(ValueError("bad"), 1).error == ResultError("ValueError: bad")


def test_openai_edge_keeps_finish_reasons_and_usage() -> None:
    llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    body = {
        "choices": [
            {"index": 1, "message": {"content": "two"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "one"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8},
    }
    result = ModelResult.of(llm._parse(body))
    assert result.texts == ["one", "two"]
    assert result.finish_reasons == ["stop", "length"]
    assert result.to_generate_output()["statistics"] == {
        "input_tokens": [12, 12],
        "output_tokens": [4, 4],
    }


def test_anthropic_edge_keeps_the_stop_reason() -> None:
    llm = AnthropicLLM(model="claude", base_url="http://127.0.0.1:9", api_key="k")
    body = {
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 3},
    }
    generation = llm._parse(body)
    assert (generation.text, generation.input_tokens, generation.output_tokens) == ("hi", 8, 2)
    assert generation.finish_reason == "max_tokens"


class _TypedAsyncLLM(AsyncLLM):
    """A custom LLM that answers with the canonical type instead of the dict."""

    @property
    def model_name(self) -> str:
        return "typed-async"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        text = str(input[-1]["content"])
        if "fail" in text:
            return ModelResult.failed("refused by the server", num_generations)  # type: ignore[return-value]
        gens = [Generation(f"{text}!{k}", 4, 2) for k in range(num_generations)]
        return ModelResult.of(gens)  # type: ignore[return-value]


class _TypedLLM(LLM):
    """The same with a synchronous ``generate``, one-generation requests fanned out."""

    @property
    def model_name(self) -> str:
        return "typed"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [
            ModelResult.of([Generation(str(i[-1]["content"]).upper(), 1, 1)] * num_generations)  # type: ignore[misc]
            for i in inputs
        ]


@pytest.mark.parametrize("llm", [_TypedAsyncLLM(), _TypedLLM()], ids=["async", "sync"])
def test_tasks_accept_the_canonical_type(llm: LLM) -> None:
    task = TextGeneration(name="gen", llm=llm, num_generations=2, group_generations=True)
    task.load()
    try:
        rows = next(task.process([{"instruction": "ok"}, {"instruction": "fail"}]))
    finally:
        task.unload()
    assert rows[0]["generation"] in (["ok!0", "ok!1"], ["OK", "OK"])
    stats = rows[0][METADATA_COLUMN]["statistics_gen"]  # one per generation when grouped
    assert [s["input_tokens"] for s in stats] in ([4, 4], [1, 1])
    if isinstance(llm, _TypedAsyncLLM):
        assert rows[1]["generation"] == [None, None]
        assert (
            rows[1][METADATA_COLUMN]["error_gen"]
            == ["step 'gen': row 1: refused by the server"] * 2
        )


def test_failed_generate_output_is_the_canonical_failure() -> None:
    from pixtill.models.llms.base import failed_generate_output

    for error in ("gone", ValueError("bad")):
        expected = ModelResult.failed(error, 3).to_generate_output()
        assert failed_generate_output(error, 3) == expected
