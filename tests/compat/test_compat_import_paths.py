"""distilabel's documented import paths for image tasks exist with the prefix swapped."""

from __future__ import annotations

import importlib

import pytest

PATHS = {
    "pixtill.steps.tasks": [
        "Task",
        "ImageTask",
        "TextGeneration",
        "TextGenerationWithImage",
        "ImageGeneration",
        "ChatGeneration",
    ],
    "pixtill.steps.tasks.base": ["Task", "ImageTask"],
    "pixtill.steps.tasks.text_generation": ["TextGeneration"],
    "pixtill.steps.tasks.text_generation_with_image": ["TextGenerationWithImage"],
    "pixtill.steps.tasks.image_generation": ["ImageGeneration"],
    "pixtill.steps.tasks.typing": ["ChatType", "FormattedInput"],
    "pixtill.steps": [
        "Step",
        "GeneratorStep",
        "GlobalStep",
        "StepInput",
        "LoadDataFromDicts",
        "LoadDataFromHub",
    ],
    "pixtill.steps.base": ["Step", "GeneratorStep", "GlobalStep", "StepInput"],
    "pixtill.steps.typing": ["StepColumns", "StepOutput", "GeneratorStepOutput"],
    "pixtill.typing": [
        "ChatType",
        "ChatItem",
        "FormattedInput",
        "GenerateOutput",
        "HiddenState",
        "ImageContent",
        "ImageUrl",
        "TextContent",
        "LLMOutput",
        "LLMStatistics",
        "TokenCount",
        "StandardInput",
        "StepColumns",
        "StepOutput",
        "GeneratorStepOutput",
    ],
    "pixtill.models": [
        "vLLM",
        "LLM",
        "AsyncLLM",
        "ImageGenerationModel",
        "AsyncImageGenerationModel",
        "OpenAILLM",
        "AnthropicLLM",
        "InferenceEndpointsLLM",
        "TransformersLLM",
        "OpenAIImageGeneration",
        "InferenceEndpointsImageGeneration",
        "GenerateOutput",
        "HiddenState",
    ],
    "pixtill.models.llms": [
        "LLM",
        "AsyncLLM",
        "OpenAILLM",
        "AnthropicLLM",
        "InferenceEndpointsLLM",
        "TransformersLLM",
    ],
    "pixtill.models.llms.base": ["LLM", "AsyncLLM"],
    "pixtill.models.llms.typing": [
        "GenerateOutput",
        "LLMOutput",
        "LLMStatistics",
        "TokenCount",
        "HiddenState",
    ],
    "pixtill.models.llms.utils": ["prepare_output", "compute_tokens"],
    "pixtill.models.llms.openai": ["OpenAILLM"],
    "pixtill.models.llms.vllm": ["vLLM"],
    "pixtill.models.llms.anthropic": ["AnthropicLLM"],
    "pixtill.models.llms.huggingface": ["InferenceEndpointsLLM", "TransformersLLM"],
    "pixtill.models.llms.huggingface.inference_endpoints": ["InferenceEndpointsLLM"],
    "pixtill.models.llms.huggingface.transformers": ["TransformersLLM"],
    "pixtill.models.image_generation": [
        "ImageGenerationModel",
        "AsyncImageGenerationModel",
        "OpenAIImageGeneration",
        "InferenceEndpointsImageGeneration",
    ],
    "pixtill.models.image_generation.base": ["ImageGenerationModel", "AsyncImageGenerationModel"],
    "pixtill.models.image_generation.openai": ["OpenAIImageGeneration"],
    "pixtill.models.image_generation.huggingface": ["InferenceEndpointsImageGeneration"],
    "pixtill.models.image_generation.huggingface.inference_endpoints": [
        "InferenceEndpointsImageGeneration"
    ],
    "pixtill.models.image_generation.utils": ["image_to_str", "image_from_str"],
    "pixtill.models.mixins.magpie": ["MagpieChatTemplateMixin"],
    "pixtill.mixins.runtime_parameters": ["RuntimeParameter"],
    "pixtill.utils.image": ["image_to_str"],
    "pixtill.llms": ["LLM", "AsyncLLM", "OpenAILLM"],
    "pixtill.pipeline": ["Pipeline"],
    "pixtill.pipeline.local": ["Pipeline"],
    "pixtill.distiset": ["Distiset"],
}


@pytest.mark.parametrize("module", sorted(PATHS))
def test_module_imports_and_exposes_the_names(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in PATHS[module] if not hasattr(loaded, name)]
    assert missing == []


def test_re_exports_are_the_same_objects() -> None:
    from pixtill.models.image_generation import InferenceEndpointsImageGeneration as a
    from pixtill.models.image_generation.huggingface.inference_endpoints import (
        InferenceEndpointsImageGeneration as b,
    )
    from pixtill.models.llms import TransformersLLM as c
    from pixtill.models.llms.huggingface.transformers import TransformersLLM as d
    from pixtill.pipeline import Pipeline as e
    from pixtill.pipeline.local import Pipeline as f

    assert (a, c, e) == (b, d, f)


def test_magpie_mixin_appends_the_pre_query_template_only_when_asked() -> None:
    from pydantic import ValidationError

    from pixtill.models.mixins.magpie import MagpieChatTemplateMixin

    on = MagpieChatTemplateMixin(use_magpie_template=True, magpie_pre_query_template="qwen2")
    assert on.magpie_pre_query_template == "<|im_start|>user\n"
    assert on.apply_magpie_pre_query_template("P", [{"role": "assistant", "content": "a"}]) == (
        "P<|im_start|>user\n"
    )
    assert on.apply_magpie_pre_query_template("P", [{"role": "user", "content": "q"}]) == "P"
    assert MagpieChatTemplateMixin().apply_magpie_pre_query_template("P", []) == "P"
    with pytest.raises(ValidationError, match="magpie_pre_query_template"):
        MagpieChatTemplateMixin(use_magpie_template=True)


def test_llm_helpers_build_outputs_and_count_tokens() -> None:
    from pixtill.models.llms.utils import compute_tokens, prepare_output

    assert prepare_output(["a", None], [3, 3], [1, 0]) == {
        "generations": ["a", None],
        "statistics": {"input_tokens": [3, 3], "output_tokens": [1, 0]},
    }
    assert prepare_output(["a"]) == {"generations": ["a"], "statistics": {}}
    words = str.split
    assert compute_tokens("a b c", words) == 3
    messages = [
        {"role": "system", "content": "one two"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "three"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
    ]
    assert compute_tokens(messages, words) == 3
