"""What a model call gives a task: one `GenerationResult` per generation of one row, from an
LLM's `GenerateOutput` or from image-generation outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixtill.models.image_generation.base import ImageGenerationOutput
from pixtill.models.llms.base import GenerateOutput
from pixtill.models.results import ModelResult
from pixtill.steps.tasks.failures import image_output_error


@dataclass(frozen=True)
class GenerationResult:
    """One generation of one row, whatever the model kind."""

    output: Any
    statistics: dict[str, int] | None = None
    error: str | None = None


def results_from_generate_output(
    output: GenerateOutput | ModelResult | list[str | None], num_generations: int
) -> list[GenerationResult]:
    """One `GenerationResult` per generation of one input.

    ``output`` is a `GenerateOutput` dict, a `~pixtill.models.results.ModelResult`, or a plain
    list of generations (the shape LLMs written for distilabel before 1.5 return; they carry
    no statistics).
    """
    if isinstance(output, ModelResult):  # the canonical type, from a backend or a custom LLM
        output = output.to_generate_output()
    if isinstance(output, list):
        output = {"generations": list(output)}
    generations = list(output.get("generations") or [])
    error = output.get("error")
    if len(generations) < num_generations:
        generations += [None] * (num_generations - len(generations))
        error = error or f"model returned fewer than {num_generations} generations"
    stats = output.get("statistics") or {}
    in_tokens = stats.get("input_tokens") or []
    out_tokens = stats.get("output_tokens") or []
    results = []
    for k, generation in enumerate(generations):
        per_gen: dict[str, int] = {}
        if k < len(in_tokens):
            per_gen["input_tokens"] = in_tokens[k]
        if k < len(out_tokens):
            per_gen["output_tokens"] = out_tokens[k]
        failed = error if generation is None and error else None
        results.append(GenerationResult(generation, per_gen or None, failed))
    return results


def results_from_image_outputs(outputs: list[ImageGenerationOutput]) -> list[GenerationResult]:
    """One result per generation; a generation whose images are missing or not decodable
    images fails with the reason, never stored as a success."""
    return [GenerationResult(o, None, o.get("error") or image_output_error(o)) for o in outputs]
