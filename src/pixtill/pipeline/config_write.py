"""Writing a pipeline's graph as a configuration file (YAML or JSON), never with a secret.

See `pixtill.pipeline.config_file` for the format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import PydanticSerializationError, to_jsonable_python

from pixtill import __version__
from pixtill.models.base import BaseModel as Model
from pixtill.paths import cache_dir as default_cache_dir
from pixtill.paths import write_atomically
from pixtill.pipeline.config_types import PipelineConfigError, holds_objects, type_path
from pixtill.pipeline.graph import Graph
from pixtill.utils.secrets import secret_values_in

_SECRET_TYPES: tuple[type, ...] = (SecretStr, SecretBytes)
_MIN_SECRET_LENGTH = 6  # shorter secret values are not searched for in the written text
YAML_SUFFIXES = (".yaml", ".yml")


def dump_pipeline(pipeline: Graph, path: str | Path) -> Path:
    """Write ``pipeline`` to ``path``: YAML for ``.yaml``/``.yml``, JSON for ``.json``.

    The file is written atomically (readers never see half of it). Returns the path.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (*YAML_SUFFIXES, ".json"):
        raise PipelineConfigError(
            f"cannot tell the format of {str(target)!r}: use a .yaml, .yml or .json file name"
        )
    data = pipeline_to_dict(pipeline)
    if suffix == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    _refuse_leaked_secrets(text, _secret_values(pipeline))
    write_atomically(target, text.encode("utf-8"))
    return target


def pipeline_to_dict(pipeline: Graph) -> dict[str, Any]:
    """The pipeline as plain JSON-compatible data (see the module docstring for the format)."""
    steps = []
    for step in pipeline.steps.values():
        where = f"step {step.name!r}"
        params = _encode_model(step, where)
        params.pop("name", None)
        steps.append({"name": step.name, "type": type_path(type(step), where), "params": params})
    connections: dict[str, list[str]] = {}
    for upstream, downstream in pipeline.edges:
        connections.setdefault(upstream, []).append(downstream)
    spec: dict[str, Any] = {"name": pipeline.name, "description": pipeline.description}
    if pipeline.cache_dir != _default_cache(pipeline.name):
        spec["cache_dir"] = str(pipeline.cache_dir)
    spec["steps"] = steps
    spec["connections"] = [{"from": a, "to": b} for a, b in connections.items()]
    return {"pixtill_version": __version__, "pipeline": spec}


def _encode_model(model: BaseModel, where: str) -> dict[str, Any]:
    fields = type(model).model_fields
    typed: dict[str, Any] = {}
    plain: set[str] = set()
    for name, info in fields.items():
        if info.exclude is True:
            continue
        value = getattr(model, name)
        _refuse_secrets(value, f"{where}, field {name!r}")
        if holds_objects(info.annotation):
            typed[name] = _encode_value(value, f"{where}, field {name!r}")
        else:
            plain.add(name)
    dumped: dict[str, Any] = {}
    if plain:
        try:
            dumped = model.model_dump(mode="json", include=plain)
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            detail = " ".join(str(exc).split())
            raise PipelineConfigError(
                f"{where}: {type(model).__name__} cannot be written to a configuration file "
                f"({type(exc).__name__}: {detail}); values such as bytes or images belong in "
                "files a loader reads (an images folder, a Hub dataset)"
            ) from exc
    out: dict[str, Any] = {}
    for name in fields:  # declaration order
        if name in typed:
            out[name] = typed[name]
        elif name in dumped:
            out[name] = dumped[name]
    return out


def _encode_value(value: Any, where: str) -> Any:
    if isinstance(value, BaseModel):
        return {"type": type_path(type(value), where), "params": _encode_model(value, where)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        params = {
            f.name: _encode_value(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
            if f.init
        }
        return {"type": type_path(type(value), where), "params": params}
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    try:
        return to_jsonable_python(value)
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        raise PipelineConfigError(
            f"{where}: a {type(value).__name__} cannot be written to a configuration file"
        ) from exc


def _refuse_secrets(value: Any, where: str, _seen: set[int] | None = None) -> None:
    """Refuse any secret that would be written (fields with ``exclude=True`` are skipped)."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return
    if isinstance(value, _SECRET_TYPES):
        raise PipelineConfigError(
            f"{where}: holds a secret ({type(value).__name__}) that would be written to the "
            "file; declare the field with `Field(exclude=True)` and pass the secret from the "
            "environment instead"
        )
    if isinstance(value, (BaseModel, Mapping, list, tuple, set, frozenset)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        seen.add(id(value))
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            if info.exclude is not True:
                _refuse_secrets(getattr(value, name), f"{where}.{name}", seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _refuse_secrets(getattr(value, f.name), f"{where}.{f.name}", seen)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_secrets(item, f"{where}[{key!r}]", seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _refuse_secrets(item, where, seen)


def _secret_values(pipeline: Graph) -> set[str]:
    """Every secret reachable from the steps, excluded fields included."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if id(value) in seen:
            return
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, SecretBytes):
            found.add(value.get_secret_value().decode("utf-8", "replace"))
        elif isinstance(value, BaseModel):
            seen.add(id(value))
            if isinstance(value, Model):  # a model's header values, URL passwords...
                found.update(secret_values_in(value.__dict__))
            for name in type(value).model_fields:
                walk(getattr(value, name, None))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            seen.add(id(value))
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name, None))
        elif isinstance(value, Mapping):
            seen.add(id(value))
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            seen.add(id(value))
            for item in value:
                walk(item)

    for step in pipeline.steps.values():
        walk(step)
    return {s for s in found if len(s) >= _MIN_SECRET_LENGTH}


def _refuse_leaked_secrets(text: str, secrets: set[str]) -> None:
    """Belt and braces: a secret's value copied into another field (a URL, generation_kwargs)."""
    if any(secret in text for secret in secrets):
        raise PipelineConfigError(
            "the configuration would contain the value of a secret (an API key copied into "
            "another field?); nothing was written"
        )


def _default_cache(name: str) -> Path:
    return default_cache_dir() / "pipelines" / name
