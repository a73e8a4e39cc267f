"""Prompt templates, rendered in a sandboxed Jinja2 environment.

Templates come from configs and datasets that may be shared, so they must not be able to reach
Python internals: the immutable sandbox refuses attribute tricks and mutation, and undefined
variables are errors instead of silently rendering as empty strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pixtill.errors import RowError, StepConfigError

_MAX_PRODUCT = 1_000_000
"""The most characters or items a template's ``*`` may make (a prompt is far shorter)."""


class _PromptSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` bounded: ``{{ 'x' * 10**10 }}`` or
    ``{{ 9**9**9 }}`` in a shared config would otherwise exhaust memory or hang a worker
    (Jinja's sandbox bounds ``range`` but not these; its docs suggest intercepting them)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _too_big_power(left, right):
            raise SecurityError(f"the power {left!r} ** {right!r} is too large for a template")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, (str, list, tuple))
                    and isinstance(times, int)
                    and len(sequence) * times > _MAX_PRODUCT
                ):
                    raise SecurityError(
                        f"repeating {len(sequence)} items {times} times is over the "
                        f"{_MAX_PRODUCT:,} a template may make"
                    )
        return super().call_binop(context, operator, left, right)


def _too_big_power(base: Any, exponent: Any) -> bool:
    if not isinstance(base, (int, float)) or not isinstance(exponent, (int, float)):
        return False
    return abs(base) > 1 and abs(exponent) > 1024


_ENV = _PromptSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class MissingValue(StrictUndefined):
    """A column whose value is missing (None, NaN, pandas' NA/NaT: `is_missing`), as the
    template sees it: false in ``{% if %}``, ``none`` for ``is none``, replaced by
    ``| default(...)``, but a `RowError` naming the column when printed, instead of the text
    "None" (or "<NA>", "NaT", "nan") reaching the model."""

    __slots__ = ()

    def __init__(self, name: str, shown: str = "None") -> None:
        super().__init__(hint=shown, name=name)

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        got = self._undefined_hint or "None"
        raise RowError(f"expected text, got {got} (a missing value)", column=self._undefined_name)

    # StrictUndefined binds these to its own method at class creation: bind them to ours.
    __str__ = __iter__ = __len__ = __contains__ = _fail_with_undefined_error
    __add__ = __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = _fail_with_undefined_error
    __getitem__ = __call__ = __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error

    def __bool__(self) -> bool:  # type: ignore[override]
        return False

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return other is None or isinstance(other, MissingValue)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return not self.__eq__(other)

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(None)


_ENV.tests["none"] = lambda value: value is None or isinstance(value, MissingValue)


class PromptTemplate:
    """A compiled template that knows which variables it uses."""

    def __init__(self, source: str) -> None:
        try:
            parsed = _ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise StepConfigError(
                f"invalid Jinja2 template (line {exc.lineno}): {exc.message}"
            ) from exc
        self.source = source
        self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(parsed))
        self._template = _ENV.from_string(source)
        # Jinja merges the globals into every render's context; as the ChainMap it builds they
        # cost more than the render itself, and they never change, so keep one flat copy.
        self._template.globals = dict(self._template.globals)
        self._only_variable = _only_variable(parsed)

    def __deepcopy__(self, memo: dict[int, Any]) -> PromptTemplate:
        return self  # immutable: copies of a step may share it

    def check_columns(self, columns: Iterable[str], *, owner: str) -> None:
        """Fail unless the template uses exactly the declared columns."""
        declared = set(columns)
        undeclared = sorted(self.variables - declared)
        unused = sorted(declared - self.variables)
        if undeclared:
            raise StepConfigError(
                f"{owner}: the template uses {undeclared} but `columns` declares "
                f"{sorted(declared)}; add them to `columns`"
            )
        if unused:
            raise StepConfigError(
                f"{owner}: `columns` declares {unused} but the template never uses them"
            )

    def render(self, values: Mapping[str, Any]) -> str:
        """The prompt for one row. A None value that the template prints raises `RowError`
        naming its column (the template may still test it, or give it a ``default``)."""
        name = self._only_variable
        if name is not None:  # "{{ column }}", the usual default: Jinja would give str(value)
            value = values.get(name)
            if type(value) is str:
                return value
        if any(is_missing(value) for value in values.values()):
            values = {
                key: MissingValue(key, shown_missing(value)) if is_missing(value) else value
                for key, value in values.items()
            }
        return self._template.render(**values)


def is_missing(value: Any) -> bool:
    """Whether ``value`` is a missing value rather than data: None, pandas' ``NA`` and ``NaT``,
    a NaN of any float type (Python, numpy's float16..float128, ``Decimal``), numpy's ``NaT``
    (datetime64 / timedelta64 of any unit). How pandas, numpy and CSV readers spell "no value".

    Checked by type name and ``value != value`` (true only for NaN-like scalars), so neither
    pandas nor numpy is imported here; arrays and other objects are never missing.
    """
    if value is None:
        return True
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return False
    if kind.__name__ in ("NAType", "NaTType") and kind.__module__.startswith("pandas"):
        return True
    if isinstance(value, Decimal):
        return value.is_nan()  # sNaN cannot be compared without raising
    if isinstance(value, (float, complex)) or kind.__module__ == "numpy":
        try:
            return bool(value != value)
        except (TypeError, ValueError):  # arrays: ambiguous truth value
            return False
    return False


def shown_missing(value: Any) -> str:
    """How a missing value is named in an error: "None", "nan", "<NA>", "NaT"."""
    return "None" if value is None else str(value)


def _only_variable(parsed: nodes.Template) -> str | None:
    """The variable's name when the whole template is ``{{ name }}``; otherwise None."""
    if len(parsed.body) != 1 or not isinstance(parsed.body[0], nodes.Output):
        return None
    output = parsed.body[0].nodes
    if len(output) == 1 and isinstance(output[0], nodes.Name) and output[0].ctx == "load":
        return str(output[0].name)
    return None
