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
- JSON gets the same depth and size limits (checked on the parsed value, iteratively);
- a key given twice in one mapping is refused (`DuplicateKeyError`, naming the key and, for
  YAML, its line): PyYAML and ``json`` would silently keep the last value, so a typo'd
  second ``max_retries:`` would quietly win.

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


class DuplicateKeyError(ValueError):
    """A mapping in a configuration file gives the same key twice."""


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
        _check_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_json(text: str) -> Any:
    """``json.loads(text)`` within the limits (depth, values)."""
    if len(text) > MAX_BYTES:
        raise ConfigLimitError(f"the text is over {MAX_BYTES:,} characters")
    try:
        value = json.loads(text, object_pairs_hook=_unique_pairs)
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


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"key {key!r} is given twice in one object")
        result[key] = value
    return result


def _check_duplicate_keys(root: yaml.Node) -> None:
    """Refuse a mapping that gives one scalar key twice (YAML 1.2 forbids it; PyYAML keeps the
    last). Keys brought in by a ``<<`` merge may be overridden, as YAML's merge intends."""
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                previous = first_line.get((key.tag, key.value))
                if previous is not None:
                    raise DuplicateKeyError(
                        f"key {key.value!r} on line {line} is given twice in one mapping "
                        f"(first on line {previous})"
                    )
                first_line[(key.tag, key.value)] = line
        stack.extend(_children(node))
