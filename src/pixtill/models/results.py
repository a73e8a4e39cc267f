"""The canonical result of a text model for one input, at every backend's edge.

Backends translate their provider's answer (a chat completion, a Messages reply, a vLLM
``RequestOutput``, a batch result line, a local ``generate``) into a `ModelResult`: its
`Generation` s (text, token usage, finish reason, or an error) and, when the whole request
failed, the error as data (`ResultError`: kind, message, HTTP status, retryable).

The public model contract stays distilabel's dict shape - ``generate`` / ``agenerate`` return
``{"generations": [...], "statistics": {"input_tokens": [...], "output_tokens": [...]}}`` - so a
user's custom LLM written for distilabel keeps working: `ModelResult.to_generate_output` and
`ModelResult.from_generate_output` convert both ways, and the tasks accept either shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pixtill.models.http import RequestError
from pixtill.models.llms.base import GenerateOutput, TokenStatistics

__all__ = ["Generation", "ModelResult", "ResultError"]


@dataclass(frozen=True, slots=True)
class Generation:
    """One generation: ``text`` (None when it failed, ``error`` then says why), its token
    usage when the provider reports it, and the provider's finish reason (``"stop"``,
    ``"length"``, ``"end_turn"``, ``"tool_use"``... as the provider names it)."""

    text: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ResultError:
    """Why a whole request failed, as data. ``kind`` is an `ErrorKind` value for request
    failures (``"rate_limited"``, ``"timeout"``...), ``"model"`` for anything else."""

    message: str
    kind: str = "model"
    status: int | None = None
    retryable: bool = False

    @classmethod
    def of(cls, error: BaseException | str) -> ResultError:
        """From an exception (`RequestError` keeps its kind, status and retryability) or a
        message."""
        if isinstance(error, str):
            return cls(error)
        message = f"{type(error).__name__}: {error}"
        if isinstance(error, RequestError):
            return cls(message, error.kind.value, error.status, error.retryable)
        return cls(message)


@dataclass(frozen=True, slots=True)
class ModelResult:
    """What a text model produced for one input."""

    generations: tuple[Generation, ...] = ()
    error: ResultError | None = None

    @classmethod
    def of(cls, generations: Iterable[Generation]) -> ModelResult:
        """A result from per-generation outcomes (a request that succeeded, maybe partly)."""
        return cls(tuple(generations))

    @classmethod
    def failed(cls, error: BaseException | str | ResultError, num_generations: int) -> ModelResult:
        """``num_generations`` failed generations and the request's error."""
        info = error if isinstance(error, ResultError) else ResultError.of(error)
        return cls(
            tuple(Generation(None, error=info.message) for _ in range(num_generations)), info
        )

    @property
    def texts(self) -> list[str | None]:
        return [g.text for g in self.generations]

    @property
    def finish_reasons(self) -> list[str | None]:
        return [g.finish_reason for g in self.generations]

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
        if self.error is not None:
            output["error"] = self.error.message
        else:
            errors = [g.error for g in self.generations if g.text is None and g.error]
            if errors:
                output["error"] = errors[0]
        return output

    @classmethod
    def from_generate_output(
        cls, output: GenerateOutput | Sequence[str | None] | ModelResult
    ) -> ModelResult:
        """From distilabel's dict (or the bare list of generations older LLMs return)."""
        if isinstance(output, ModelResult):
            return output
        if not isinstance(output, dict):
            output = {"generations": list(output)}
        texts = list(output.get("generations") or [])
        stats = output.get("statistics") or {}
        ins = list(stats.get("input_tokens") or [])
        outs = list(stats.get("output_tokens") or [])
        error = output.get("error")
        generations = tuple(
            Generation(
                text,
                ins[k] if k < len(ins) else None,
                outs[k] if k < len(outs) else None,
                error if text is None and error else None,
            )
            for k, text in enumerate(texts)
        )
        failed = error is not None and all(t is None for t in texts)
        return cls(generations, ResultError(error) if failed and error else None)
