"""Options every pipeline-file command shares: ``--config``/``--allow`` (`load_config`) and
``--param step.field=value`` overrides (`parse_params`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pixtill.cli.registry import UsageError
from pixtill.pipeline import Pipeline


def load_config(path: str, allow: Sequence[str]) -> Pipeline:
    """Load a pipeline file; any problem with it is a `UsageError` (exit code 2)."""
    from pixtill.pipeline.config_file import PipelineConfigError

    if allow:
        # As `python -m` would: modules beside the user are importable for `--allow`.
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
    try:
        return Pipeline.from_file(path, allow=allow)
    except PipelineConfigError as exc:
        raise UsageError(str(exc)) from exc


def parse_params(pipeline: Pipeline, assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["caption.llm.generation_kwargs.temperature=0.2"]`` -> the ``parameters`` of `run`.

    Values are YAML (numbers, booleans, lists, ``null``); a value that does not fit its field as
    YAML is tried as the plain string. Every value is validated against its field here, so a
    typo fails before anything runs. Setting a key inside a dict field (``generation_kwargs``)
    keeps the dict's other keys.
    """
    parameters: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise UsageError(f"--param {assignment!r}: expected step.field=value")
        step_name, path = parts[0], parts[1:]
        if step_name not in pipeline.steps:
            raise UsageError(
                f"--param {assignment!r}: no step {step_name!r}; steps: {sorted(pipeline.steps)}"
            )
        target: dict[str, Any] = parameters.setdefault(step_name, {})
        model: BaseModel = pipeline.steps[step_name]
        where = step_name
        while True:
            field = path.pop(0)
            fields = type(model).model_fields
            if field not in fields:
                raise UsageError(
                    f"--param {assignment!r}: {where} ({type(model).__name__}) has no field "
                    f"{field!r}; fields: {sorted(fields)}"
                )
            current = getattr(model, field)
            if path and isinstance(current, BaseModel):
                target = target.setdefault(field, {})
                if not isinstance(target, dict):
                    raise UsageError(f"--param {assignment!r}: {where}.{field} set twice")
                model, where = current, f"{where}.{field}"
                continue
            break
        if path and not isinstance(current, Mapping):
            raise UsageError(
                f"--param {assignment!r}: {where}.{field} is a {type(current).__name__}, "
                f"not a model or a dict, so it has no {'.'.join(path)!r}"
            )
        previous = target.get(field)
        base = previous if isinstance(previous, dict) else current
        value = _coerce(model, field, path, base, raw, assignment)
        target[field] = value
    return parameters


def _coerce(
    model: BaseModel, field: str, path: list[str], base: Any, raw: str, assignment: str
) -> Any:
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        parsed = raw
    candidates = [parsed] if parsed == raw else [parsed, raw]
    error: ValidationError | None = None
    for candidate in candidates:
        value = _set_in(base, path, candidate) if path else candidate
        try:
            return _validated(model, field, value)
        except ValidationError as exc:
            error = error or exc
    assert error is not None
    details = "; ".join(" ".join(str(e["msg"]).split()) for e in error.errors(include_url=False))
    raise UsageError(f"--param {assignment!r}: {details}")


def _set_in(base: Any, path: list[str], value: Any) -> dict[str, Any]:
    """A copy of dict ``base`` with ``value`` at ``path`` (intermediate dicts created)."""
    out = dict(base) if isinstance(base, Mapping) else {}
    head, rest = path[0], path[1:]
    out[head] = _set_in(out.get(head), rest, value) if rest else value
    return out


def _validated(model: BaseModel, field: str, value: Any) -> Any:
    """The value as the field would store it (validation on a copy; the model is untouched)."""
    probe = model.model_copy()
    type(model).__pydantic_validator__.validate_assignment(probe, field, value)
    return getattr(probe, field)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", required=True, metavar="FILE", help="pipeline file (.yaml/.yml/.json)"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="DOTTED.CLASS",
        help="also load this class from the file (exact dotted path; repeatable). "
        "Only pixtill's own classes load otherwise.",
    )
