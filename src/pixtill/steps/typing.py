"""Type aliases used in step signatures (named as the seed documents import them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Union

StepColumns = Union[list[str], dict[str, bool]]
"""Columns a step reads or writes: a list (all required) or ``{column: required}``."""

Row = dict[str, Any]
StepOutput = Iterator[list[Row]]
GeneratorStepOutput = Iterator[tuple[list[Row], bool]]
GeneratorOutput = GeneratorStepOutput
