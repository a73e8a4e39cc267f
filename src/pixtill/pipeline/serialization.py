"""The old import path of `pixtill.pipeline.config_file` (kept for code that imports it)."""

from pixtill.pipeline.config_file import (
    PipelineConfigError,
    UntrustedTypeError,
    dump_pipeline,
    graph_from_dict,
    load_graph,
    pipeline_to_dict,
    resolve_class,
)

__all__ = [
    "PipelineConfigError",
    "UntrustedTypeError",
    "dump_pipeline",
    "graph_from_dict",
    "load_graph",
    "pipeline_to_dict",
    "resolve_class",
]
