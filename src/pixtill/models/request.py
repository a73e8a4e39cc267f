"""The canonical request a task sends to a model, at every backend's edge.

A `ModelRequest` is one input and what to do with it: the input itself (chat messages whose image
parts hold `pixtill.images.ImageRef` references, a text-to-image prompt, or an image edit), ``n``
generations, the generation settings, and an optional structured-output spec (a JSON Schema or a
pydantic model, see `pixtill.models.structured`). Tasks build one per row and call the model's
canonical method (``agenerate_result`` / ``generate_results``), which answers with a
`pixtill.models.results.ModelResult`.

distilabel's public call, ``generate(inputs, num_generations=1, **kwargs)``, stays: the built-in
backends turn it into requests with `ModelRequest.of_call`, and a user's model written for
distilabel (which implements only ``generate``/``agenerate``) is called that way with
`ModelRequest.call_kwargs`. `canonical_edge` marks the built-in public methods that are thin
wrappers over the canonical path, so that a user's subclass overriding one of them is still
called through it (its override wins).

Idea: NeMo Data Designer's request/response dataclasses at its model-client edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pixtill.models.structured import StructuredOutputSpec

__all__ = ["ModelRequest", "canonical_edge", "speaks_canonical"]

InputT = TypeVar("InputT")
F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__pixtill_canonical_edge__"


@dataclass(frozen=True, slots=True)
class ModelRequest(Generic[InputT]):
    """One input's request.

    ``input``: chat messages (``list[dict]``, image parts holding image references), a prompt
    (``str``) or an edit (`~pixtill.models.image_editing.EditInput`), as the model kind takes.
    ``n``: generations wanted (>= 1). ``settings``: the complete generation settings
    (``temperature``, ``max_tokens``, ``size``, ``seed``...; the model's ``generation_kwargs``
    already merged in, ``None`` values left out). ``structured_output``: the JSON shape the
    answer must have, or None for free text.

    Raises `ValueError` when ``n`` < 1.
    """

    input: InputT
    n: int = 1
    settings: Mapping[str, Any] = field(default_factory=dict)
    structured_output: StructuredOutputSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"a request needs n >= 1 generations, got {self.n!r}")

    @classmethod
    def of_call(
        cls,
        input: InputT,
        num_generations: int,
        kwargs: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
    ) -> ModelRequest[InputT]:
        """The request of distilabel's ``generate(..., num_generations, **kwargs)`` call:
        ``kwargs`` over the model's ``defaults`` (its ``generation_kwargs``), ``None`` values
        dropped, ``structured_output`` lifted out of them."""
        return cls.of_calls([input], num_generations, kwargs, defaults)[0]

    @classmethod
    def of_calls(
        cls,
        inputs: Sequence[InputT],
        num_generations: int,
        kwargs: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
    ) -> list[ModelRequest[InputT]]:
        """One request per input of a batched ``generate(inputs, num_generations, **kwargs)``
        call, as `of_call` makes them; the settings are merged once and shared (read-only)."""
        settings = {**(defaults or {}), **kwargs}
        spec = settings.pop("structured_output", None)
        kept = {k: v for k, v in settings.items() if v is not None}
        return [cls(item, num_generations, kept, spec) for item in inputs]

    def call_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of distilabel's ``generate`` for this request (the settings,
        and ``structured_output`` when set)."""
        kwargs = dict(self.settings)
        if self.structured_output is not None:
            kwargs["structured_output"] = self.structured_output
        return kwargs

    def same_call(self, other: ModelRequest[Any]) -> bool:
        """Whether ``other`` can share one batched ``generate`` call with this request (same
        ``n``, settings and structured output)."""
        return (
            self.n == other.n
            and self.settings == other.settings
            and self.structured_output == other.structured_output
        )


def canonical_edge(method: F) -> F:
    """Mark a backend's public ``generate``/``agenerate`` as a thin wrapper over its canonical
    method: the tasks then call the canonical one directly (`speaks_canonical`)."""
    setattr(method, _MARK, True)
    return method


def speaks_canonical(model: object, method: str) -> bool:
    """Whether ``model``'s class still has the marked built-in ``method`` (no subclass
    overrode it), so its canonical method gives the same answer without the dict round trip."""
    return bool(getattr(getattr(type(model), method, None), _MARK, False))
