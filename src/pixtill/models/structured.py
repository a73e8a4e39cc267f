"""Structured output: the JSON shape a task asks a model for, and the check of what comes back.

A task that needs a shape passes ``structured_output=<spec>`` to its model's `generate` /
`agenerate`, where ``<spec>`` is a JSON Schema (a dict) or a pydantic model class. A backend
that can constrain decoding translates the schema into its provider's form (OpenAI-compatible
``response_format: {"type": "json_schema"}``, Anthropic tool use, vLLM guided decoding); one that
cannot raises `StructuredOutputNotSupportedError`. The generation still comes back as the JSON
text (as distilabel keeps it); `parse_structured` turns it into a checked Python object.
"""

from __future__ import annotations

import functools
from typing import Any, Union

import jsonschema
import orjson
from pydantic import BaseModel as PydanticModel
from pydantic import ValidationError

from pixtill.errors import PixtillError
from pixtill.utils.fast_json import dumps, loads

StructuredOutputSpec = Union[dict[str, Any], type[PydanticModel]]


class StructuredOutputError(PixtillError, ValueError):
    """A model's reply is not JSON, or does not match the schema it was asked for."""


class StructuredOutputNotSupportedError(PixtillError, ValueError):
    """The backend cannot constrain its output to a schema."""


def json_schema_of(spec: StructuredOutputSpec) -> dict[str, Any]:
    """The JSON Schema (a dict) of ``spec``: the dict itself, or a pydantic model's schema.

    Raises `TypeError` for anything else.
    """
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, type) and issubclass(spec, PydanticModel):
        return spec.model_json_schema()
    raise TypeError(
        f"structured output must be a JSON Schema dict or a pydantic model class, got {spec!r}"
    )


def schema_name(spec: StructuredOutputSpec) -> str:
    """A short name for the schema (providers require one): the model's class name, the
    schema's ``title``, else ``"output"``; only characters OpenAI accepts in a name."""
    name = spec.__name__ if isinstance(spec, type) else str(spec.get("title") or "output")
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned[:64] or "output"


def parse_structured(text: Any, spec: StructuredOutputSpec) -> Any:
    """Parse a model's reply against ``spec``.

    Returns a pydantic instance when ``spec`` is a pydantic model class, else the JSON value
    (dict, list...). A reply that is already a dict (some backends parse for us) is checked the
    same way. Raises `StructuredOutputError` naming what is wrong (not JSON, or the first
    schema violation with its JSON path).
    """
    if isinstance(text, (str, bytes)):
        try:
            value = loads(text)
        except ValueError as exc:
            snippet = text[:80] if isinstance(text, str) else text[:80].decode(errors="replace")
            raise StructuredOutputError(f"reply is not JSON ({exc}): {snippet!r}") from exc
    else:
        value = text
    if isinstance(spec, type) and issubclass(spec, PydanticModel):
        try:
            return spec.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise StructuredOutputError(
                f"reply does not match {spec.__name__}: {where}: {first['msg']}"
            ) from exc
    schema = json_schema_of(spec)
    try:
        validator = _validator(dumps(schema, option=orjson.OPT_SORT_KEYS))
    except jsonschema.SchemaError as exc:
        raise StructuredOutputError(f"the output schema itself is invalid: {exc.message}") from exc
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise StructuredOutputError(f"reply does not match the schema at {where}: {error.message}")
    return value


@functools.lru_cache(maxsize=128)
def _validator(schema_json: bytes) -> Any:
    """A checked validator per schema (by its canonical JSON). ``jsonschema.validate`` checks
    the schema against its meta-schema on every call, ~4 ms, which dominated a judge's cost per
    row; the same errors (`best_match`) come out of a cached validator in ~30 us."""
    schema = loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
