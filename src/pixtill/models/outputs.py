"""distilabel's dict shapes of a model's answer, the public contract of ``generate``.

Text models return one `GenerateOutput` per input; image models one list of
`ImageGenerationOutput` per input (one dict per generation). pixtill's backends build the
canonical `pixtill.models.results.ModelResult` and convert to these at their public edge, and
the tasks accept either, so models written for distilabel keep working.
"""

from __future__ import annotations

from typing_extensions import TypedDict

__all__ = ["GenerateOutput", "ImageGenerationOutput", "TokenStatistics"]


class TokenStatistics(TypedDict, total=False):
    input_tokens: list[int]
    output_tokens: list[int]


class GenerateOutput(TypedDict, total=False):
    """What a text model returns for one input: ``num_generations`` generations.

    A failed request gives ``None`` generations and the reason in ``error``.
    """

    generations: list[str | None]
    statistics: TokenStatistics
    error: str | None


class ImageGenerationOutput(TypedDict, total=False):
    """One generation: its image(s) as base64 strings; ``None`` and ``error`` when it failed."""

    images: list[str | None]
    error: str | None
