"""The scripts in examples/ and benchmarks/ declare every step inside ``with Pipeline(...)`` (or
pass ``pipeline=``), so running them prints no "Step ... hasn't received a pipeline" warning.

The warning itself stays (distilabel prints it too): it is for users who build a step on its own.
The check reads the scripts with `ast` (benchmarks need servers, so they are not run here).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from pixtill.steps.base import Step

ROOT = Path(__file__).parents[2]
SCRIPTS = sorted([*ROOT.glob("examples/*.py"), *ROOT.glob("benchmarks/*.py")])


def _step_classes(tree: ast.AST) -> set[str]:
    """Names bound in the script to pixtill step classes (imported or subclassed there)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pixtill"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if isinstance(value, type) and issubclass(value, Step):
                    names.add(alias.asname or alias.name)
    for node in ast.walk(tree):  # subclasses defined in the script
        if isinstance(node, ast.ClassDef) and any(
            isinstance(base, ast.Name) and base.id in names for base in node.bases
        ):
            names.add(node.name)
    return names


def _inside_pipeline(parents: list[ast.AST]) -> bool:
    for node in parents:
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("Pipeline"):
                    return True
    return False


def _steps_outside_pipelines(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    steps = _step_classes(tree)
    found: list[str] = []

    def visit(node: ast.AST, parents: list[ast.AST]) -> None:
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in steps
            and not any(k.arg == "pipeline" for k in node.keywords)
            and not _inside_pipeline(parents)
        ):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(...)")
        for child in ast.iter_child_nodes(node):
            visit(child, [*parents, node])

    visit(tree, [])
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_declares_its_steps_in_a_pipeline(script: Path) -> None:
    assert _steps_outside_pipelines(script) == []


def test_the_check_sees_a_step_built_on_its_own(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "from pixtill.pipeline import Pipeline\n"
        "from pixtill.steps.tasks import TextGeneration\n"
        "alone = TextGeneration(llm=None)\n"
        "with Pipeline(name='p'):\n"
        "    inside = TextGeneration(llm=None)\n"
        "given = TextGeneration(llm=None, pipeline=None)\n"
    )
    assert _steps_outside_pipelines(script) == ["script.py:3 TextGeneration(...)"]
