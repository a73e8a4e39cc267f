"""Pipelines as configuration files (YAML or JSON), written without secrets and read without code.

The format::

    pixtill_version: "0.1.0"
    pipeline:
      name: vision
      description: null
      steps:
        - name: caption
          type: pixtill.steps.tasks.text_generation_with_image.TextGenerationWithImage
          params:
            template: "{{ instruction }}"
            llm:
              type: pixtill.models.llms.openai.OpenAILLM
              params: {model: ..., base_url: ...}
      connections:
        - {from: load, to: [caption]}

Writing: every pydantic field of a step is written as ``model_dump(mode="json")`` would write it,
except that a field holding a pydantic model (an ``llm``...) or a dataclass (a ``ResizePolicy``)
writes it as its own ``{type, params}``, recursively, so that it can be rebuilt. Fields declared
with ``exclude=True`` (API keys: ``SecretStr`` fields) are never written, private attributes are
never written, and a ``SecretStr`` anywhere else refuses the whole dump. A loader that holds its
rows inline (``LoadDataFromDicts(data=...)``) writes them: fine for small data, but a large or
binary dataset belongs in a file a loader reads (images folder, Hub dataset).

Reading: only ``yaml.safe_load`` / ``json.loads``; nothing is evaluated. A ``type`` is imported
only when its dotted path starts with ``pixtill.`` (and the class really lives in pixtill) or is
listed, exactly, in ``allow``; the check happens before anything is imported. A resolved class
must be a pydantic model (or, for nested values, a dataclass). ``{type, params}`` objects are
only looked for in fields whose annotation can hold a model, so user data that happens to look
like one (a row ``{"type": ..., "params": ...}``) is read back as data.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from pixtill import __version__
from pixtill.errors import PixtillError, StepConfigError
from pixtill.paths import cache_dir as default_cache_dir
from pixtill.paths import write_atomically
from pixtill.steps.base import _Step

if TYPE_CHECKING:
    from pixtill.pipeline.dag import Pipeline

__all__ = [
    "PipelineConfigError",
    "UntrustedTypeError",
    "dump_pipeline",
    "load_pipeline",
    "pipeline_from_dict",
    "pipeline_to_dict",
    "resolve_class",
]

TRUSTED_PREFIX = "pixtill."
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_SECRET_TYPES: tuple[type, ...] = (SecretStr, SecretBytes)
_MIN_SECRET_LENGTH = 6  # shorter secret values are not searched for in the written text
_YAML_SUFFIXES = (".yaml", ".yml")


class PipelineConfigError(PixtillError, ValueError):
    """A pipeline cannot be written to, or read from, a configuration file."""


class UntrustedTypeError(PipelineConfigError):
    """A configuration file names a class that is neither pixtill's nor allowed."""

    def __init__(self, path: str, where: str) -> None:
        self.type_path = path
        super().__init__(
            f"{where}: refusing to load type {path!r}: only classes under 'pixtill.' are loaded "
            f"unless allowed; if you trust it, pass allow=[{path!r}] "
            f"(CLI: --allow {path})"
        )


# -- writing ---------------------------------------------------------------------------------


def dump_pipeline(pipeline: Pipeline, path: str | Path) -> Path:
    """Write ``pipeline`` to ``path``: YAML for ``.yaml``/``.yml``, JSON for ``.json``.

    The file is written atomically (readers never see half of it). Returns the path.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (*_YAML_SUFFIXES, ".json"):
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


def pipeline_to_dict(pipeline: Pipeline) -> dict[str, Any]:
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


def type_path(cls: type, where: str) -> str:
    """``module.QualifiedName`` of a class, refusing classes that could not be imported back."""
    if "<locals>" in cls.__qualname__:
        raise PipelineConfigError(
            f"{where}: class {cls.__qualname__!r} is defined inside a function, so a "
            "configuration file could not load it; define it at module level"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode_model(model: BaseModel, where: str) -> dict[str, Any]:
    fields = type(model).model_fields
    typed: dict[str, Any] = {}
    plain: set[str] = set()
    for name, info in fields.items():
        if info.exclude is True:
            continue
        value = getattr(model, name)
        _refuse_secrets(value, f"{where}, field {name!r}")
        if _holds_objects(info.annotation):
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


def _secret_values(pipeline: Pipeline) -> set[str]:
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


# -- reading ---------------------------------------------------------------------------------


def load_pipeline(path: str | Path, *, allow: Iterable[str] = ()) -> Pipeline:
    """Read a pipeline written by `dump_pipeline` (or by hand); see the module docstring."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PipelineConfigError(f"configuration file {str(source)!r} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(f"cannot read {str(source)!r}: {exc}") from exc
    try:
        data = json.loads(text) if source.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise PipelineConfigError(f"{str(source)!r} is not valid: {detail}") from exc
    return pipeline_from_dict(data, allow=allow, source=str(source))


