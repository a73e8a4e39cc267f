"""Structured output: schema conversion, reply checks, and a task that asks for a shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.models.structured import (
    StructuredOutputError,
    json_schema_of,
    parse_structured,
    schema_name,
)
from pixtill.steps.tasks import TextGeneration

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["score"],
}


class Rating(BaseModel):
    score: int


def test_json_schema_of_dict_and_model() -> None:
    assert json_schema_of(SCHEMA) is SCHEMA
    assert json_schema_of(Rating)["properties"]["score"]["type"] == "integer"
    assert schema_name(Rating) == "Rating"
    assert schema_name({"title": "my schema!"}) == "my_schema_"
    with pytest.raises(TypeError):
        json_schema_of(42)  # type: ignore[arg-type]


def test_parse_structured_accepts_and_rejects() -> None:
    assert parse_structured('{"score": 3}', SCHEMA) == {"score": 3}
    assert parse_structured('{"score": 3}', Rating) == Rating(score=3)
    with pytest.raises(StructuredOutputError, match="not JSON"):
        parse_structured("score: 3", SCHEMA)
    with pytest.raises(StructuredOutputError, match="at score: 9 is greater than"):
        parse_structured('{"score": 9}', SCHEMA)
    with pytest.raises(StructuredOutputError, match="does not match Rating: score"):
        parse_structured('{"score": "high"}', Rating)


class _EchoLLM(LLM):
    """Replies with the next canned text and records what it was asked for."""

    replies: list[str]
    seen: list[Any] = []

    @property
    def model_name(self) -> str:
        return "echo"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        self.seen.append(kwargs.get("structured_output"))
        return [{"generations": [self.replies.pop(0)], "statistics": {}} for _ in inputs]


class _RatingTask(TextGeneration):
    def get_structured_output(self) -> dict[str, Any]:
        return SCHEMA


def test_task_sends_schema_and_fails_rows_that_do_not_match() -> None:
    llm = _EchoLLM(replies=['{"score": 4}', '{"score": 0}'])
    task = _RatingTask(name="rate", llm=llm)
    task.load()
    rows = next(task.process([{"instruction": "a"}, {"instruction": "b"}]))
    assert llm.seen == [SCHEMA]
    assert rows[0]["generation"] == '{"score": 4}'
    assert rows[1]["generation"] is None
    error = rows[1]["pixtill_metadata"]["error_rate"]
    assert "does not match the schema at score" in error
    assert rows[1]["pixtill_metadata"]["raw_output_rate"] == '{"score": 0}'
