"""``pixtill info``: a pipeline file's steps, columns, models and connections (loads no
model)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from pixtill.cli.pipeline_options import add_config_argument, load_config
from pixtill.cli.registry import EXIT_OK
from pixtill.errors import PixtillError
from pixtill.steps.base import _Step
from pixtill.steps.tasks.base import _Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pixtill info``'s options."""
    add_config_argument(parser)


def _columns(columns: Mapping[str, bool], mappings: Mapping[str, str]) -> str:
    names = []
    for column, required in columns.items():
        name = column if column not in mappings else f"{column} (as {mappings[column]})"
        names.append(name if required else f"{name} (optional)")
    return ", ".join(names) or "-"


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_step(step: _Step) -> list[str]:
    """Lines ``pixtill info`` prints for one step (models are not loaded)."""
    lines = [
        f"  {step.name}: {_class_path(step)}",
        f"      inputs:  {_columns(step.get_inputs(), step.input_mappings)}",
        f"      outputs: {_columns(step.get_outputs(), step.output_mappings)}",
    ]
    if isinstance(step, _Task):
        model = step.model
        try:
            model_name = model.model_name
        except Exception as exc:  # a backend whose name needs loading
            model_name = f"<unknown until loaded: {type(exc).__name__}>"
        lines.append(f"      model:   {model_name} ({_class_path(model)})")
    return lines


def handle(args: argparse.Namespace) -> int:
    """Print the pipeline file's steps and connections; 0."""
    pipeline = load_config(args.config, args.allow)
    print(f"Pipeline {pipeline.name!r} ({args.config})")
    if pipeline.description:
        print(f"  {pipeline.description}")
    try:
        order = pipeline.topological_order()
    except PixtillError:
        order = list(pipeline.steps)
    print(f"Steps ({len(order)}):")
    for name in order:
        for line in describe_step(pipeline.steps[name]):
            print(line)
    print("Connections:")
    for upstream in order:
        successors = pipeline.successors(upstream)
        if successors:
            print(f"  {upstream} -> {', '.join(successors)}")
    if not pipeline.edges:
        print("  (none)")
    print(f"Cache folder: {pipeline.cache_dir}")
    return EXIT_OK
