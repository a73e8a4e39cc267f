"""The canonical result of a model for one input, at every backend's edge.

Backends translate their provider's answer (a chat completion, a Messages reply, a vLLM
``RequestOutput``, a batch result line, a local ``generate``, an Images API answer, a diffusers
pipeline's images) into a `ModelResult`: its `Generation` s (text or a `GeneratedImage`, token
usage, finish reason, or an error) and, when the whole request failed, the error as data
(`ResultError`: kind, message, HTTP status, retryable).

The public model contract stays distilabel's dict shape (`pixtill.models.outputs`): text models'
``generate`` / ``agenerate`` return ``{"generations": [...], "statistics": {...}}``, image
models' a list of ``{"images": [<base64>]}`` per input. So a user's model written for distilabel
keeps working: `to_generate_output` / `from_generate_output` and `to_image_outputs` /
`from_image_outputs` convert both ways, and the tasks accept either shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pixtill.models.http import ErrorKind, RequestError
from pixtill.models.outputs import GenerateOutput, ImageGenerationOutput, TokenStatistics

__all__ = ["GeneratedImage", "Generation", "ModelResult", "ResultError", "results_for_inputs"]


@dataclass(frozen=True, slots=True)
class ResultError:
    """Why a request or a generation failed, as data. ``kind`` is an `ErrorKind` value for
    request failures (``"rate_limited"``, ``"timeout"``, ``"connection"``, ``"bad_request"``,
    ``"auth"``, ``"server"``, ``"invalid_response"``), ``"model"`` for anything else;
    ``status`` the HTTP status when there was one."""

    message: str
    kind: str = "model"
    status: int | None = None
    retryable: bool = False

    @classmethod
    def of(cls, error: BaseException | str | ResultError) -> ResultError:
        """From an exception or a message. The exception is written ``"TypeName: message"``;
        a `RequestError` keeps its kind, status and retryability, an exception with an
        `ErrorKind` ``kind`` (`InvalidResponseError`) its kind, and Python's `TimeoutError` and
        `ConnectionError` become ``"timeout"`` and ``"connection"`` (retryable)."""
        if isinstance(error, ResultError):
            return error
        if isinstance(error, str):
            return cls(error)
        message = f"{type(error).__name__}: {error}"
        if isinstance(error, RequestError):
            return cls(message, error.kind.value, error.status, error.retryable)
        kind = getattr(error, "kind", None)
        if isinstance(kind, ErrorKind):
            return cls(message, kind.value)
        if isinstance(error, TimeoutError):
            return cls(message, ErrorKind.TIMEOUT.value, retryable=True)
        if isinstance(error, ConnectionError):
            return cls(message, ErrorKind.CONNECTION.value, retryable=True)
        return cls(message)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """An image a model made: ``b64`` is its base64 encoding (no data-URL prefix: what
    providers send and datasets store), ``format`` the encoding (``"PNG"``...) when the backend
    knows it without decoding, else None."""

    b64: str
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """One generation: ``text`` for a text model, ``images`` for an image model (usually one;
    None and empty when it failed, and ``error`` says why), its token usage when the provider
    reports it, and the provider's finish reason (``"stop"``, ``"length"``, ``"end_turn"``,
    ``"tool_use"``... as the provider names it). An ``error`` given as a message becomes a
    `ResultError`."""

    text: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: ResultError | None = None
    finish_reason: str | None = None
    images: tuple[GeneratedImage, ...] = ()

    def __post_init__(self) -> None:
        if self.error is not None and not isinstance(self.error, ResultError):
            object.__setattr__(self, "error", ResultError.of(self.error))

    @classmethod
    def failed(cls, error: BaseException | str | ResultError) -> Generation:
        """A failed generation (see `ResultError.of`)."""
        return cls(None, error=ResultError.of(error))

    @classmethod
    def of_image(
        cls,
        b64: str,
        format: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> Generation:
        """An image generation from its base64 encoding."""
        return cls(None, input_tokens, output_tokens, images=(GeneratedImage(b64, format),))

    @property
    def image(self) -> GeneratedImage | None:
        """The generation's (first) image, None for text or a failure."""
        return self.images[0] if self.images else None

    @property
    def ok(self) -> bool:
        """Whether the generation produced something (text or an image)."""
        return self.text is not None or bool(self.images)

    @property
    def error_message(self) -> str | None:
        return None if self.error is None else self.error.message


