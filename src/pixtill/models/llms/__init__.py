from pixtill.models.llms.anthropic import AnthropicLLM
from pixtill.models.llms.base import (
    LLM,
    AsyncLLM,
    ChatType,
    FormattedInput,
    GenerateOutput,
    TokenStatistics,
)
from pixtill.models.llms.huggingface import InferenceEndpointsLLM
from pixtill.models.llms.openai import OpenAILLM
from pixtill.models.llms.transformers import TransformersLLM
from pixtill.models.llms.vllm import vLLM

__all__ = [
    "LLM",
    "AnthropicLLM",
    "AsyncLLM",
    "ChatType",
    "FormattedInput",
    "GenerateOutput",
    "InferenceEndpointsLLM",
    "OpenAILLM",
    "TokenStatistics",
    "TransformersLLM",
    "vLLM",
]
