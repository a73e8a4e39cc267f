"""The types distilabel exposes as ``distilabel.typing``, under pixtill's names.

Chat messages are OpenAI's format: ``{"role": ..., "content": str | list[part]}`` with text
parts ``{"type": "text", "text": ...}`` and image parts
``{"type": "image_url", "image_url": {"url": ...}}``. `ChatType` is kept as a list of plain
dicts (not the TypedDicts) so that annotating with it, even under ``pydantic.validate_call``,
never copies or coerces the image URLs the tasks attach references to.
"""

from __future__ import annotations

from typing import Any, Union

from typing_extensions import TypedDict

from pixtill.models.llms.base import ChatType, FormattedInput, GenerateOutput
from pixtill.models.llms.typing import HiddenState, LLMOutput, LLMStatistics, TokenCount
from pixtill.steps.typing import GeneratorStepOutput, StepColumns, StepOutput

__all__ = [
    "ChatItem",
    "ChatType",
    "FormattedInput",
    "GenerateOutput",
    "GeneratorStepOutput",
    "HiddenState",
    "ImageContent",
    "ImageUrl",
    "InputDataset",
    "LLMOutput",
    "LLMStatistics",
    "StandardInput",
    "StepColumns",
    "StepOutput",
    "TextContent",
    "TokenCount",
]


class TextContent(TypedDict, total=False):
    type: str  # "text"
    text: str


class ImageUrl(TypedDict):
    url: str  # an http(s) URL or a data URL


class ImageContent(TypedDict, total=False):
    type: str  # "image_url"
    image_url: ImageUrl


class ChatItem(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: Union[str, list[Union[TextContent, ImageContent]]]


StandardInput = ChatType
InputDataset = Union[list[dict[str, Any]], Any]
"""What ``Pipeline.run(dataset=...)`` takes: rows as dicts, a ``datasets.Dataset`` or a
pandas DataFrame."""
