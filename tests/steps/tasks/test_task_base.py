from __future__ import annotations

from typing import Any

import pytest

from doubles import DescribingLLM, PaletteImageModel
from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration, TextGeneration


class FlakyFormat(TextGeneration):
    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if input and input["instruction"] == "bad":
            raise ValueError("cannot parse")
        return {"generation": output}


class SyncLLM(LLM):
    """A plain synchronous LLM, to check the sync path needs no event loop."""

    @property
    def model_name(self) -> str:
        return "sync"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [
            {"generations": [f"{kwargs.get('suffix', '')}{i}"] * num_generations}
            for i, _ in enumerate(inputs)
        ]


def test_num_generations_one_row_each() -> None:
    task = TextGeneration(name="gen", llm=DescribingLLM(), num_generations=3)
    task.load()
    rows = next(task.process([{"instruction": "a"}, {"instruction": "b"}]))
    assert [(r["instruction"], r["generation"][:3]) for r in rows] == [
        ("a", "[0]"),
        ("a", "[1]"),
        ("a", "[2]"),
        ("b", "[0]"),
        ("b", "[1]"),
        ("b", "[2]"),
    ]
    assert all(r[METADATA_COLUMN]["statistics_gen"]["output_tokens"] > 0 for r in rows)


def test_group_generations_lists() -> None:
    task = TextGeneration(
        name="gen", llm=DescribingLLM(), num_generations=2, group_generations=True
    )
    task.load()
    [row] = next(task.process([{"instruction": "a"}]))
    assert [g[:3] for g in row["generation"]] == ["[0]", "[1]"]
    meta = row[METADATA_COLUMN]
    assert len(meta["raw_output_gen"]) == 2
    assert len(meta["statistics_gen"]) == 2
    assert meta["raw_input_gen"] == [{"role": "user", "content": "a"}]
    assert row["model_name"] == "test/describing-vlm"


def test_format_output_failure_keeps_raw_output(caplog: pytest.LogCaptureFixture) -> None:
    task = FlakyFormat(name="flaky", llm=DescribingLLM())
    task.load()
    rows = next(task.process([{"instruction": "good"}, {"instruction": "bad"}]))
    assert rows[0]["generation"] == "[0] saw user: good"
    assert rows[1]["generation"] is None
    meta = rows[1][METADATA_COLUMN]
    assert meta["raw_output_flaky"] == "[0] saw user: bad"
    assert "cannot parse" in meta["error_flaky"]
    assert "step 'flaky': row 1: format_output failed" in caplog.text


def test_raw_flags_off_and_metadata_of_earlier_steps_kept() -> None:
    task = TextGeneration(
        name="second", llm=DescribingLLM(), add_raw_input=False, add_raw_output=False
    )
    task.load()
    [row] = next(task.process([{"instruction": "a", METADATA_COLUMN: {"raw_output_first": "x"}}]))
    assert row[METADATA_COLUMN] == {
        "raw_output_first": "x",
        "statistics_second": {"input_tokens": 2, "output_tokens": 4},
    }


def test_generation_kwargs_reach_sync_llm() -> None:
    task = TextGeneration(llm=SyncLLM(generation_kwargs={"suffix": "s"}))
    task.load()
    rows = next(task.process([{"instruction": "a"}, {"instruction": "b"}]))
    assert [r["generation"] for r in rows] == ["s0", "s1"]
    assert task.name == "text_generation_0"


def test_mappings() -> None:
    task = TextGeneration(
        llm=DescribingLLM(),
        input_mappings={"instruction": "question"},
        output_mappings={"generation": "answer"},
    )
    task.load()
    [row] = next(task.process_applying_mappings([{"question": "why"}]))
    assert row["question"] == "why"
    assert row["answer"] == "[0] saw user: why"
    assert "instruction" not in row and "generation" not in row


def test_task_refuses_an_image_model_as_llm() -> None:
    with pytest.raises(ValueError, match="llm"):
        TextGeneration(llm=PaletteImageModel())  # type: ignore[arg-type]


def test_image_task_refuses_llm_argument() -> None:
    with pytest.raises(ValueError, match="image_generation_model"):
        ImageGeneration(llm=DescribingLLM(), image_generation_model=PaletteImageModel())
