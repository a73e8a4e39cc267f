"""Row conditions written as text (``judge_score >= 4 and not failed``), parsed, never evaluated
as code.

The grammar is small and closed::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | primary
    primary    := "(" condition ")" | operand [op operand]
    op         := "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in"
    operand    := literal | path | func "(" path ")"
    path       := name ("." name)*          (a column, then keys inside a dict column)
    func       := "len" | "width" | "height"  (width/height decode an image column's header)
    literal    := number | 'text' | "text" | true | false | null | "[" literal, ... "]"

A bare operand is true when it is truthy. ``failed`` is a built-in: true when the row's
``pixtill_metadata`` holds an error from any step (``error_<step>``) or is not a dict at all,
unless the row has its own ``failed`` column. A comparison with a missing value (``None``) is
false rather than an error, so a row whose judge failed does not pass ``judge_score >= 4``;
`Condition.explain` says why a row failed. Parsing errors name the position (`ConditionError`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from pixtill.errors import PixtillError
from pixtill.steps.metadata import METADATA_COLUMN, decode_metadata


class ConditionError(PixtillError, ValueError):
    """A condition that does not parse, with the position of the problem."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|==|!=|<|>)
      | (?P<punct>[()\[\],.])
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "none"}
_FUNCTIONS = ("len", "width", "height")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    out, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise ConditionError(f"cannot read {text[at:].strip()[:20]!r} at character {at}")
        group = match.lastgroup or ""
        value, kind = match.group(group), group
        if kind == "name" and value.lower() in _KEYWORDS:
            kind = value.lower()
        out.append(_Token(kind, value, match.start(group)))
        at = match.end()
    out.append(_Token("end", "", len(text)))
    return out


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    value: Any

    def value_of(self, row: dict[str, Any]) -> Any:
        return self.value

    def paths(self) -> list[str]:
        return []


@dataclass(frozen=True)
class _Path:
    parts: tuple[str, ...]

    def value_of(self, row: dict[str, Any]) -> Any:
        head = self.parts[0]
        if head == "failed" and "failed" not in row:
            meta = decode_metadata(row.get(METADATA_COLUMN))
            if meta is None:  # not a dict: the row is broken, so it counts as failed
                return True
            return any(k.startswith("error_") and v is not None for k, v in meta.items())
        value: Any = row.get(head)
        for key in self.parts[1:]:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def paths(self) -> list[str]:
        return [".".join(self.parts)]


@dataclass(frozen=True)
class _Call:
    function: str
    argument: _Path

    def value_of(self, row: dict[str, Any]) -> Any:
        value = self.argument.value_of(row)
        if value is None:
            return None
        if self.function == "len":
            return len(value)
        from pixtill.images import ImageRef

        size = ImageRef.from_value(value).to_pil().size
        return size[0] if self.function == "width" else size[1]

    def paths(self) -> list[str]:
        return [f"{self.function}({'.'.join(self.argument.parts)})"]


_Operand = Union[_Literal, _Path, _Call]


@dataclass(frozen=True)
class _Compare:
    left: _Operand
    op: str
    right: _Operand

    def holds(self, row: dict[str, Any]) -> bool:
        left, right = self.left.value_of(row), self.right.value_of(row)
        if self.op in ("in", "not in"):
            inside = right is not None and left in right
            return inside if self.op == "in" else not inside
        if self.op in ("==", "!="):
            return _COMPARE[self.op](left, right)
        if left is None or right is None:
            return False
        try:
            return _COMPARE[self.op](left, right)
        except TypeError:
            return False

    def paths(self) -> list[str]:
        return self.left.paths() + self.right.paths()


@dataclass(frozen=True)
class _Truthy:
    operand: _Operand

    def holds(self, row: dict[str, Any]) -> bool:
        return bool(self.operand.value_of(row))

    def paths(self) -> list[str]:
        return self.operand.paths()


@dataclass(frozen=True)
class _Not:
    inner: _Node

    def holds(self, row: dict[str, Any]) -> bool:
        return not self.inner.holds(row)

    def paths(self) -> list[str]:
        return self.inner.paths()


@dataclass(frozen=True)
class _Both:
    op: str  # "and" / "or"
    items: tuple[_Node, ...]

    def holds(self, row: dict[str, Any]) -> bool:
        if self.op == "and":
            return all(item.holds(row) for item in self.items)
        return any(item.holds(row) for item in self.items)

    def paths(self) -> list[str]:
        return [p for item in self.items for p in item.paths()]


