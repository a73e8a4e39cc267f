"""`Graph`: the steps of a pipeline and their connections, as a plain object.

Config files build one (`pixtill.pipeline.config_file`), ``with Pipeline(...)`` blocks build
one (a `Pipeline` is a `Graph` that can also run), and executors read one. It knows structure
only: order, roots and leaves, validation and the image columns; nothing here runs a step.

A join (a step with several predecessors) merges one row from each branch. A column that two
branches both write would keep only one branch's value, so `validate` refuses it by name; a
column only one branch writes comes from that branch (`branch_columns`), even when the other
branch still carries an older value of it from above the fork.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from contextvars import Token
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel

from pixtill.errors import StepConfigError
from pixtill.paths import cache_dir as default_cache_dir
from pixtill.paths import check_name, child_path
from pixtill.pipeline.rows import output_columns
from pixtill.steps.base import ACTIVE_GRAPH, GeneratorStep, GlobalStep, _Step
from pixtill.steps.tasks.base import METADATA_COLUMN


class Graph:
    """A DAG of steps declared in a ``with`` block (steps created inside join it) or built by
    `add_step` / `add_edge`. ``cache_dir`` defaults to ``<pixtill cache>/pipelines/<name>``.

    ``name`` names folders (the cache, the default output), so it may only hold letters,
    digits, ``_``, ``-`` and ``.``, never a path separator or ``..``: anything else raises
    `pixtill.paths.UnsafeNameError` (a ``ValueError``) naming it."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.name = check_name(name)
        self.description = description
        self.cache_dir = (
            Path(cache_dir) if cache_dir else child_path(default_cache_dir() / "pipelines", name)
        )
        self.steps: dict[str, _Step] = {}
        self.edges: list[tuple[str, str]] = []
        self._token: Token[Any] | None = None

    # -- declaration -----------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._token = ACTIVE_GRAPH.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            ACTIVE_GRAPH.reset(self._token)
            self._token = None

    def add_step(self, step: _Step) -> None:
        if step.name in self.steps and self.steps[step.name] is not step:
            raise StepConfigError(
                f"pipeline {self.name!r} already has a step named {step.name!r}; "
                "give each step a unique `name`"
            )
        self.steps[step.name] = step
        step._graph = self

    def add_edge(self, upstream: _Step, downstream: _Step) -> None:
        if upstream is downstream:
            raise StepConfigError(f"step {upstream.name!r} cannot feed itself")
        if isinstance(downstream, GeneratorStep):
            raise StepConfigError(f"generator step {downstream.name!r} cannot have inputs")
        edge = (upstream.name, downstream.name)
        if edge not in self.edges:
            self.edges.append(edge)

    def adopt(self, other: Graph) -> None:
        """Take over ``other``'s steps and edges (its steps now belong to this graph)."""
        for step in other.steps.values():
            self.add_step(step)
        self.edges.extend(e for e in other.edges if e not in self.edges)

    # -- structure -------------------------------------------------------------------------
    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def successors(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    @property
    def roots(self) -> list[str]:
        return [n for n in self.steps if not self.predecessors(n)]

    @property
    def leaves(self) -> list[str]:
        """Steps without successors, in the graph's order (topological, ties in declaration
        order): the order of a run's `Distiset`, whichever branch finishes first."""
        try:
            order = self.topological_order()
        except StepConfigError:  # a cycle: `validate` reports it; keep declaration order
            order = list(self.steps)
        return [n for n in order if not self.successors(n)]

    def ancestors(self, name: str) -> set[str]:
        """``name`` and every step above it."""
        seen = {name}
        todo = [name]
        while todo:
            for pred in self.predecessors(todo.pop()):
                if pred not in seen:
                    seen.add(pred)
                    todo.append(pred)
        return seen

    def branch_columns(self, name: str) -> list[frozenset[str]]:
        """For a join step: per predecessor (in `predecessors` order), the dataset columns written
        on that branch only, by steps above it that are not above every other predecessor
        (declared outputs after output mappings; the metadata column is merged, never owned)."""
        preds = self.predecessors(name)
        above = [self.ancestors(p) for p in preds]
        shared = set.intersection(*above) if above else set()
        return [
            frozenset(
                c
                for step in sorted(branch - shared)
                for c in output_columns(self.steps[step])
                if c != METADATA_COLUMN
            )
            for branch in above
        ]

    def topological_order(self) -> list[str]:
        indegree = {n: len(self.predecessors(n)) for n in self.steps}
        ready = [n for n in self.steps if indegree[n] == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for nxt in self.successors(name):
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(self.steps):
            cyclic = sorted(set(self.steps) - set(order))
            raise StepConfigError(f"pipeline {self.name!r} has a cycle through {cyclic}")
        return order

    def validate(self) -> None:
        """Raise `StepConfigError` for a graph that cannot run (no steps, a cycle, a root that
        is not a loader, a join after a fan-out, a join of branches that write the same column,
        a global step with several inputs)."""
        if not self.steps:
            raise StepConfigError(f"pipeline {self.name!r} has no steps")
        self.topological_order()
        for name in self.roots:
            if not isinstance(self.steps[name], GeneratorStep):
                raise StepConfigError(
                    f"step {name!r} has no input: connect a loader to it or pass `dataset=` "
                    "to `run`"
                )
        for name, step in self.steps.items():
            preds = self.predecessors(name)
            if len(preds) > 1:
                for pred in preds:
                    fan = getattr(self.steps[pred], "num_generations", 1)
                    grouped = getattr(self.steps[pred], "group_generations", False)
                    if fan > 1 and not grouped:
                        raise StepConfigError(
                            f"step {name!r} joins rows from {preds}, but {pred!r} makes "
                            f"{fan} rows per input; set group_generations=True on it"
                        )
                self._check_join_columns(name, preds)
            if isinstance(step, GlobalStep) and len(preds) > 1:
                raise StepConfigError(f"global step {name!r} must have a single input")

    def _check_join_columns(self, name: str, preds: list[str]) -> None:
        """Refuse a join whose branches both write a column: one value would be lost."""
        above = [self.ancestors(p) for p in preds]
        for i, j in itertools.combinations(range(len(preds)), 2):
            writers_i = self._writers(above[i] - above[j])
            writers_j = self._writers(above[j] - above[i])
            for column in sorted(set(writers_i) & set(writers_j)):
                first, second = writers_i[column], writers_j[column]
                source = next(
                    (k for k, v in self.steps[second].output_mappings.items() if v == column),
                    column,
                )
                raise StepConfigError(
                    f"step {name!r} joins branches that both write column {column!r}: step "
                    f"{first!r} (through {preds[i]!r}) and step {second!r} (through "
                    f"{preds[j]!r}); the joined row could keep only one of them. Give one a "
                    f"column of its own, e.g. output_mappings={{{source!r}: "
                    f"'{column}_{second}'}} on step {second!r}"
                )

    def _writers(self, names: set[str]) -> dict[str, str]:
        """``{dataset column: the first step (graph order) among names that writes it}``."""
        out: dict[str, str] = {}
        for step in self.topological_order():
            if step in names:
                for column in sorted(output_columns(self.steps[step]) - {METADATA_COLUMN}):
                    out.setdefault(column, step)
        return out

    def image_columns(self) -> set[str]:
        return {c for step in self.steps.values() for c in step.image_columns()}


def apply_parameters(target: BaseModel, values: Mapping[str, Any], *, where: str) -> None:
    """Set fields (recursing into nested models) from a parameters mapping."""
    for key, value in values.items():
        if key not in type(target).model_fields:
            raise StepConfigError(f"{where}: unknown parameter {key!r}")
        current = getattr(target, key)
        if isinstance(current, BaseModel) and isinstance(value, Mapping):
            apply_parameters(current, value, where=f"{where}.{key}")
        else:
            setattr(target, key, value)
