"""`Pipeline`: the graph of steps a user declares, and `run`, which hands it to an executor."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Iterable, Mapping
from contextvars import Token
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pixtill.errors import PixtillError, StepConfigError
from pixtill.paths import cache_dir as default_cache_dir
from pixtill.pipeline.progress import RunObserver, RunSummary
from pixtill.steps.base import ACTIVE_GRAPH, GeneratorStep, GlobalStep, _Step
from pixtill.steps.generators.data import LoadDataFromIterable
from pixtill.utils.gc_freeze import frozen_heap
from pixtill.utils.memory import limit_malloc_arenas

if TYPE_CHECKING:
    from pixtill.distiset import Distiset

_log = logging.getLogger("pixtill.pipeline")


class PipelineError(PixtillError, RuntimeError):
    """The run as a whole failed (a worker died, nothing was produced...)."""


class StepLoadError(PipelineError):
    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        super().__init__(f"step {step!r} failed to load: {type(cause).__name__}: {cause}")


class Pipeline:
    """A DAG of steps declared in a ``with Pipeline(name=...) as p:`` block.

    Steps created inside the block join it; ``a >> b``, ``a >> [b, c]`` and ``[b, c] >> d``
    connect them. ``run`` executes the graph and returns a `Distiset` with one dataset per
    leaf step.
    """

    def __init__(
        self,
        name: str,
        description: str | None = None,
        *,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "pipelines" / name
        self.steps: dict[str, _Step] = {}
        self.edges: list[tuple[str, str]] = []
        self._token: Token[Any] | None = None
        self.last_summary: RunSummary | None = None

    # -- declaration ---------------------------------------------------------------------
    def __enter__(self) -> Pipeline:
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

    # -- structure -----------------------------------------------------------------------
    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def successors(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    @property
    def roots(self) -> list[str]:
        return [n for n in self.steps if not self.predecessors(n)]

    @property
    def leaves(self) -> list[str]:
        return [n for n in self.steps if not self.successors(n)]

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
            if isinstance(step, GlobalStep) and len(preds) > 1:
                raise StepConfigError(f"global step {name!r} must have a single input")

    # -- configuration files ---------------------------------------------------------------
    def dump(self, path: str | Path) -> Path:
        """Save the pipeline as YAML (``.yaml``/``.yml``) or JSON; secrets are never written."""
        from pixtill.pipeline.serialization import dump_pipeline

        return dump_pipeline(self, path)

    @classmethod
    def from_file(cls, path: str | Path, *, allow: Iterable[str] = ()) -> Pipeline:
        """Load a saved pipeline. Only pixtill classes, and those named in ``allow``
        (``"package.module.ClassName"``), are instantiated; nothing is evaluated."""
        from pixtill.pipeline.serialization import load_pipeline

        return load_pipeline(path, allow=allow)

    def image_columns(self) -> set[str]:
        return {c for step in self.steps.values() for c in step.image_columns()}

    # -- running -------------------------------------------------------------------------
    def run(
        self,
        parameters: Mapping[str, Mapping[str, Any]] | None = None,
        use_cache: bool = True,
        dataset: Iterable[Mapping[str, Any]] | None = None,
        *,
        output_dir: str | Path | None = None,
        observer: RunObserver | None = None,
        rows_per_shard: int = 1000,
    ) -> Distiset:
        """Run every step; return the leaves' datasets.

        ``parameters`` sets step fields before the run (``{"caption": {"llm":
        {"generation_kwargs": {"temperature": 0.2}}}}``). ``dataset`` feeds the steps that have
        no loader. With ``use_cache`` the rows each step already finished (in an earlier,
        maybe killed, run) are taken from the cache instead of being sent again.
        """
        from pixtill.distiset import Distiset
        from pixtill.pipeline.cache import ResponseCache
        from pixtill.pipeline.local import LocalExecutor, arrow_directory
        from pixtill.run_report import warn_failures

        limit_malloc_arenas()  # before any step starts a thread

        for step_name, values in (parameters or {}).items():
            if step_name not in self.steps:
                raise StepConfigError(
                    f"parameters name an unknown step {step_name!r}; steps: {sorted(self.steps)}"
                )
            apply_parameters(self.steps[step_name], values, where=step_name)
        if dataset is not None:
            self._attach_dataset(dataset)
        self.validate()
        out_dir = Path(output_dir) if output_dir else self.cache_dir / "data"
        for leaf in self.leaves:
            shutil.rmtree(out_dir / leaf, ignore_errors=True)
            shutil.rmtree(arrow_directory(out_dir, leaf), ignore_errors=True)
        cache = ResponseCache(self.cache_dir / "cache.sqlite") if use_cache else None
        loaded: list[_Step] = []
        try:
            for name in self.topological_order():
                step = self.steps[name]
                try:
                    step.load()
                except Exception as exc:
                    raise StepLoadError(name, exc) from exc
                loaded.append(step)
            executor = LocalExecutor(
                self,
                cache=cache,
                output_dir=out_dir,
                observer=observer or RunObserver(),
                rows_per_shard=rows_per_shard,
            )
            with frozen_heap():
                _run_coroutine(executor.run())
            summary = executor.summary
        finally:
            for step in reversed(loaded):
                try:
                    step.unload()
                except Exception:
                    _log.exception("step %r failed to unload", step.name)
            if cache is not None:
                cache.close()
        if sum(summary.leaf_rows.values()) == 0:
            raise PipelineError(
                f"pipeline {self.name!r} produced no rows (did the loader yield any data?)"
            )
        distiset = Distiset.from_arrow_files(executor.arrow_files)
        warn_failures(distiset.failures, _log, pipeline=self.name)
        self.last_summary = summary
        (observer or RunObserver()).run_finished(summary)
        return distiset

    def _attach_dataset(self, dataset: Iterable[Mapping[str, Any]]) -> None:
        attached = self.steps.get("load_dataset")
        if isinstance(attached, LoadDataFromIterable):  # an earlier run(dataset=...)
            attached.data = dataset
            return
        starts = [n for n in self.roots if not isinstance(self.steps[n], GeneratorStep)]
        if not starts:
            raise StepConfigError("`dataset=` was given but every root step is a loader")
        token = ACTIVE_GRAPH.set(self)
        try:
            loader = LoadDataFromIterable(name="load_dataset", data=dataset)
        finally:
            ACTIVE_GRAPH.reset(token)
        for name in starts:
            loader.connect(self.steps[name])


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


def _run_coroutine(coro: Any) -> Any:
    """`asyncio.run`, also from a thread whose loop is already running (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="pixtill-run")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
