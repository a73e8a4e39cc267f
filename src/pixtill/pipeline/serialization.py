"""The old import path of `pixtill.pipeline.config_file` (kept for code that imports it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixtill.pipeline.config_file import (
    PipelineConfigError,
    UntrustedTypeError,
    dump_pipeline,
    graph_from_dict,
    load_graph,
    pipeline_to_dict,
    resolve_class,
)
from pixtill.pipeline.pipeline import Pipeline

__all__ = [
    "PipelineConfigError",
    "UntrustedTypeError",
    "dump_pipeline",
    "graph_from_dict",
    "load_graph",
    "load_pipeline",
    "pipeline_from_dict",
    "pipeline_to_dict",
    "resolve_class",
]


def load_pipeline(path: str | Path, *, allow: Iterable[str] = ()) -> Pipeline:
    """`Pipeline.from_file`."""
    return Pipeline.from_file(path, allow=allow)


def pipeline_from_dict(
    data: Any, *, allow: Iterable[str] = (), source: str = "configuration"
) -> Pipeline:
    """A `Pipeline` from `pipeline_to_dict` output (only trusted classes are imported)."""
    return Pipeline.from_graph(graph_from_dict(data, allow=allow, source=source))
