"""Reading a configuration file that may be hostile: limits checked before the data is built.

`yaml.safe_load` runs no code, but it still accepts files that cost minutes or all the memory:
an alias bomb ("billion laughs": each anchor refers to the previous one ten times, so a 1 KB
file expands to 10^9 values when walked), thousands of nested brackets, a huge file. Here:

- the file's size is checked before it is read (`MAX_BYTES`);
- YAML is first read as a stream of parser events (iterative, libyaml when available), which
  bounds the nesting depth (`MAX_DEPTH`) without building anything;
- the document's node graph is then composed and its *expanded* size (every alias counted as
  the whole subtree it stands for) is computed with memoisation, in time linear in the file,
  and refused past `MAX_NODES`; a self-referencing alias is refused too;
- JSON gets the same depth and size limits (checked on the parsed value, iteratively).

Every refusal raises ``ValueError`` with a message saying which limit and what it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 8 * 2**20
"""Largest configuration file read (8 MiB): a pipeline with a few thousand inline rows fits."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings."""
MAX_NODES = 200_000
"""Most values in the document once every alias is expanded."""

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigLimitError(ValueError):
    """A configuration file is over one of this module's limits."""


def read_text(path: Path) -> str:
    """The file's text, refused before reading when it is larger than `MAX_BYTES`."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigLimitError(
            f"the file is {size:,} bytes; configuration files are limited to {MAX_BYTES:,} bytes "
            "(put large data in a file a loader reads)"
        )
    return path.read_text(encoding="utf-8")


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` within the limits; raises `ConfigLimitError` or `yaml.YAMLError`."""
    _check_events(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_json(text: str) -> Any:
    """``json.loads(text)`` within the limits (depth, values)."""
    if len(text) > MAX_BYTES:
        raise ConfigLimitError(f"the text is over {MAX_BYTES:,} characters")
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise ConfigLimitError(f"nesting deeper than {MAX_DEPTH} levels") from exc
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigLimitError(f"more than {MAX_NODES:,} values")
        if isinstance(item, (list, dict)):
            if depth > MAX_DEPTH:
                raise ConfigLimitError(f"nesting deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def _check_events(text: str) -> None:
    try:
        _count_events(text)
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit (1,000 levels) came first
            raise ConfigLimitError(f"nesting deeper than {MAX_DEPTH} levels") from exc
        raise


def _count_events(text: str) -> None:
    depth = 0
    for events, event in enumerate(yaml.parse(text, Loader=_Loader), start=1):
        if events > MAX_NODES:
            raise ConfigLimitError(f"more than {MAX_NODES:,} values")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigLimitError(f"nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose expanded size is over `MAX_NODES` (aliases share nodes, so
    sizes are memoised per node) or that refers to itself."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            visiting.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_NODES:
                raise ConfigLimitError(
                    f"the document expands to more than {MAX_NODES:,} values once its aliases "
                    "are resolved (an alias bomb?)"
                )
            sizes[key] = size
            continue
        if key in visiting:
            raise ConfigLimitError("an alias refers to the value that contains it")
        visiting.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in visiting:
                raise ConfigLimitError("an alias refers to the value that contains it")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
