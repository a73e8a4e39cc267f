"""API keys never show up in dumps, reprs, errors, logs or row metadata."""

from __future__ import annotations

import base64
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, loaded
from pixtill.errors import ModelUnavailableError
from pixtill.models.base import BaseModel
from pixtill.models.image_generation import (
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.models.llms import AnthropicLLM, InferenceEndpointsLLM, OpenAILLM
from pixtill.models.transport import RequestError
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration, TextGenerationWithImage
from sample_images import image_bytes

SECRET = "sk-SECRET-do-not-leak-0123456789"

BACKENDS: dict[str, Callable[[str], BaseModel]] = {
    "openai": lambda base: OpenAILLM(model="m", base_url=f"{base}/v1", api_key=SECRET, **FAST),
    "anthropic": lambda base: AnthropicLLM(model="m", base_url=base, api_key=SECRET, **FAST),
    "hf": lambda base: InferenceEndpointsLLM(base_url=base, api_key=SECRET, **FAST),
    "openai-images": lambda base: OpenAIImageGeneration(
        base_url=f"{base}/v1", api_key=SECRET, **FAST
    ),
    "hf-images": lambda base: InferenceEndpointsImageGeneration(
        base_url=f"{base}/models/org/model", api_key=SECRET, **FAST
    ),
}


@pytest.fixture(autouse=True)
def no_saved_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=SECRET)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def views(model: BaseModel) -> list[str]:
    return [
        repr(model),
        str(model),
        json.dumps(model.model_dump(), default=str),
        model.model_dump_json(),
        json.dumps(model.model_dump(mode="json")),
        repr(model.model_copy()),
    ]


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_key_is_in_no_dump_or_repr(kind: str) -> None:
    model = BACKENDS[kind]("http://127.0.0.1:9")
    for text in views(model):
        assert SECRET not in text
    assert "api_key" not in model.model_dump()
    model.load()  # the engine holds the key now
    try:
        for text in views(model):
            assert SECRET not in text
        assert SECRET not in repr(model.engine)
        assert SECRET not in json.dumps(model.request_stats())
    finally:
        model.unload()


@pytest.mark.parametrize(
    ("kind", "env"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("hf", "HF_TOKEN"),
        ("openai-images", "OPENAI_API_KEY"),
    ],
)
def test_key_from_environment_is_not_stored_in_fields(
    kind: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env, SECRET)
    model = BACKENDS[kind]("http://127.0.0.1:9").model_copy(update={"api_key": None})
    model.load()
    try:
        for text in views(model):
            assert SECRET not in text
    finally:
        model.unload()


def test_pickled_config_has_no_key() -> None:
    model = OpenAILLM(model="m", api_key=SECRET)
    restored = OpenAILLM.model_validate_json(model.model_dump_json())
    assert restored.api_key is None
    assert SECRET.encode() not in pickle.dumps(model.model_dump())


def _vision(llm: Any) -> TextGenerationWithImage:
    return TextGenerationWithImage(name="vision", llm=llm)


@pytest.mark.parametrize("kind", ["openai", "anthropic", "hf"])
def test_failing_requests_never_leak_the_key(
    kind: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = base64.b64encode(image_bytes()).decode()
    rows_in = [
        {"instruction": "echo [[echokey]]", "image": image},  # 401 echoing the credentials
        {"instruction": "flaky [[500:99]]", "image": image},  # retried, then fails
        {"instruction": "fine", "image": image},
    ]
    task = _vision(BACKENDS[kind](url).model_copy(update={"max_retries": 2}))
    with loaded(task):
        next(task.process([{"instruction": "warm up", "image": image}]))  # the key works
        rows = next(task.process(rows_in))
    assert rows[2]["generation"] is not None
    assert rows[0]["generation"] is None and rows[1]["generation"] is None
    echoed = rows[0][METADATA_COLUMN]["error_vision"]
    assert "HTTP 401" in echoed and "***" in echoed
    assert SECRET not in json.dumps(rows, default=str)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)


def test_request_error_raised_by_agenerate_is_scrubbed(url: str) -> None:
    import asyncio

    llm = OpenAILLM(model="m", base_url=f"{url}/v1", api_key=SECRET, **FAST)
    messages = [{"role": "user", "content": "[[echokey]]"}]

    async def main() -> None:
        try:
            await llm.agenerate([{"role": "user", "content": "fine"}])  # the key works
            await llm.agenerate(messages)
        finally:
            await llm.aclose()

    with pytest.raises(RequestError) as info:
        asyncio.run(main())
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in info.value.body
    assert "Incorrect API key provided: ***" in str(info.value)
    assert info.value.__context__ is None  # the unscrubbed original is not chained


def test_model_unavailable_error_is_scrubbed(url: str) -> None:
    import asyncio

    llm = OpenAILLM(model="m", base_url=f"{url}/v1", api_key=SECRET, **FAST)

    async def main() -> None:
        try:
            await llm.agenerate([{"role": "user", "content": "[[echokey]]"}])
        finally:
            await llm.aclose()

    with pytest.raises(ModelUnavailableError) as info:  # a 401 before any success
        asyncio.run(main())
    assert SECRET not in str(info.value)
    assert "Incorrect API key provided: ***" in str(info.value)
    assert info.value.__context__ is None


def test_image_task_metadata_has_no_key(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for kind in ("openai-images", "hf-images"):
        task = ImageGeneration(name="img", image_generation_model=BACKENDS[kind](url))
        with loaded(task):
            rows = next(task.process([{"prompt": "ok"}, {"prompt": "[[echokey]]"}]))
        assert rows[0]["image"] is not None
        assert rows[1]["image"] is None
        assert SECRET not in json.dumps(rows, default=str)
    assert SECRET not in caplog.text


def test_any_error_text_is_scrubbed_even_a_truncated_key() -> None:
    from pixtill.models.llms import OpenAILLM

    key = "sk-test-SECRET-0123456789abcdef"
    llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key=key)
    llm.load()
    try:
        whole = llm.describe_error(ValueError(f"server said: bad key {key}"))
        cut = llm.describe_error(ValueError(f"server said: bad key {key[:14]}..."))
    finally:
        llm.unload()
    assert key not in whole and "***" in whole
    assert key[:10] not in cut and "***" in cut
