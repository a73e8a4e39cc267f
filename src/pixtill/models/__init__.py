from pixtill.models.image_generation import (
    AsyncImageGenerationModel,
    DiffusersImageGeneration,
    ImageGenerationModel,
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.models.llms import (
    LLM,
    AnthropicLLM,
    AsyncLLM,
    GenerateOutput,
    InferenceEndpointsLLM,
    OpenAILLM,
    TransformersLLM,
)
from pixtill.models.llms.typing import HiddenState

# distilabel's ``distilabel.models`` exposes every backend; so does this package.
__all__ = [
    "LLM",
    "AnthropicLLM",
    "AsyncImageGenerationModel",
    "AsyncLLM",
    "DiffusersImageGeneration",
    "GenerateOutput",
    "HiddenState",
    "ImageGenerationModel",
    "InferenceEndpointsImageGeneration",
    "InferenceEndpointsLLM",
    "OpenAIImageGeneration",
    "OpenAILLM",
    "TransformersLLM",
]
