"""Read a pydantic private attribute without pydantic's ``__getattr__``.

``self._engine`` on a pydantic model misses the normal attribute lookup and falls back to
``BaseModel.__getattr__``; on the per-row path (the prompt of every row, the engine of every
request) that fallback was ~5% of the pipeline's own CPU time in `benchmarks/pipeline.py`
profiles. The values live in the documented ``__pydantic_private__`` dict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def private_attr(model: BaseModel, name: str) -> Any:
    """``getattr(model, name)`` for a private attribute (``name`` starts with ``_``)."""
    private = model.__pydantic_private__
    if private is not None and name in private:
        return private[name]
    return getattr(model, name)


__all__ = ["private_attr"]