def pipeline_from_dict(
    data: Any, *, allow: Iterable[str] = (), source: str = "configuration"
) -> Pipeline:
    """Build a `Pipeline` from `pipeline_to_dict` output (only trusted classes are imported)."""
    from pixtill.pipeline.dag import Pipeline

    allowed = frozenset(allow)
    if not isinstance(data, Mapping) or not isinstance(data.get("pipeline"), Mapping):
        raise PipelineConfigError(f"{source}: expected a mapping with a 'pipeline' key")
    version = data.get("pixtill_version")
    if version is not None and not isinstance(version, str):
        raise PipelineConfigError(f"{source}: 'pixtill_version' must be a string")
    spec: Mapping[str, Any] = data["pipeline"]
    _check_keys(spec, {"name", "description", "cache_dir", "steps", "connections"}, source)
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineConfigError(f"{source}: 'pipeline.name' must be a non-empty string")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise PipelineConfigError(f"{source}: 'pipeline.description' must be a string")
    cache = spec.get("cache_dir")
    if cache is not None and not isinstance(cache, str):
        raise PipelineConfigError(f"{source}: 'pipeline.cache_dir' must be a string")
    steps = spec.get("steps") or []
    connections = spec.get("connections") or []
    if not isinstance(steps, list) or not isinstance(connections, list):
        raise PipelineConfigError(f"{source}: 'steps' and 'connections' must be lists")

    with Pipeline(name=name, description=description, cache_dir=cache) as pipeline:
        for index, step_spec in enumerate(steps):
            _build_step(step_spec, index, allowed, source)
    for connection in connections:
        for upstream, downstream in _connection_pairs(connection, source):
            for step_name in (upstream, downstream):
                if step_name not in pipeline.steps:
                    raise PipelineConfigError(
                        f"{source}: connection names an unknown step {step_name!r}; "
                        f"steps: {sorted(pipeline.steps)}"
                    )
            try:
                pipeline.steps[upstream].connect(pipeline.steps[downstream])
            except StepConfigError as exc:
                raise PipelineConfigError(f"{source}: {exc}") from exc
    return pipeline


def _build_step(spec: Any, index: int, allowed: frozenset[str], source: str) -> _Step:
    if not isinstance(spec, Mapping):
        raise PipelineConfigError(f"{source}: steps[{index}] must be a mapping")
    _check_keys(spec, {"name", "type", "params"}, f"{source}: steps[{index}]")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineConfigError(f"{source}: steps[{index}] needs a 'name' string")
    where = f"step {name!r}"
    cls = resolve_class(spec.get("type"), allowed, where=where)
    if not issubclass(cls, _Step):
        raise PipelineConfigError(
            f"{where}: {spec['type']!r} is not a pixtill step (a Step or GeneratorStep subclass)"
        )
    params = _decode_params(cls, spec.get("params") or {}, allowed, where)
    if params.setdefault("name", name) != name:
        raise PipelineConfigError(
            f"{where}: params give another name, {params['name']!r}; keep the step's 'name' only"
        )
    step: _Step = _instantiate(cls, params, where)
    return step


def _connection_pairs(connection: Any, source: str) -> list[tuple[str, str]]:
    if not isinstance(connection, Mapping) or set(connection) != {"from", "to"}:
        raise PipelineConfigError(
            f"{source}: a connection must be {{from: step, to: [steps]}}, got {connection!r}"
        )
    upstream, targets = connection["from"], connection["to"]
    targets = [targets] if isinstance(targets, str) else targets
    if not isinstance(upstream, str) or not isinstance(targets, list):
        raise PipelineConfigError(f"{source}: bad connection {connection!r}")
    pairs = []
    for target in targets:
        if not isinstance(target, str):
            raise PipelineConfigError(f"{source}: bad connection target {target!r}")
        pairs.append((upstream, target))
    return pairs