_Node = Union[_Compare, _Truthy, _Not, _Both]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def fail(self, what: str) -> ConditionError:
        token = self.tokens[self.at]
        found = repr(token.text) if token.kind != "end" else "the end"
        return ConditionError(
            f"condition {self.text!r}: expected {what} at character {token.at}, found {found}"
        )

    def peek(self, *kinds: str) -> bool:
        return self.tokens[self.at].kind in kinds or self.tokens[self.at].text in kinds

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        if not self.peek(text):
            raise self.fail(repr(text))
        self.take()

    def parse(self) -> _Node:
        node = self.or_()
        if not self.peek("end"):
            raise self.fail("'and', 'or' or the end")
        return node

    def or_(self) -> _Node:
        items = [self.and_()]
        while self.peek("or"):
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else _Both("or", tuple(items))

    def and_(self) -> _Node:
        items = [self.not_()]
        while self.peek("and"):
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else _Both("and", tuple(items))

    def not_(self) -> _Node:
        if self.peek("not"):
            self.take()
            return _Not(self.not_())
        return self.primary()

    def primary(self) -> _Node:
        if self.peek("("):
            self.take()
            node = self.or_()
            self.expect(")")
            return node
        left = self.operand()
        if self.peek("op"):
            op = self.take().text
        elif self.peek("in"):
            self.take()
            op = "in"
        elif self.peek("not") and self.tokens[self.at + 1].kind == "in":
            self.at += 2
            op = "not in"
        else:
            return _Truthy(left)
        return _Compare(left, op, self.operand())

    def operand(self) -> _Operand:
        if self.peek("name"):
            name = self.take().text
            if self.peek("(") and name in _FUNCTIONS:
                self.take()
                argument = self.path(self.take_name())
                self.expect(")")
                return _Call(name, argument)
            return self.path(name)
        return _Literal(self.literal())

    def take_name(self) -> str:
        if not self.peek("name"):
            raise self.fail("a column name")
        return self.take().text

    def path(self, head: str) -> _Path:
        parts = [head]
        while self.peek("."):
            self.take()
            parts.append(self.take_name())
        return _Path(tuple(parts))

    def literal(self) -> Any:
        token = self.tokens[self.at]
        if token.kind == "number":
            self.take()
            number = float(token.text)
            return int(number) if re.fullmatch(r"-?\d+", token.text) else number
        if token.kind == "string":
            self.take()
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        if token.kind in ("true", "false"):
            self.take()
            return token.kind == "true"
        if token.kind in ("null", "none"):
            self.take()
            return None
        if token.text == "[":
            self.take()
            items = []
            while not self.peek("]"):
                items.append(self.literal())
                if not self.peek("]"):
                    self.expect(",")
            self.take()
            return items
        raise self.fail("a column, a number, a quoted text, true, false, null or a list")


class Condition:
    """One parsed condition; `holds(row)` tests a row, `explain(row)` says what it saw.

    Raises `ConditionError` for text outside the grammar (see the module docs).
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConditionError(f"a condition must be a non-empty text, got {text!r}")
        self.text = text.strip()
        self._tree = _Parser(self.text).parse()

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def holds(self, row: dict[str, Any]) -> bool:
        return self._tree.holds(row)

    def columns(self) -> list[str]:
        """The row columns the condition reads (``failed`` only if the row may hold it)."""
        roots = []
        for path in self._tree.paths():
            root = path.split("(")[-1].rstrip(")").split(".")[0]
            if root != "failed" and root not in roots:
                roots.append(root)
        return roots

    def reads_metadata(self) -> bool:
        """True when the condition reads ``pixtill_metadata`` (``failed`` or a path into it)."""
        roots = {path.split("(")[-1].rstrip(")").split(".")[0] for path in self._tree.paths()}
        return "failed" in roots or METADATA_COLUMN in roots

    def explain(self, row: dict[str, Any]) -> str:
        """``"<condition> (judge_score=2.5)"``: the condition and the values it read."""
        seen: dict[str, Any] = {}
        for path in self._tree.paths():
            if path not in seen:
                seen[path] = _value_at(row, path)
        values = ", ".join(f"{path}={_short(value)}" for path, value in seen.items())
        return f"{self.text} ({values})" if values else self.text


def _value_at(row: dict[str, Any], path: str) -> Any:
    try:
        return Condition(path)._tree.operand.value_of(row)  # type: ignore[union-attr]
    except Exception:
        return "?"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["Condition", "ConditionError"]
