"""``RuntimeParameter[T]``: distilabel's marker for a field that may be given when a pipeline
runs rather than when the step (or model) is built.

``RuntimeParameter[int]`` is ``Optional[int]`` with a default of None and the marker attached,
so a class declaring ``x: RuntimeParameter[int]`` can be built without ``x``; the value comes
later from `RuntimeParametersMixin.set_runtime_parameters` (or ``Pipeline.run(parameters=)``,
or the CLI's ``--param``). A marked field whose default is None is *required* at run time:
a task refuses to load while its model still lacks one (`missing_runtime_parameters`).

In pixtill every field of a step or model can be set at run time, marked or not; the marker
only says which values a run must provide. Idea and names from distilabel's
``RuntimeParametersMixin`` (``runtime_parameters_names``, ``get_runtime_parameters_info``,
``set_runtime_parameters``).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = [
    "RUNTIME_PARAMETER_MARKER",
    "RuntimeParameter",
    "RuntimeParameterInfo",
    "RuntimeParametersMixin",
    "RuntimeParametersModelMixin",
    "RuntimeParametersNames",
]

T = TypeVar("T")

RUNTIME_PARAMETER_MARKER = "pixtill:runtime_parameter"
# No ``Field(default=None)`` inside (distilabel's way): pydantic warns about it when the alias
# is wrapped in ``Optional[...]``; `RuntimeParametersMixin` fills the missing values instead.
RuntimeParameter = Annotated[Union[T, None], RUNTIME_PARAMETER_MARKER]

RuntimeParametersNames = dict[str, Any]
"""``{field: optional?}``, nested for fields holding models: ``{"llm": {"x": False, ...}}``."""

RuntimeParameterInfo = dict[str, Any]
"""``{"name": ..., "optional": bool, "description": ...}`` or, for a nested model,
``{"name": ..., "runtime_parameters_info": [...]}``."""

_log = logging.getLogger("pixtill.runtime_parameters")


def _is_runtime_parameter(info: FieldInfo) -> tuple[bool, bool]:
    """(is the field marked, is giving it at run time optional)."""
    if RUNTIME_PARAMETER_MARKER in info.metadata:
        # ``x: RuntimeParameter[int]`` (no default: required at run time) or ``= 3``.
        has_default = info.default is not None and info.default is not PydanticUndefined
        return True, has_default or info.default_factory is not None
    args = get_args(info.annotation)
    for arg in args:
        if get_origin(arg) is Annotated and get_args(arg)[-1] == RUNTIME_PARAMETER_MARKER:
            # ``x: Optional[RuntimeParameter[int]] = None``: optional.
            return True, type(None) in args
    return False, False


class RuntimeParametersMixin(BaseModel):
    """Lists, describes and sets a class's runtime parameters (see the module docs)."""

    @model_validator(mode="before")
    @classmethod
    def _runtime_parameters_may_wait(cls, data: Any) -> Any:
        """A runtime parameter without default may be left out at construction (None)."""
        if not isinstance(data, dict):
            return data
        waiting = [
            name
            for name, info in cls.model_fields.items()
            if info.is_required() and _is_runtime_parameter(info)[0] and name not in data
        ]
        return {**data, **dict.fromkeys(waiting)} if waiting else data

    @property
    def runtime_parameters_names(self) -> RuntimeParametersNames:
        """``{name: optional}`` for marked fields; ``{name: {...}}`` for fields holding a model
        with runtime parameters (a task's ``llm``)."""
        names: RuntimeParametersNames = {}
        for name, info in type(self).model_fields.items():
            marked, optional = _is_runtime_parameter(info)
            if marked:
                names[name] = optional
                continue
            value = getattr(self, name, None)
            if isinstance(value, RuntimeParametersMixin):
                names[name] = value.runtime_parameters_names
        return names

    def get_runtime_parameters_info(self) -> list[RuntimeParameterInfo]:
        """Name, optionality and description of each runtime parameter (for dumps and docs)."""
        names = self.runtime_parameters_names
        infos: list[RuntimeParameterInfo] = []
        for name, info in type(self).model_fields.items():
            if name not in names:
                continue
            value = getattr(self, name, None)
            if isinstance(value, RuntimeParametersMixin):
                infos.append(
                    {"name": name, "runtime_parameters_info": value.get_runtime_parameters_info()}
                )
                continue
            entry: RuntimeParameterInfo = {"name": name, "optional": names[name]}
            if info.description is not None:
                entry["description"] = info.description
            infos.append(entry)
        return infos

    def missing_runtime_parameters(self, prefix: str = "") -> list[str]:
        """Dotted names of required runtime parameters still None (``["llm.api_key"]``)."""
        missing: list[str] = []
        for name, optional in self.runtime_parameters_names.items():
            value = getattr(self, name, None)
            if isinstance(value, RuntimeParametersMixin):
                missing += value.missing_runtime_parameters(f"{prefix}{name}.")
            elif optional is False and value is None:
                missing.append(f"{prefix}{name}")
        return missing

    def set_runtime_parameters(self, runtime_parameters: dict[str, Any]) -> None:
        """Set fields from ``{name: value}``, recursing into nested models with a dict value.

        Any field may be set (marked or not, as everywhere in pixtill); a name that is no
        field is skipped with a warning naming the closest field names.
        """
        fields = type(self).model_fields
        for name, value in runtime_parameters.items():
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), cutoff=0.5)
                owner = getattr(self, "name", None) or type(self).__name__
                hint = f" Did you mean any of: {close}" if close else ""
                _log.warning("Runtime parameter %r unknown in %r.%s", name, owner, hint)
                continue
            current = getattr(self, name, None)
            if isinstance(current, RuntimeParametersMixin) and isinstance(value, dict):
                current.set_runtime_parameters(value)
            else:
                setattr(self, name, value)


class RuntimeParametersModelMixin(RuntimeParametersMixin):
    """For models: ``generation_kwargs`` lists the keyword arguments of ``agenerate`` (async
    models) or ``generate`` (``{name: optional}``), as distilabel does."""

    @property
    def generate_parameters(self) -> list[inspect.Parameter]:
        method = getattr(self, "agenerate", None) or getattr(self, "generate", None)
        if method is None:
            return []
        return list(inspect.signature(method).parameters.values())

    @property
    def runtime_parameters_names(self) -> RuntimeParametersNames:
        names = super().runtime_parameters_names
        kwargs: dict[str, bool] = {}
        for param in self.generate_parameters:
            if param.name in ("input", "inputs", "num_generations") or param.kind in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                continue
            kwargs[param.name] = param.default is not inspect.Parameter.empty
        names["generation_kwargs"] = kwargs
        return names

    def get_runtime_parameters_info(self) -> list[RuntimeParameterInfo]:
        infos = [
            i for i in super().get_runtime_parameters_info() if i["name"] != "generation_kwargs"
        ]
        field = type(self).model_fields.get("generation_kwargs")
        if field is not None:
            keys = self.runtime_parameters_names["generation_kwargs"]
            entry: RuntimeParameterInfo = {
                "name": "generation_kwargs",
                "keys": [{"name": k, "optional": v} for k, v in keys.items()],
            }
            if field.description is not None:
                entry["description"] = field.description
            infos.insert(0, entry)
        return infos
