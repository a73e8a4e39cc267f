"""``RuntimeParameter[T]``: distilabel's marker for a field that may be set when a pipeline runs.

In pixtill every field of a step or model can be set at run time
(``Pipeline.run(parameters={step: {field: value}})``, or the CLI's ``--param``), so the marker
changes nothing; it exists so that classes written for distilabel keep their annotations.
``RuntimeParameter[int]`` is ``Optional[int]`` with the marker attached.
"""

from __future__ import annotations

from typing import Annotated, TypeVar, Union

__all__ = ["RUNTIME_PARAMETER_MARKER", "RuntimeParameter"]

T = TypeVar("T")

RUNTIME_PARAMETER_MARKER = "pixtill:runtime_parameter"
RuntimeParameter = Annotated[Union[T, None], RUNTIME_PARAMETER_MARKER]
