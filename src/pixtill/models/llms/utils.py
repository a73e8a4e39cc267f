"""Helpers for writing a text model, at distilabel's path (``pixtill.models.llms.utils``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

from pixtill.models.llms.base import ChatType, GenerateOutput

__all__ = ["compute_tokens", "prepare_output"]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: only text parts have tokens to count here
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def compute_tokens(
    text_or_messages: Union[str, ChatType], tokenizer: Callable[[str], Sequence[int]]
) -> int:
    """Tokens in a text, or summed over the text of every message (image parts count 0).

    ``tokenizer`` maps a string to its token ids (e.g. ``tokenizer.encode``).
    """
    if isinstance(text_or_messages, str):
        return len(tokenizer(text_or_messages))
    return sum(len(tokenizer(_text_of(m.get("content")))) for m in text_or_messages)


def prepare_output(
    generations: Sequence[str | None],
    input_tokens: Sequence[int] | None = None,
    output_tokens: Sequence[int] | None = None,
    logprobs: Any = None,
) -> GenerateOutput:
    """A `GenerateOutput` for one input: ``{"generations": [...], "statistics": {...}}``,
    token counts included when given (one per generation). ``logprobs`` are accepted for
    distilabel's signature and dropped: pixtill's outputs do not carry them."""
    output: GenerateOutput = {"generations": list(generations), "statistics": {}}
    if input_tokens:
        output["statistics"]["input_tokens"] = list(input_tokens)
    if output_tokens:
        output["statistics"]["output_tokens"] = list(output_tokens)
    return output
