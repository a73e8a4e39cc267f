"""``dump()`` / ``from_dict()`` of one step or model, in distilabel's shape.

``obj.dump()`` is a plain, JSON-compatible dict of the object's fields, a nested model being
its own dump, plus ``"type_info": {"module": ..., "name": ...}`` naming the class (and, for
classes with runtime parameters, ``"runtime_parameters_info"``, as distilabel writes it).
Fields declared with ``Field(exclude=True)`` (API keys) are left out, and a ``SecretStr``
is written masked, so a dump never holds a secret. ``Cls.from_dict(data)`` builds the object
back.

Safety: ``from_dict`` imports nothing. A nested ``type_info`` must name a class in a module
that is already imported and be a pydantic model, so that reading a dict never runs code
the program did not already load. A whole pipeline is written and read with
``Pipeline.dump(path)`` / ``Pipeline.from_file(path)`` instead (see the README).
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

__all__ = ["TYPE_INFO_KEY", "Serializable", "type_info"]

TYPE_INFO_KEY = "type_info"
_INFO_KEYS = (TYPE_INFO_KEY, "runtime_parameters_info")
SerializableT = TypeVar("SerializableT", bound="Serializable")


def type_info(cls: type) -> dict[str, str]:
    """``{"module": cls.__module__, "name": cls.__name__}``."""
    return {"module": cls.__module__, "name": cls.__name__}


class Serializable(BaseModel):
    """Adds distilabel's ``dump`` / ``from_dict`` to a pydantic model."""

    # Models leave their runtime parameters to the step holding them, as in distilabel.
    dump_runtime_parameters_info: ClassVar[bool] = True

    def dump(self, **kwargs: Any) -> dict[str, Any]:
        """The object as a JSON-compatible dict (see the module docs). ``kwargs`` are passed
        to pydantic's ``model_dump`` for the plain fields."""
        out: dict[str, Any] = {}
        plain: set[str] = set()
        for name, info in type(self).model_fields.items():
            if info.exclude is True:
                continue
            value = getattr(self, name)
            if isinstance(value, Serializable):
                out[name] = value.dump(**kwargs)
            else:
                plain.add(name)
        if plain:
            kwargs.setdefault("mode", "json")
            dumped = self.model_dump(include=plain, **kwargs)
            out = {**dumped, **out}
        info_of = getattr(self, "get_runtime_parameters_info", None)
        if callable(info_of) and self.dump_runtime_parameters_info:
            out["runtime_parameters_info"] = info_of()
        out[TYPE_INFO_KEY] = type_info(type(self))
        return out

    @classmethod
    def from_dict(cls: type[SerializableT], data: dict[str, Any]) -> SerializableT:
        """Build the object from `dump` output (nested models from their ``type_info``).

        Raises ``ValueError`` when a nested ``type_info`` names a class that is not loaded or
        not a pydantic model, and pydantic's ``ValidationError`` for invalid field values.
        """
        fields = {k: _rebuild(v) for k, v in data.items() if k not in _INFO_KEYS}
        return cls(**fields)


def _rebuild(value: Any) -> Any:
    if isinstance(value, dict):
        info = value.get(TYPE_INFO_KEY)
        if isinstance(info, dict):
            cls = _loaded_class(info)
            return cls(**{k: _rebuild(v) for k, v in value.items() if k not in _INFO_KEYS})
        return {k: _rebuild(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v) for v in value]
    return value


def _loaded_class(info: dict[str, Any]) -> type[BaseModel]:
    module_name, name = info.get("module"), info.get("name")
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    cls = getattr(module, name, None) if module is not None and isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ValueError(
            f"type_info {info!r} does not name a pydantic model class of a module already "
            "imported; import its module first (from_dict never imports code)"
        )
    return cls
