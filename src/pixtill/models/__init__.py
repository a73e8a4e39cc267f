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
from pixtill.models.request import ModelRequest
from pixtill.models.results import GeneratedImage, Generation, ModelResult, ResultError

# distilabel's ``distilabel.models`` exposes every backend; so does this package, with the
# canonical request and result types the tasks and backends speak internally.
__all__ = [
    "LLM",
    "AnthropicBatchLLM",
    "AnthropicLLM",
    "AsyncImageGenerationModel",
    "AsyncLLM",
    "DiffusersImageGeneration",
    "GenerateOutput",
    "GeneratedImage",
    "Generation",
    "HiddenState",
    "ImageGenerationModel",
    "InferenceEndpointsImageGeneration",
    "InferenceEndpointsLLM",
    "ModelRequest",
    "ModelResult",
    "OpenAIBatchLLM",
    "OpenAIImageGeneration",
    "OpenAILLM",
    "ResultError",
    "TransformersLLM",
    "vLLM",
]
