"""`LocalExecutor`: every step of the graph as an asyncio worker in this process.

It only schedules; what happens to a row is the `RowRunner`'s. Each step reads batches of
`Item`s from a bounded queue, so memory depends on queue, window and batch sizes, never on the
dataset size:

- a generator step is pulled batch by batch in a worker thread;
- a streaming task (an async model) sends rows one at a time and keeps up to its model's
  window in flight across batch boundaries. Rows leave in input order through a reorder
  buffer. The buffer is bounded apart from the window: at most ``window`` rows are in flight
  and at most ``reorder_factor * window`` finished rows wait for an earlier one, so a row that
  waits out a retry's backoff does not stop new requests (no head-of-line blocking) until that
  many rows finished behind it;
- any other step (local models, plain steps, tasks with a custom `process`) runs batch by
  batch in worker threads, off the event loop, on ``replicas`` copies;
- a leaf step's rows go to a `ShardWriter` in a writer thread.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pixtill.errors import ModelUnavailableError, RowError
from pixtill.pipeline.errors import worker_error
from pixtill.pipeline.executors.base import RunContext, RunResult, load_steps, unload_steps
from pixtill.pipeline.executors.scheduling import run_batches, run_streaming
from pixtill.pipeline.graph import Graph
from pixtill.pipeline.progress import RequestStats, RunSummary, StepSummary
from pixtill.pipeline.row_runner import RowRunner, streams
from pixtill.pipeline.rows import Item, merge_rows
from pixtill.steps.base import GeneratorStep, Step
from pixtill.steps.tasks.base import _Task
from pixtill.store.shards import ShardWriter

_END = None
T = TypeVar("T")


class LocalExecutor:
    """Runs a graph in this process (see the module docstring). ``queue_batches`` bounds each
    step's input queue; ``reorder_factor`` bounds a streaming task's reorder buffer in
    multiples of its request window."""

    def __init__(self, *, queue_batches: int = 8, reorder_factor: int = 8) -> None:
        if reorder_factor < 1:
            raise ValueError(f"reorder_factor must be at least 1, got {reorder_factor}")
        self.queue_batches = queue_batches
        self.reorder_factor = reorder_factor

    def execute(self, graph: Graph, context: RunContext) -> RunResult:
        order = graph.topological_order()
        for leaf in graph.leaves:
            if context.world_size == 1:
                shutil.rmtree(context.output_dir / leaf, ignore_errors=True)
            else:  # other ranks write beside this one: remove only this rank's files
                for old in (context.output_dir / leaf).glob(f"{context.shard_prefix}-*"):
                    old.unlink()
        for name in graph.roots:  # before `load`: a loader may then read only its part
            root = graph.steps[name]
            if isinstance(root, GeneratorStep):
                root.plan_shard(context.rank, context.world_size)
        loaded = load_steps(graph, order)
        try:
            run = _Run(graph, context, self.queue_batches, self.reorder_factor)
            with context.runtime.session():
                run_coroutine(run.run())
        finally:
            unload_steps(loaded)
        return RunResult(files=run.arrow_files, summary=run.summary)


class _Run:
    """One run's state: queues between steps, writers, the summary."""

    def __init__(
        self, graph: Graph, context: RunContext, queue_batches: int, reorder_factor: int
    ) -> None:
        self.graph = graph
        self.context = context
        self.runner = RowRunner(context.cache, context.observer)
        self.summary = RunSummary(pipeline=graph.name, output_dir=context.output_dir)
        self.reorder_factor = reorder_factor
        self._queue_batches = queue_batches
        self._queues: dict[str, asyncio.Queue[tuple[str, list[Item] | None]]] = {}
        self._writers: dict[str, ShardWriter] = {}
        self.arrow_files: dict[str, list[Path]] = {}
        self._write_queues: dict[str, asyncio.Queue[list[Any] | None]] = {}
        self._write_pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="pixtill-writer",
            initializer=context.runtime.background_thread_init,
        )

    # -- orchestration -------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._write_pool.shutdown(wait=True)  # idle by now: the writer tasks are done

    async def _run(self) -> None:
        graph, context = self.graph, self.context
        order = graph.topological_order()
        self._queues = {
            name: asyncio.Queue(maxsize=self._queue_batches)
            for name in order
            if graph.predecessors(name)
        }
        image_columns = graph.image_columns()
        for leaf in graph.leaves:
            self._writers[leaf] = ShardWriter(
                context.output_dir / leaf,
                image_columns=image_columns,
                rows_per_shard=context.rows_per_shard,
                # Arrow stream files only, which the result memory-maps: each image's
                # bytes are on disk once (Parquet is written on request: `Distiset.to_parquet`).
                arrow_directory=context.output_dir / leaf,
                parquet=False,
                name_prefix=context.shard_prefix,
            )
        for name in order:
            self.summary.steps[name] = StepSummary()
        context.observer.run_started(graph.name, order, self._total_rows(), self._request_stats())
        started = time.perf_counter()
        self._write_queues = {leaf: asyncio.Queue(maxsize=64) for leaf in graph.leaves}
        workers = {
            asyncio.create_task(self._run_step(name), name=f"pixtill-step-{name}"): name
            for name in order
        }
        for leaf in graph.leaves:
            workers[asyncio.create_task(self._run_writer(leaf))] = f"{leaf} (writing)"
        try:
            pending = set(workers)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    exc = task.exception()
                    if isinstance(exc, ModelUnavailableError):
                        raise exc  # names its step and model already: one clear line
                    if exc is not None:
                        raise worker_error(workers[task], exc) from exc
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for writer in self._writers.values():
                writer.abort()  # after the writer tasks: none is still writing
            raise
        loop = asyncio.get_running_loop()
        for leaf, writer in self._writers.items():
            await loop.run_in_executor(self._write_pool, writer.close)
            self.arrow_files[leaf] = writer.arrow_paths
            self.summary.leaf_rows[leaf] = writer.rows_written
        self.summary.wall_seconds = time.perf_counter() - started

    def _total_rows(self) -> int | None:
        totals: list[int | None] = []
        for name in self.graph.roots:
            total_rows = getattr(self.graph.steps[name], "total_rows", None)
            totals.append(total_rows() if callable(total_rows) else None)
        known = [t for t in totals if t is not None]
        return sum(known) if totals and len(known) == len(totals) else None

    def _request_stats(self) -> dict[str, RequestStats]:
        return {
            name: step.model.request_stats
            for name, step in self.graph.steps.items()
            if isinstance(step, _Task)
        }

    async def _run_step(self, name: str) -> None:
        step = self.graph.steps[name]
        if isinstance(step, GeneratorStep):
            await self._run_generator(name, step)
        elif isinstance(step, _Task) and streams(step):
            await run_streaming(self, name, step)
        elif isinstance(step, Step):
            await run_batches(self, name, step)
        else:
            raise TypeError(f"step {name!r} is neither a Step nor a GeneratorStep")
        self.context.observer.step_finished(name, self.summary.steps[name])
        for successor in self.graph.successors(name):
            await self._queues[successor].put((name, _END))
        if name in self._write_queues:
            await self._write_queues[name].put(None)

    async def _run_writer(self, leaf: str) -> None:
        """Write a leaf's rows in a worker thread, apart from the step, so that a step never
        waits on a shard being encoded; batches queued meanwhile are written together."""
        queue = self._write_queues[leaf]
        writer = self._writers[leaf]
        finished = False
        while not finished:
            batch = await queue.get()
            if batch is None:
                return
            rows = list(batch)
            while not queue.empty():
                more = queue.get_nowait()
                if more is None:
                    finished = True
                    break
                rows.extend(more)
            loop = asyncio.get_running_loop()
            writing = loop.run_in_executor(self._write_pool, writer.write, rows)
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # A thread cannot be stopped: let it finish before the run aborts the writer.
                await asyncio.gather(writing, return_exceptions=True)
                raise

    async def emit(self, name: str, items: list[Item]) -> None:
        if not items:
            return
        self.summary.steps[name].rows_out += len(items)
        successors = self.graph.successors(name)
        if not successors:
            await self._write_queues[name].put([item.row for item in items])
            return
        for position, successor in enumerate(successors):
            batch = items if position == 0 else [Item(i.key, dict(i.row)) for i in items]
            await self._queues[successor].put((name, batch))

    async def inputs(self, name: str) -> AsyncIterator[list[Item]]:
        """Batches for step ``name``; rows from several predecessors are joined by key."""
        predecessors = self.graph.predecessors(name)
        queue = self._queues[name]
        open_inputs = len(predecessors)
        joining: dict[tuple[int, ...], dict[str, Any]] = {}
        owned = self.graph.branch_columns(name) if len(predecessors) > 1 else []
        while open_inputs:
            source, batch = await queue.get()
            if batch is _END:
                open_inputs -= 1
                continue
            if len(predecessors) == 1:
                yield batch
                continue
            joined = []
            for item in batch:
                parts = joining.setdefault(item.key, {})
                parts[source] = item.row
                if len(parts) == len(predecessors):
                    del joining[item.key]
                    joined.append(
                        Item(item.key, merge_rows([parts[p] for p in predecessors], owned))
                    )
            if joined:
                yield joined
        if joining:
            raise RowError(
                f"{len(joining)} rows reached step {name!r} from only some of {predecessors}: "
                "a join pairs rows by their position in the loader's output, so every branch "
                "must keep one row per input row in order (put global steps after the join)"
            )

    # -- generators ----------------------------------------------------------------------
    async def _run_generator(self, name: str, step: GeneratorStep) -> None:
        batches = step.process_shard(self.context.rank, self.context.world_size)
        summary = self.summary.steps[name]
        while True:
            produced = await asyncio.to_thread(next, batches, None)
            if produced is None:
                return
            numbers, rows, last = produced
            items = [Item((number,), row) for number, row in zip(numbers, rows)]
            summary.rows_in += len(rows)
            self.context.observer.rows_done(name, summary)
            await self.emit(name, items)
            if last:
                return


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
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
    value: T = result["value"]
    return value


__all__ = ["LocalExecutor", "run_coroutine"]
