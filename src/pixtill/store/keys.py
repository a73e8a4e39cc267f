"""Cache keys: a row's key (its input columns, images by content hash) and a step's
signature (its configuration, without the fields that only change how it runs)."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePath
from typing import Any

import orjson
from pydantic import BaseModel

from pixtill.images import ImageError, ImageRef, is_image_value
from pixtill.utils.secrets import MASK, is_secret_name, mask_url

RUN_ONLY_FIELDS: frozenset[str] = frozenset(
    {"input_batch_size", "batch_size", "replicas", "resources", "input_mappings"}
)
"""Step fields that change how a step runs, never what it outputs (left out of signatures).

``name`` and ``output_mappings`` stay in: cached rows hold the step's output columns under their
mapped names and metadata keys named after the step."""
NESTED_RUN_ONLY_FIELDS: frozenset[str] = frozenset(
    {"max_concurrent_requests", "timeout", "max_retries", "requests_per_minute"}
    | {"tokens_per_minute", "api_key", "token"}
)
"""The same, for fields of nested models (the LLM, its transport) and of the step itself."""


def _canonical(value: Any) -> Any:
    """A JSON-able stand-in for ``value``; images become their content hash."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        if value[:5].lower() == "data:":
            try:
                return {"\x00image": ImageRef.from_value(value).content_hash()}
            except ImageError:
                return value
        return value
    if isinstance(value, ImageRef) and value.url is not None:
        return value.url
    if isinstance(value, dict) and is_image_value(value) and not value.get("bytes"):
        return str(value["path"])  # a path-only image dict: hashed as its path string
    if is_image_value(value):
        try:
            return {"\x00image": ImageRef.from_value(value).content_hash()}
        except ImageError:  # e.g. a path that is gone: the row fails later, keep it distinct
            return {"\x00unreadable image": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return f"{type(value).__qualname__}:{value!r}"


def _finite(value: float) -> Any:
    """``value``, or a tagged stand-in for NaN and the infinities (which orjson writes as
    ``null``, the same as None)."""
    return value if math.isfinite(value) else {"\x00float": repr(value)}


def _digest(payload: Any) -> str:
    """sha256 of ``payload`` as canonical JSON (sorted keys; unknown types by their repr)."""
    try:  # orjson: ~10x the stdlib's speed on a row key
        data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=repr)
    except TypeError:  # e.g. an int beyond 64 bits, a non-str key
        text = json.dumps(
            payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr
        )
        data = text.encode()
    return hashlib.sha256(data).hexdigest()


def row_key(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    """sha256 of the listed columns of ``row`` (only those), images by content hash."""
    names = sorted(set(columns))
    present = {name: _canonical(row[name]) for name in names if name in row}
    missing = [name for name in names if name not in row]
    return _digest({"columns": present, "missing": missing})


def step_signature(step: BaseModel, *, exclude: AbstractSet[str] = RUN_ONLY_FIELDS) -> str:
    """sha256 of the step's configuration: its class, and every field (recursing into nested
    models such as the step's `llm`, by their runtime class) except those that only change how
    it runs (``exclude`` at the top level, `NESTED_RUN_ONLY_FIELDS` at every level) and fields
    marked ``exclude=True`` (secrets). Stable across processes: an object without a
    serialization is represented by its class, never by a repr holding a memory address."""
    return _digest(_config_of(step, exclude))


def _config_of(value: Any, exclude: AbstractSet[str] = frozenset()) -> Any:
    if isinstance(value, BaseModel):
        cls = type(value)
        out: dict[str, Any] = {"__class__": f"{cls.__module__}.{cls.__qualname__}"}
        for name, field in cls.model_fields.items():
            if name in exclude or name in NESTED_RUN_ONLY_FIELDS or field.exclude:
                continue
            out[name] = _config_of(getattr(value, name, None))
        return out
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        return mask_url(value)  # a URL's password never goes into a cache key, even hashed
    if value is None or isinstance(value, (int, bool)):
        return value
    if isinstance(value, dict):
        return {
            str(k): MASK if is_secret_name(str(k)) and isinstance(v, str) else _config_of(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_config_of(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _config_of(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "__class__": type(value).__qualname__,
            **{f.name: _config_of(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    text = repr(value)
    if " at 0x" in text:  # a default repr: the address differs in every process
        kind = type(value)
        return f"<{kind.__module__}.{kind.__qualname__}>"
    return text
