"""What a model call gives a task: one `GenerationResult` per generation of one row, from the
canonical `ModelResult` (`results_of_text`, `results_of_images`), or from distilabel's dict
shapes (an LLM's `GenerateOutput`, image-generation outputs) that custom tasks may still hold."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pixtill.models.base import BaseModel
from pixtill.models.http import ErrorKind
from pixtill.models.image_generation.base import ImageGenerationOutput
from pixtill.models.llms.base import GenerateOutput
from pixtill.models.results import Generation, ModelResult, ResultError
from pixtill.steps.tasks.failures import image_output_error


@dataclass(frozen=True)
class GenerationResult:
    """One generation of one row, whatever the model kind. ``error``: why it failed (the
    message stored in ``error_<step>``); ``cause``: the same as data (kind, HTTP status) when
    known, recorded in ``failure_<step>``."""

    output: Any
    statistics: dict[str, int] | None = None
    error: str | None = None
    cause: ResultError | None = None


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
    results = []
    for output in outputs:
        reported = output.get("error")
        wrong = None if reported else image_output_error(output)
        cause = None if wrong is None else ResultError(wrong, ErrorKind.INVALID_RESPONSE.value)
        results.append(GenerationResult(output, None, reported or wrong, cause))
    return results


def _statistics(generation: Generation) -> dict[str, int] | None:
    stats: dict[str, int] = {}
    if generation.input_tokens is not None:
        stats["input_tokens"] = generation.input_tokens
    if generation.output_tokens is not None:
        stats["output_tokens"] = generation.output_tokens
    return stats or None


def _padded(result: ModelResult, num_generations: int) -> list[Generation]:
    """The result's generations, with failed ones added when the model gave fewer than
    ``num_generations`` (the request's error, else "fewer than asked", says why)."""
    generations = list(result.generations)
    if len(generations) < num_generations:
        why = result.first_error() or ResultError(
            f"model returned fewer than {num_generations} generations",
            ErrorKind.INVALID_RESPONSE.value,
        )
        generations += [Generation.failed(why)] * (num_generations - len(generations))
    return generations


def results_of_text(result: ModelResult, num_generations: int) -> list[GenerationResult]:
    """One `GenerationResult` per text generation of one input: its text, token counts, and
    the message of its error (or of the request's) when it has no text."""
    results = []
    for generation in _padded(result, num_generations):
        cause = None
        if generation.text is None:
            cause = generation.error or result.error
        error = None if cause is None else cause.message
        results.append(GenerationResult(generation.text, _statistics(generation), error, cause))
    return results


def results_of_images(result: ModelResult, num_generations: int) -> list[GenerationResult]:
    """One `GenerationResult` per image generation of one input. The output is distilabel's
    ``{"images": [<base64>]}`` dict (what `format_output` gets); a generation without a
    decodable image fails with the reason, never stored as a success. Decodes every image:
    milliseconds each, so async callers run it in a worker thread."""
    padded = ModelResult(tuple(_padded(result, num_generations)), result.error)
    outputs = padded.to_image_outputs()
    results = []
    for output, generation in zip(outputs, padded.generations):
        stats = _statistics(generation)
        cause: ResultError | None = None
        if output.get("error"):
            cause = generation.error or result.error or ResultError(str(output["error"]))
        else:
            wrong = image_output_error(output)
            if wrong is not None:
                cause = ResultError(wrong, ErrorKind.INVALID_RESPONSE.value)
        message = None if cause is None else cause.message
        results.append(GenerationResult(output, stats, message, cause))
    return results


def failure_of(model: BaseModel, exc: BaseException) -> ResultError:
    """A failed call as data: the exception's kind, status and retryability
    (`ResultError.of`), said as the model reports it (`describe_error`: secrets removed)."""
    return replace(ResultError.of(exc), message=model.describe_error(exc))