def _check_keys(spec: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise PipelineConfigError(f"{where}: unknown keys {unknown}; expected {sorted(known)}")


def resolve_class(path: Any, allowed: Iterable[str] = (), *, where: str = "configuration") -> type:
    """Import the class at dotted ``path`` if it is trusted; refuse it before importing if not.

    Trusted: the path starts with ``pixtill.`` (and the class is defined in pixtill), or it is
    listed exactly in ``allowed``. The class must be a pydantic model or a dataclass.
    """
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        raise PipelineConfigError(f"{where}: 'type' must be a dotted class path, got {path!r}")
    explicitly_allowed = path in frozenset(allowed)
    if not explicitly_allowed and not path.startswith(TRUSTED_PREFIX):
        raise UntrustedTypeError(path, where)
    obj = _import_path(path, where)
    if not isinstance(obj, type):
        raise PipelineConfigError(f"{where}: {path!r} is a {type(obj).__name__}, not a class")
    module = getattr(obj, "__module__", "") or ""
    if not explicitly_allowed and not (module == "pixtill" or module.startswith(TRUSTED_PREFIX)):
        raise PipelineConfigError(
            f"{where}: {path!r} resolves to {module}.{obj.__qualname__}, which is not a pixtill "
            f"class; if you trust it, pass allow=[{path!r}] (CLI: --allow {path})"
        )
    if not (issubclass(obj, BaseModel) or dataclasses.is_dataclass(obj)):
        raise PipelineConfigError(f"{where}: {path!r} is not a pydantic model")
    return obj


def _import_path(path: str, where: str) -> Any:
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue
            raise PipelineConfigError(f"{where}: importing {module_name!r} failed: {exc}") from exc
        except Exception as exc:
            raise PipelineConfigError(
                f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        obj: Any = module
        for attr in parts[split:]:
            if obj is not module and not isinstance(obj, type):
                break
            obj = getattr(obj, attr, None)
            if obj is None or isinstance(obj, ModuleType):
                break
        else:
            return obj
        raise PipelineConfigError(f"{where}: no class {path!r} (module {module_name!r} found)")
    raise PipelineConfigError(f"{where}: cannot import {path!r}: no such module")


def _field_annotations(cls: type) -> dict[str, Any]:
    if issubclass(cls, BaseModel):
        return {name: info.annotation for name, info in cls.model_fields.items()}
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {}


def _holds_objects(annotation: Any) -> bool:
    """Whether a field's annotation can hold a pydantic model or a dataclass."""
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    return any(_holds_objects(arg) for arg in typing.get_args(annotation))


def _decode_params(cls: type, params: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise PipelineConfigError(f"{where}: 'params' must be a mapping, got {params!r}")
    annotations = _field_annotations(cls)
    decoded: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise PipelineConfigError(f"{where}: parameter names must be strings, got {key!r}")
        if key in annotations and _holds_objects(annotations[key]):
            value = _decode_value(value, allowed, f"{where}, field {key!r}")
        decoded[key] = value
    return decoded


def _decode_value(value: Any, allowed: frozenset[str], where: str) -> Any:
    if isinstance(value, Mapping):
        if "type" in value and set(value) <= {"type", "params"}:
            cls = resolve_class(value["type"], allowed, where=where)
            params = _decode_params(cls, value.get("params") or {}, allowed, where)
            return _instantiate(cls, params, where)
        return {k: _decode_value(v, allowed, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v, allowed, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _instantiate(cls: type, params: dict[str, Any], where: str) -> Any:
    try:
        if issubclass(cls, BaseModel):
            return cls.model_validate(params)
        return cls(**params)
    except ValidationError as exc:
        raise PipelineConfigError(f"{where}: invalid {cls.__name__}: {_explain(exc)}") from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PixtillError):
            raise
        raise PipelineConfigError(f"{where}: cannot build {cls.__name__}: {exc}") from exc


def _explain(exc: ValidationError) -> str:
    """A pydantic error on one line: ``field 'llm.model_id': Input should be a valid string``."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in error.get("loc", ()))
        message = " ".join(str(error.get("msg", "")).split())
        parts.append(f"field {location!r}: {message}" if location else message)
    return "; ".join(parts) or str(exc)


def _default_cache(name: str) -> Path:
    return default_cache_dir() / "pipelines" / name
