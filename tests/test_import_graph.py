"""No import circle anywhere in the package, function-level imports included.

The graph is built from the source with `ast` (nothing is imported): an edge ``a -> b`` for
every ``import``/``from ... import`` in module ``a`` that names module ``b`` (or a name inside
it), wherever the statement stands: at the top, inside a function, or under ``TYPE_CHECKING``.
A package's ``__init__`` counts as a module of its own: importing ``pixtill.a.b`` is an edge to
``pixtill.a.b``, not to every package above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pixtill

PACKAGE = Path(pixtill.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the pixtill modules it imports (a package's ``__init__`` counts as the package)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # ``from a.b import c``: the module a.b.c if there is one, else a.b itself
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                # the longest module that the dotted name starts with ("a.b.C" -> "a.b")
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_package_has_no_import_circle() -> None:
    assert find_cycles(import_graph()) == []


def test_the_check_sees_a_circle_hidden_in_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_local_backends_share_torch_support_not_an_llm_module() -> None:
    """Diffusers backends and CLIPScore reach torch through `pixtill.models.torch_support`, so
    an image model or a quality step never depends on the transformers LLM backend."""
    graph = import_graph()
    llm_backends = {"pixtill.models.llms.transformers", "pixtill.models.llms.vllm"}
    leaks = {
        module: sorted(graph[module] & llm_backends)
        for module in graph
        if module.startswith(("pixtill.models.", "pixtill.steps."))
        and not module.startswith("pixtill.models.llms")
        and graph[module] & llm_backends
    }
    assert leaks == {}
    assert "pixtill.models.torch_support" in graph["pixtill.models.diffusers_runtime"]
    assert "pixtill.models.torch_support" in graph["pixtill.steps.quality.clip_score"]