@dataclass(frozen=True, slots=True)
class ModelResult:
    """What a model produced for one input."""

    generations: tuple[Generation, ...] = ()
    error: ResultError | None = None

    @classmethod
    def of(cls, generations: Iterable[Generation]) -> ModelResult:
        """A result from per-generation outcomes (a request that succeeded, maybe partly)."""
        return cls(tuple(generations))

    @classmethod
    def failed(cls, error: BaseException | str | ResultError, num_generations: int) -> ModelResult:
        """``num_generations`` failed generations and the request's error."""
        info = ResultError.of(error)
        return cls(tuple(Generation(None, error=info) for _ in range(num_generations)), info)

    @property
    def texts(self) -> list[str | None]:
        return [g.text for g in self.generations]

    @property
    def images(self) -> list[GeneratedImage | None]:
        return [g.image for g in self.generations]

    @property
    def finish_reasons(self) -> list[str | None]:
        return [g.finish_reason for g in self.generations]

    def first_error(self) -> ResultError | None:
        """The request's error, else the first failed generation's."""
        if self.error is not None:
            return self.error
        return next((g.error for g in self.generations if not g.ok and g.error), None)

    # -- distilabel's text dict ------------------------------------------------------------
    def to_generate_output(self) -> GenerateOutput:
        """distilabel's dict: token lists only when every generation has its count; ``error``
        (pixtill's addition) when the request failed or a generation did."""
        statistics: TokenStatistics = {}
        ins = [g.input_tokens for g in self.generations]
        outs = [g.output_tokens for g in self.generations]
        if ins and all(v is not None for v in ins):
            statistics["input_tokens"] = [v for v in ins if v is not None]
        if outs and all(v is not None for v in outs):
            statistics["output_tokens"] = [v for v in outs if v is not None]
        output: GenerateOutput = {"generations": self.texts, "statistics": statistics}
        error = self.first_error()
        if error is not None:
            output["error"] = error.message
        return output

    @classmethod
    def from_generate_output(
        cls, output: GenerateOutput | Sequence[str | None] | ModelResult
    ) -> ModelResult:
        """From distilabel's dict (or the bare list of generations older LLMs return, or a
        `ModelResult`, returned as it is)."""
        if isinstance(output, ModelResult):
            return output
        if not isinstance(output, dict):
            output = {"generations": list(output)}
        texts = list(output.get("generations") or [])
        stats = output.get("statistics") or {}
        ins = list(stats.get("input_tokens") or [])
        outs = list(stats.get("output_tokens") or [])
        message = output.get("error")
        error = ResultError(message) if message else None
        generations = tuple(
            Generation(
                text,
                ins[k] if k < len(ins) else None,
                outs[k] if k < len(outs) else None,
                error if text is None else None,
            )
            for k, text in enumerate(texts)
        )
        failed = error is not None and all(t is None for t in texts)
        return cls(generations, error if failed else None)

    # -- distilabel's image dicts ----------------------------------------------------------
    def to_image_outputs(self) -> list[ImageGenerationOutput]:
        """distilabel's image outputs: one ``{"images": [<base64>]}`` per generation; a failed
        generation gives ``{"images": [None], "error": <message>}``."""
        outputs: list[ImageGenerationOutput] = []
        for generation in self.generations:
            if generation.images:
                outputs.append({"images": [image.b64 for image in generation.images]})
            else:
                error = generation.error or self.error
                outputs.append({"images": [None], "error": error.message if error else "no image"})
        return outputs

    @classmethod
    def from_image_outputs(cls, outputs: Sequence[Any] | ModelResult) -> ModelResult:
        """From the outputs an image model written for distilabel returns for one input (one
        ``{"images": [...]}`` dict per generation; ``None`` entries are skipped). An output
        that holds no image, or something other than base64 text, is kept as a failed
        generation whose error says what came back. Whether the text decodes as an image is
        the task's check, off the event loop."""
        if isinstance(outputs, ModelResult):  # a custom model that already speaks it
            return outputs
        if isinstance(outputs, dict):  # one dict for one generation, not in a list
            outputs = [outputs]
        generations = [_generation_of_image_output(output) for output in outputs]
        failed = bool(generations) and all(not g.ok for g in generations)
        return cls(tuple(generations), generations[0].error if failed else None)


def _generation_of_image_output(output: Any) -> Generation:
    if not isinstance(output, dict):
        return Generation.failed(f"the model returned a {type(output).__name__}, not images")
    message = output.get("error")
    images = output.get("images")
    if not isinstance(images, list):
        images = []
    for k, image in enumerate(images):
        if image is not None and not isinstance(image, str):
            return Generation.failed(
                f"the model's image {k} is a {type(image).__name__}, not base64 text"
            )
    kept = tuple(GeneratedImage(image) for image in images if image)
    if not kept:
        return Generation.failed(str(message) if message else "the model returned no image")
    return Generation(None, images=kept)


def results_for_inputs(
    results: Sequence[ModelResult], count: int, num_generations: int, model: str
) -> list[ModelResult]:
    """``results`` of a batched call, checked to be one per input: a model that answered for
    fewer inputs fails the missing ones (the others are kept), one that answered for more has
    the extra dropped."""
    kept = list(results[:count])
    if len(kept) < count:
        why = ResultError(
            f"{model} returned {len(results)} outputs for {count} inputs; none for this one",
            "invalid_response",
        )
        kept += [ModelResult.failed(why, num_generations)] * (count - len(kept))
    return kept
