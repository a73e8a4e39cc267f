"""Classes named in configuration files: which are trusted, how they are imported, how their
parameters are decoded and how they are built (see `pixtill.pipeline.config_file`)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from pixtill.errors import PixtillError

TRUSTED_PREFIX = "pixtill."
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


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


def type_path(cls: type, where: str) -> str:
    """``module.QualifiedName`` of a class, refusing classes that could not be imported back."""
    if "<locals>" in cls.__qualname__:
        raise PipelineConfigError(
            f"{where}: class {cls.__qualname__!r} is defined inside a function, so a "
            "configuration file could not load it; define it at module level"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


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


def field_annotations(cls: type) -> dict[str, Any]:
    if issubclass(cls, BaseModel):
        return {name: info.annotation for name, info in cls.model_fields.items()}
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return {}


def holds_objects(annotation: Any) -> bool:
    """Whether a field's annotation can hold a pydantic model or a dataclass."""
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    return any(holds_objects(arg) for arg in typing.get_args(annotation))


def decode_params(cls: type, params: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise PipelineConfigError(f"{where}: 'params' must be a mapping, got {params!r}")
    annotations = field_annotations(cls)
    decoded: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise PipelineConfigError(f"{where}: parameter names must be strings, got {key!r}")
        if key in annotations and holds_objects(annotations[key]):
            value = _decode_value(value, allowed, f"{where}, field {key!r}")
        decoded[key] = value
    return decoded


def _decode_value(value: Any, allowed: frozenset[str], where: str) -> Any:
    if isinstance(value, Mapping):
        if "type" in value and set(value) <= {"type", "params"}:
            cls = resolve_class(value["type"], allowed, where=where)
            params = decode_params(cls, value.get("params") or {}, allowed, where)
            return instantiate(cls, params, where)
        return {k: _decode_value(v, allowed, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v, allowed, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def instantiate(cls: type, params: dict[str, Any], where: str) -> Any:
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
