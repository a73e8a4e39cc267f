"""`RayExecutor`: the same graph, its loaders' rows split into ranks that run on a Ray cluster.

The driver (the process that calls ``Pipeline.run``) starts one Ray task per rank. A rank runs
the `LocalExecutor` over its shard of every loader's rows (`GeneratorStep.process_shard`), so the
row semantics are the `RowRunner`'s, exactly as on one machine, and an async task keeps its
model's window full on each worker. Each rank writes its leaves' shards under rank-specific
names (``rank00001-of-00004-data-00000.arrow``) in the shared output folder, and writes its own
cache file beside the run's cache (``cache-rank00001-of-00004.sqlite``) while reading, for the
keys it lacks, every rank cache file already there (of any earlier run, with any number of
ranks) and the run's own cache, read-only. When every rank is done,
the driver brings the shards of a leaf to one schema (`pixtill.store.ranks`) and returns the
same `Distiset` as a local run, rows in input order (rank order is input order for loaders of
known size; a streaming loader's rows come rank by rank).

Failures: a worker that dies is retried by Ray (``max_retries``), and its rank is redone from
its cache, without re-sending a request whose response was stored. A driver killed mid-run and
started again resumes the same way, with the same or another number of ranks, or locally
(a local run reads the rank files too).

Needs the ``ray`` extra (``pip install "pixtill[ray]"``); ``address`` connects to a running
cluster (``"auto"``, ``"ray://host:10001"``), none starts a local one for the run.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path
from typing import Any

from pixtill.pipeline.errors import PipelineError
from pixtill.pipeline.executors.base import RunContext, RunResult
from pixtill.pipeline.executors.local import LocalExecutor
from pixtill.pipeline.executors.ray_resources import rank_options
from pixtill.pipeline.graph import Graph
from pixtill.pipeline.progress import RunObserver, RunSummary, StepSummary
from pixtill.store.cache import ResponseCache
from pixtill.store.ranks import reconcile_files

_SUMMED = ("rows_in", "rows_out", "failed", "cached", "input_tokens", "output_tokens")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PipelineError(
            "the Ray executor needs Ray: pip install 'pixtill[ray]' (or 'ray')"
        ) from exc
    return ray


class RayExecutor:
    """Runs a graph as ``num_workers`` ranks on Ray (default: one per CPU of the cluster).

    ``num_cpus`` / ``num_gpus``: each rank's base share; a step's ``resources=StepResources(
    gpus=1)`` (a local model on a GPU) adds to it, times the step's replicas, so that the
    cluster places ranks where they fit (`rank_options`). ``max_retries``: how
    often Ray redoes a rank whose worker died. ``init_kwargs`` go to ``ray.init`` when this
    executor starts Ray itself (``address`` None and Ray not started yet)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        num_workers: int | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_retries: int = 3,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        self.address = address
        self.num_workers = num_workers
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.init_kwargs = dict(init_kwargs or {})
        self.last_peak_rss_mb: list[float] = []
        """Per rank of the last run, the peak RSS of its worker process (MiB)."""

    def rank_options(self, graph: Graph) -> dict[str, Any]:
        """What each rank's Ray task asks for: ``num_cpus`` / ``num_gpus`` plus every step's
        `StepResources` times its replicas (`pixtill.pipeline.executors.ray_resources`)."""
        return rank_options(graph, num_cpus=self.num_cpus, num_gpus=self.num_gpus)

    def execute(self, graph: Graph, context: RunContext) -> RunResult:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, **self.init_kwargs)
        try:
            return self._execute(ray, graph, context)
        finally:
            if started_here:
                ray.shutdown()

    def _execute(self, ray: Any, graph: Graph, context: RunContext) -> RunResult:
        world_size = self.num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        order = graph.topological_order()
        for leaf in graph.leaves:
            shutil.rmtree(context.output_dir / leaf, ignore_errors=True)
        context.observer.run_started(graph.name, order, None, {})
        started = time.perf_counter()
        run_rank = ray.remote(_run_rank).options(
            **self.rank_options(graph), max_retries=self.max_retries
        )
        cache_path = None if context.cache is None else context.cache.path
        # What travels to the workers: no open cache, no observer (they belong to the driver).
        shipped = RunContext(
            output_dir=context.output_dir,
            cache=None,
            observer=RunObserver(),
            runtime=context.runtime,
            rows_per_shard=context.rows_per_shard,
        )
        try:
            refs = [
                run_rank.remote(graph, rank, world_size, shipped, cache_path)
                for rank in range(world_size)
            ]
        except Exception as exc:  # pickling the graph for the workers failed
            raise PipelineError(
                f"pipeline {graph.name!r} cannot be sent to Ray workers ({type(exc).__name__}: "
                f"{exc}); every step must be picklable: a loader holding a generator cannot be, "
                "use a list, a file or a Hub dataset"
            ) from exc
        try:
            done: list[tuple[RunResult, float]] = ray.get(refs)
        except Exception as exc:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise PipelineError(
                f"a rank of the Ray run failed: {type(exc).__name__}: {exc}"
            ) from exc
        results = [result for result, _ in done]
        self.last_peak_rss_mb = [rss for _, rss in done]
        files = {leaf: [p for r in results for p in r.files.get(leaf, [])] for leaf in graph.leaves}
        for paths in files.values():
            if len(paths) > 1:
                reconcile_files(paths)
        summary = _merged(graph, context, results)
        summary.wall_seconds = time.perf_counter() - started
        for name in order:
            context.observer.step_finished(name, summary.steps[name])
        return RunResult(files=files, summary=summary)


def rank_cache_path(cache_path: Path, rank: int, world_size: int) -> Path:
    """A rank's own cache file, beside the run's."""
    return cache_path.with_name(f"cache-rank{rank:05d}-of-{world_size:05d}.sqlite")


def _run_rank(
    graph: Graph, rank: int, world_size: int, context: RunContext, cache_path: Path | None
) -> tuple[RunResult, float]:
    """One rank, in a Ray worker: the local executor over this rank's shard; also returns the
    worker's peak RSS (MiB)."""
    cache = None
    if cache_path is not None:
        own_path = rank_cache_path(cache_path, rank, world_size)
        peers = [cache_path, *sorted(cache_path.parent.glob("cache-rank*.sqlite"))]
        cache = ResponseCache(own_path, peers=[p for p in peers if p.exists()])
    own = RunContext(
        output_dir=context.output_dir,
        cache=cache,
        observer=RunObserver(),
        runtime=context.runtime,
        rows_per_shard=context.rows_per_shard,
        rank=rank,
        world_size=world_size,
    )
    try:
        result = LocalExecutor().execute(graph, own)
    finally:
        if cache is not None:
            cache.close()
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _merged(graph: Graph, context: RunContext, results: list[RunResult]) -> RunSummary:
    summary = RunSummary(pipeline=graph.name, output_dir=context.output_dir)
    for name in graph.steps:
        total = StepSummary()
        for result in results:
            part = result.summary.steps.get(name)
            if part is not None:
                for field in _SUMMED:
                    setattr(total, field, getattr(total, field) + getattr(part, field))
        summary.steps[name] = total
    for leaf in graph.leaves:
        summary.leaf_rows[leaf] = sum(r.summary.leaf_rows.get(leaf, 0) for r in results)
    return summary
