"""System prompts follow distilabel: a row's ``system_prompt`` column wins in `TextGeneration`,
and an empty system prompt sends no system message."""

from __future__ import annotations

from doubles import DescribingLLM
from pixtill.steps.tasks import METADATA_COLUMN, TextGeneration, TextGenerationWithImage


def test_the_row_system_prompt_wins_over_the_field() -> None:
    task = TextGeneration(llm=DescribingLLM(), system_prompt="Field.")
    task.load()
    assert task.format_input({"instruction": "Q?", "system_prompt": "Row."}) == [
        {"role": "system", "content": "Row."},
        {"role": "user", "content": "Q?"},
    ]
    assert task.format_input({"instruction": "Q?"})[0] == {"role": "system", "content": "Field."}
    assert task.get_inputs() == {"instruction": True, "system_prompt": False}


def test_an_empty_system_prompt_sends_no_system_message() -> None:
    task = TextGenerationWithImage(llm=DescribingLLM(), system_prompt="", image_type="url")
    task.load()
    messages = task.format_input({"instruction": "Q?", "image": "https://example.invalid/a.png"})
    assert [m["role"] for m in messages] == ["user"]


def test_a_system_prompt_that_is_not_text_fails_its_row_only() -> None:
    task = TextGeneration(llm=DescribingLLM())
    task.load()
    bad, good = next(task.process([{"instruction": "a", "system_prompt": 3}, {"instruction": "b"}]))
    assert bad["generation"] is None
    assert "column 'system_prompt'" in bad[METADATA_COLUMN]["error_text_generation_0"]
    assert good["generation"] is not None
