"""A custom LLM written as distilabel's docs show works unchanged with pixtill's tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, validate_call

from pixtill.image_url import ImageURL
from pixtill.models import LLM, AsyncLLM
from pixtill.models.llms.utils import prepare_output
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from pixtill.typing import ChatType, GenerateOutput
from sample_images import image_bytes

URL = "https://example.invalid/dog.png"


def describe(messages: ChatType) -> str:
    """What a distilabel-era model sees: OpenAI parts, image URLs as strings."""
    pieces = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            pieces.append(f"{message['role']}: {content}")
            continue
        for part in content:
            if part["type"] == "text":
                pieces.append(part["text"])
            else:
                url = part["image_url"]["url"]
                assert isinstance(url, str)
                pieces.append("<data url>" if url.startswith("data:image/") else f"<{url}>")
    return " ".join(pieces)


class CustomAsyncLLM(AsyncLLM):
    @property
    def model_name(self) -> str:
        return "my-model"

    @validate_call
    async def agenerate(
        self, input: ChatType, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        self._logger.debug("generating")  # distilabel models log through self._logger
        return {
            "generations": [describe(input) for _ in range(num_generations)],
            "statistics": {
                "input_tokens": [3] * num_generations,
                "output_tokens": [5] * num_generations,
            },
        }


class CustomLLM(LLM):
    structured_output: Any = None
    _seen: list[ChatType] = PrivateAttr(default_factory=list)

    def load(self) -> None:
        super().load()

    @property
    def model_name(self) -> str:
        return "my-sync-model"

    @validate_call
    def generate(
        self, inputs: list[ChatType], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        self._seen.extend(inputs)
        return [prepare_output([describe(i)] * num_generations) for i in inputs]


class OldStyleLLM(LLM):
    """distilabel before 1.5: ``generate`` returned a list of generations per input."""

    def load(self) -> None:
        pass

    @property
    def model_name(self) -> str:
        return "old"

    def generate(self, inputs: Any, num_generations: int = 1) -> Any:  # type: ignore[override]
        return [["output" for _ in range(num_generations)] for _ in inputs]


def test_async_llm_from_the_docs_reads_openai_messages() -> None:
    task = TextGenerationWithImage(
        llm=CustomAsyncLLM(), system_prompt="Be brief.", num_generations=2
    )
    task.load()
    rows = next(
        task.process(
            [
                {"instruction": "What?", "image": URL},
                {"instruction": "And this?", "image": image_bytes(4, 4)},
            ]
        )
    )
    task.unload()
    assert [r["generation"] for r in rows] == [
        f"system: Be brief. What? <{URL}>",
        f"system: Be brief. What? <{URL}>",
        "system: Be brief. And this? <data url>",
        "system: Be brief. And this? <data url>",
    ]
    assert {r["model_name"] for r in rows} == {"my-model"}
    meta = rows[0][METADATA_COLUMN]
    assert meta["statistics_text_generation_with_image_0"] == {
        "input_tokens": 3,
        "output_tokens": 5,
    }


def test_sync_llm_from_the_docs_in_a_pipeline(tmp_path: Path) -> None:
    llm = CustomLLM()
    with Pipeline(name="custom-llm", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Hi?", "image": image_bytes(3, 3)}])
        task = TextGenerationWithImage(llm=llm)
        load >> task
    distiset = pipeline.run(use_cache=False)
    (row,) = list(distiset["text_generation_with_image_0"])
    assert row["generation"] == "Hi? <data url>"
    assert row["model_name"] == "my-sync-model"
    # validate_call copied the messages but kept the URL string (and its reference).
    (seen,) = llm._seen
    assert isinstance(seen[0]["content"][1]["image_url"]["url"], ImageURL)


def test_list_shaped_outputs_of_older_llms_are_understood() -> None:
    task = TextGenerationWithImage(llm=OldStyleLLM(), num_generations=2, group_generations=True)
    task.load()
    (row,) = next(task.process([{"instruction": "x", "image": URL}]))
    assert row["generation"] == ["output", "output"]
    assert row[METADATA_COLUMN]["raw_output_text_generation_with_image_0"] == ["output", "output"]


class OneAtATimeLLM(AsyncLLM):
    """An API without ``n``: distilabel's flag makes the caller ask once per generation."""

    _num_generations_param_supported: bool = PrivateAttr(default=False)
    _calls: list[int] = PrivateAttr(default_factory=list)

    @property
    def model_name(self) -> str:
        return "one-at-a-time"

    async def agenerate(self, input: ChatType, num_generations: int = 1) -> GenerateOutput:
        self._calls.append(num_generations)
        k = len(self._calls)
        return {
            "generations": [f"answer {k}"],
            "statistics": {"input_tokens": [10], "output_tokens": [k]},
        }


def test_a_model_without_n_is_called_once_per_generation() -> None:
    llm = OneAtATimeLLM()
    task = TextGenerationWithImage(llm=llm, num_generations=3, group_generations=True)
    task.load()
    (row,) = next(task.process([{"instruction": "x", "image": URL}]))
    task.unload()
    assert llm._calls == [1, 1, 1]
    assert sorted(row["generation"]) == ["answer 1", "answer 2", "answer 3"]
    stats = row[METADATA_COLUMN]["statistics_text_generation_with_image_0"]
    assert sorted(s["output_tokens"] for s in stats) == [1, 2, 3]
    assert {s["input_tokens"] for s in stats} == {10}
    # Through `generate` too (the batch path).
    other = OneAtATimeLLM()
    outputs = other.generate([[{"role": "user", "content": "x"}]], num_generations=2)
    other.unload()
    assert outputs[0]["generations"] == ["answer 1", "answer 2"]
