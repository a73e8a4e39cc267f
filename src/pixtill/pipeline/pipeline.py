"""`Pipeline`: the graph a user declares, plus ``run``, ``dump`` and ``from_file``.

``run`` prepares a run (parameters, the ``dataset=`` loader, validation, cache, progress) and
hands the graph to an executor (`pixtill.pipeline.executors`); the dataset it gets back is
returned as a `Distiset`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pixtill.distiset import Distiset
from pixtill.errors import StepConfigError
from pixtill.paths import child_path
from pixtill.paths import data_dir as default_data_dir
from pixtill.pipeline.config_file import dump_pipeline, load_graph
from pixtill.pipeline.errors import PipelineError, StepLoadError
from pixtill.pipeline.executors import Executor, RunContext, resolve_executor
from pixtill.pipeline.graph import Graph, apply_parameters
from pixtill.pipeline.progress import RunObserver, RunSummary
from pixtill.pipeline.rich_progress import RichProgress
from pixtill.pipeline.runtime import Runtime
from pixtill.run_report import warn_failures
from pixtill.steps.base import ACTIVE_GRAPH, GeneratorStep
from pixtill.steps.generators.data import LoadDataFromIterable
from pixtill.store.cache import ResponseCache

__all__ = ["Pipeline", "PipelineError", "StepLoadError", "apply_parameters"]

_log = logging.getLogger("pixtill.pipeline")


class Pipeline(Graph):
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
        super().__init__(name, description, cache_dir=cache_dir)
        self.last_summary: RunSummary | None = None

    # -- configuration files ---------------------------------------------------------------
    def dump(self, path: str | Path) -> Path:
        """Save the pipeline as YAML (``.yaml``/``.yml``) or JSON; secrets are never written."""
        return dump_pipeline(self, path)

    @classmethod
    def from_file(cls, path: str | Path, *, allow: Iterable[str] = ()) -> Pipeline:
        """Load a saved pipeline. Only pixtill classes, and those named in ``allow``
        (``"package.module.ClassName"``), are instantiated; nothing is evaluated. A hostile
        file (an alias bomb, deep nesting, a huge size) is refused with `PipelineConfigError`."""
        return cls.from_graph(load_graph(path, allow=allow))

    @classmethod
    def from_graph(cls, graph: Graph) -> Pipeline:
        """A pipeline over ``graph``'s steps and edges (the steps move to the pipeline)."""
        pipeline = cls(graph.name, graph.description, cache_dir=graph.cache_dir)
        pipeline.adopt(graph)
        return pipeline

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
        executor: str | Executor = "local",
        show_progress: bool = True,
        tune_process: bool = False,
        log_failures: bool = True,
    ) -> Distiset:
        """Run every step; return the leaves' datasets.

        ``parameters`` sets step fields before the run (``{"caption": {"llm":
        {"generation_kwargs": {"temperature": 0.2}}}}``). ``dataset`` feeds the steps that have
        no loader. With ``use_cache`` the rows each step already finished (in an earlier,
        maybe killed, run) are taken from the cache instead of being sent again.

        The dataset is written to ``output_dir`` (default: ``<pixtill data dir>/datasets/<name>``,
        apart from the cache; see `pixtill.paths.data_dir`) as a saved `Distiset`, which the
        returned one memory-maps: ``Distiset.load_from_disk(output_dir)`` reads it back.

        ``executor``: ``"local"`` (this process) or an `Executor`. Progress bars (rich; plain
        lines when the output is not a terminal) are shown unless ``show_progress=False`` or
        an ``observer`` is given. ``tune_process=True`` lets the run tune the whole process
        (malloc arenas, GC freeze, thread priorities: see `pixtill.pipeline.runtime`); the
        CLI does, a library call by default changes nothing in the caller's process.

        When rows failed, their summary (totals and causes, `Distiset.failures`) is logged as
        one warning on the ``pixtill.pipeline`` logger; ``log_failures=False`` leaves that to
        the caller (the CLI prints it itself, once).
        """
        runner = resolve_executor(executor)
        for step_name, values in (parameters or {}).items():
            if step_name not in self.steps:
                raise StepConfigError(
                    f"parameters name an unknown step {step_name!r}; steps: {sorted(self.steps)}"
                )
            apply_parameters(self.steps[step_name], values, where=step_name)
        if dataset is not None:
            self._attach_dataset(dataset)
        self.validate()
        out_dir = (
            Path(output_dir)
            if output_dir
            else child_path(default_data_dir() / "datasets", self.name)
        )
        runtime = Runtime(tune=tune_process)
        cache = (
            ResponseCache(
                self.cache_dir / "cache.sqlite",
                low_priority_writer=runtime.tune,
                # Responses stored by the ranks of an earlier run on Ray count too.
                peers=sorted(self.cache_dir.glob("cache-rank*.sqlite")),
            )
            if use_cache
            else None
        )
        progress: RichProgress | None = None
        if observer is None:
            progress = RichProgress(pipeline=self, bars=show_progress) if show_progress else None
            observer = progress or RunObserver()
        context = RunContext(
            output_dir=out_dir,
            cache=cache,
            observer=observer,
            runtime=runtime,
            rows_per_shard=rows_per_shard,
        )
        try:
            result = runner.execute(self, context)
        finally:
            if progress is not None:
                progress.close()
            if cache is not None:
                cache.close()
        summary = result.summary
        if sum(summary.leaf_rows.values()) == 0:
            raise PipelineError(
                f"pipeline {self.name!r} produced no rows (did the loader yield any data?)"
            )
        distiset = Distiset.from_run_folder(out_dir, result.files)
        if log_failures:
            warn_failures(distiset.failures, _log, pipeline=self.name)
        self.last_summary = summary
        observer.run_finished(summary)
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
