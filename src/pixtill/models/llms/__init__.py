from pixtill.models.llms.anthropic import AnthropicLLM
from pixtill.models.llms.anthropic_batch import AnthropicBatchLLM
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
from pixtill.models.llms.openai_batch import OpenAIBatchLLM
from pixtill.models.llms.transformers import TransformersLLM
from pixtill.models.llms.vllm import vLLM

__all__ = [
    "LLM",
    "AnthropicBatchLLM",
    "AnthropicLLM",
    "AsyncLLM",
    "ChatType",
    "FormattedInput",
    "GenerateOutput",
    "InferenceEndpointsLLM",
    "OpenAIBatchLLM",
    "OpenAILLM",
    "TokenStatistics",
    "TransformersLLM",
    "vLLM",
]
