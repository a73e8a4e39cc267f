"""Text-model output types at distilabel's path (``pixtill.models.llms.typing``)."""

from __future__ import annotations

from typing import Any, Union

from pixtill.models.llms.base import GenerateOutput, TokenStatistics

__all__ = ["GenerateOutput", "HiddenState", "LLMOutput", "LLMStatistics", "TokenCount"]

LLMOutput = list[Union[str, None]]
"""The generations of one input (``None`` for a failed one)."""
TokenCount = TokenStatistics
LLMStatistics = Union[TokenStatistics, dict[str, Any]]
HiddenState = Any
"""A model's last hidden states (an array); pixtill's models do not return them."""
