"""Values distilabel refuses are refused here too, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from doubles import DescribingLLM
from pixtill.models.image_generation import (
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.steps.tasks import TextGenerationWithImage


def openai(model: str = "dall-e-3", **kwargs: Any) -> OpenAIImageGeneration:
    return OpenAIImageGeneration(
        model=model, api_key="sk-test", base_url="http://127.0.0.1:9/v1", **kwargs
    )


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("dall-e-3", {"response_format": "unknown"}, "response_format must be one of"),
        ("gpt-image-1", {"response_format": "png"}, "response_format must be one of"),
        ("dall-e-3", {"quality": "high"}, "quality must be one of \\['hd', 'standard'\\]"),
        ("dall-e-2", {"quality": "hd"}, "quality must be one of \\['standard'\\]"),
        ("gpt-image-1", {"quality": "hd"}, "quality must be one of"),
        ("dall-e-3", {"size": "512x512"}, "size must be one of"),
        ("dall-e-2", {"size": "1792x1024"}, "size must be one of"),
        ("local-model", {"size": "big"}, "size must read"),
        ("dall-e-3", {"style": "cartoon"}, "style must be one of \\['natural', 'vivid'\\]"),
        ("dall-e-2", {"style": "vivid"}, "style must be one of \\[\\]"),
    ],
)
def test_openai_image_parameters_are_checked(
    model: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        openai(model, generation_kwargs=params)
    igm = openai(model)
    with pytest.raises(ValueError, match=message):
        igm.generate(inputs=["a white siamese cat"], **params)
    with pytest.raises(ValueError, match=message):
        igm._run_sync(igm.agenerate("a white siamese cat", **params))
    igm.unload()


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (
            "dall-e-3",
            {"response_format": "url", "quality": "hd", "size": "1792x1024", "style": "natural"},
        ),
        ("dall-e-2", {"response_format": "b64_json", "size": "256x256"}),
        ("gpt-image-1", {"quality": "high", "size": "1536x1024"}),
        ("local-model", {"size": "768x512", "quality": "standard"}),
        ("dall-e-3", {"size": None, "quality": None}),
    ],
)
def test_documented_values_are_accepted(model: str, params: dict[str, Any]) -> None:
    assert openai(model, generation_kwargs=params).generation_kwargs == params


def test_the_prompt_must_be_a_string() -> None:
    igm = openai()
    with pytest.raises(ValueError, match="prompt must be a string"):
        igm._run_sync(igm.agenerate(123))  # type: ignore[arg-type]
    igm.unload()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"height": "tall"}, "height must be a number"),
        ({"width": 0}, "width must be positive"),
        ({"guidance_scale": True}, "guidance_scale must be a number"),
        ({"negative_prompt": 3}, "negative_prompt must be a string"),
        ({"seed": 1.5}, "seed must be an int"),
    ],
)
def test_hf_text_to_image_parameters_are_checked(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InferenceEndpointsImageGeneration(base_url="http://127.0.0.1:9", generation_kwargs=params)
    igm = InferenceEndpointsImageGeneration(base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=message):
        igm.generate(inputs=["a cat"], **params)
    igm.unload()


@pytest.mark.parametrize("image_type", ["jpeg", "URL", "pil", None])
def test_unknown_image_types_are_refused(image_type: Any) -> None:
    with pytest.raises(ValidationError, match="image_type"):
        TextGenerationWithImage(llm=DescribingLLM(), image_type=image_type)


def test_a_url_image_must_be_a_url() -> None:
    task = TextGenerationWithImage(llm=DescribingLLM(), image_type="url")
    task.load()
    (row,) = next(task.process([{"instruction": "x", "image": "123kjh123"}]))
    assert row["generation"] is None
    error = row["pixtill_metadata"]["error_text_generation_with_image_0"]
    assert "column 'image'" in error and "image_type='url'" in error
