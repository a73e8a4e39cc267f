"""A task's ``structured_output=`` as each backend sends it (checked by the fake servers), and
the JSON text each one returns."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, loaded
from pixtill.models.llms import AnthropicLLM, InferenceEndpointsLLM, OpenAILLM, TransformersLLM
from pixtill.models.llms.base import LLM
from pixtill.models.structured import StructuredOutputNotSupportedError, StructuredOutputSpec
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from sample_images import image_bytes

KEY = "sk-test-structured-0123456789"


class Caption(BaseModel):
    subject: str
    objects: int


CLOSED = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["cat", "dog"]}},
    "required": ["label"],
    "additionalProperties": False,
}


class StructuredCaption(TextGenerationWithImage):
    spec: Any = None

    def get_structured_output(self) -> StructuredOutputSpec | None:
        return self.spec  # type: ignore[no-any-return]


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def rows() -> list[dict[str, Any]]:
    image = base64.b64encode(image_bytes()).decode()
    return [{"instruction": "Describe it as JSON.", "image": image}]


def backend(kind: str, url: str) -> LLM:
    if kind == "openai":
        return OpenAILLM(model="gpt-4o-mini", base_url=f"{url}/v1", api_key=KEY, **FAST)
    if kind == "hf":
        return InferenceEndpointsLLM(model_id="org/vlm", base_url=url, api_key=KEY, **FAST)
    return AnthropicLLM(model="claude-test", base_url=url, api_key=KEY, **FAST)


@pytest.mark.parametrize("kind", ["openai", "hf"])
def test_openai_compatible_servers_get_a_json_schema_response_format(
    kind: str, fake: FakeProviders, url: str
) -> None:
    task = StructuredCaption(name="cap", llm=backend(kind, url), spec=Caption)
    with loaded(task):
        out = next(task.process(rows()))
    assert Caption.model_validate_json(out[0]["generation"]) == Caption(subject="text", objects=7)
    sent = fake.received_on("chat")[0].payload["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Caption"
    assert sent["json_schema"]["schema"] == Caption.model_json_schema()
    assert "strict" not in sent["json_schema"]  # pydantic's schema is not closed: not strict


def test_a_closed_schema_is_sent_strict(fake: FakeProviders, url: str) -> None:
    task = StructuredCaption(name="cap", llm=backend("openai", url), spec=CLOSED)
    with loaded(task):
        out = next(task.process(rows()))
    assert json.loads(out[0]["generation"]) == {"label": "cat"}
    sent = fake.received_on("chat")[0].payload["response_format"]["json_schema"]
    assert sent["strict"] is True and sent["schema"] == CLOSED


def test_the_task_spec_wins_over_the_model_setting(fake: FakeProviders, url: str) -> None:
    llm = OpenAILLM(
        model="m", base_url=f"{url}/v1", api_key=KEY, structured_output={"type": "json_object"}
    )
    task = StructuredCaption(name="cap", llm=llm, spec=CLOSED)
    with loaded(task):
        next(task.process(rows()))
    payload = fake.received_on("chat")[0].payload
    assert payload["response_format"]["type"] == "json_schema"
    assert "structured_output" not in payload


def test_anthropic_gets_one_forced_tool_and_returns_its_input(
    fake: FakeProviders, url: str
) -> None:
    task = StructuredCaption(name="cap", llm=backend("anthropic", url), spec=Caption)
    with loaded(task):
        out = next(task.process(rows()))
    assert json.loads(out[0]["generation"]) == {"subject": "text", "objects": 7}
    assert out[0][METADATA_COLUMN].get("error_cap") is None
    payload = fake.received_on("messages")[0].payload
    assert payload["tools"] == [
        {
            "name": "Caption",
            "description": "Record the answer in this exact structure.",
            "input_schema": Caption.model_json_schema(),
        }
    ]
    assert payload["tool_choice"] == {"type": "tool", "name": "Caption"}


def test_anthropic_refuses_a_non_object_schema(url: str) -> None:
    task = StructuredCaption(name="cap", llm=backend("anthropic", url), spec={"type": "string"})
    with loaded(task):
        out = next(task.process(rows()))
    assert out[0]["generation"] is None
    assert "needs an object schema" in out[0][METADATA_COLUMN]["error_cap"]


def test_transformers_says_structured_output_is_not_supported() -> None:
    llm = TransformersLLM(model="not-loaded")
    with pytest.raises(StructuredOutputNotSupportedError, match="does not support structured"):
        llm.generate([[{"role": "user", "content": "hi"}]], structured_output=Caption)
