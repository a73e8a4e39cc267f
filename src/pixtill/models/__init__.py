from pixtill.models.image_generation import (
    AsyncImageGenerationModel,
    DiffusersImageGeneration,
    ImageGenerationModel,
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.models.llms import (
    LLM,
    AnthropicBatchLLM,
    AnthropicLLM,
    AsyncLLM,
    GenerateOutput,
    InferenceEndpointsLLM,
    OpenAIBatchLLM,
    OpenAILLM,
    TransformersLLM,
    vLLM,
)
from pixtill.models.llms.typing import HiddenState

# distilabel's ``distilabel.models`` exposes every backend; so does this package.
__all__ = [
    "LLM",
    "AnthropicBatchLLM",
    "AnthropicLLM",
    "AsyncImageGenerationModel",
    "AsyncLLM",
    "DiffusersImageGeneration",
    "GenerateOutput",
    "HiddenState",
    "ImageGenerationModel",
    "InferenceEndpointsImageGeneration",
    "InferenceEndpointsLLM",
    "OpenAIBatchLLM",
    "OpenAIImageGeneration",
    "OpenAILLM",
    "TransformersLLM",
    "vLLM",
]
