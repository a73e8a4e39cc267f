"""The streaming executor: every step works as soon as it has rows.

Each step is an asyncio worker reading batches of `Item`s from a bounded queue, so memory depends
on queue, window and batch sizes, never on the dataset size:

- a generator step is pulled batch by batch in a worker thread;
- a task with an async model (`Task.supports_streaming`) sends rows one at a time and keeps up
  to its model's window in flight across batch boundaries; rows leave in input order through a
  reorder buffer as soon as the rows before them are done;
- any other step (local models, plain steps, tasks with a custom `process`) runs batch by batch
  in worker threads, off the event loop, on ``replicas`` copies;
- a leaf step's rows go to a Parquet `ShardWriter`.

With a cache, a task looks each row up before doing any work and stores what it produced as
soon as a row is done, so a killed run resumes without repeating a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixtill.errors import ModelUnavailableError, RowError
from pixtill.images import ImageError, ImageRef, ImageType, coerce_image
from pixtill.pipeline.cache import ResponseCache, row_key, step_signature
from pixtill.pipeline.progress import RequestStats, RunObserver, RunSummary, StepSummary
from pixtill.pipeline.writer import ShardWriter
from pixtill.steps.base import GeneratorStep, GlobalStep, Step, _Step
from pixtill.steps.tasks.base import METADATA_COLUMN, _Task
from pixtill.steps.typing import Row
from pixtill.utils.thread_priority import lower_thread_priority

if TYPE_CHECKING:
    from pixtill.pipeline.dag import Pipeline

_log = logging.getLogger("pixtill.pipeline")
_END = None


Cached = list[dict[str, Any]] | None


@dataclass(frozen=True)
class Item:
    """A row and its position: the generator's row number, plus a generation index per fan-out."""

    key: tuple[int, ...]
    row: Row


class LocalExecutor:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        cache: ResponseCache | None,
        output_dir: Path,
        observer: RunObserver,
        rows_per_shard: int = 1000,
        queue_batches: int = 8,
    ) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self.output_dir = output_dir
        self.observer = observer
        self.rows_per_shard = rows_per_shard
        self.summary = RunSummary(pipeline=pipeline.name, output_dir=output_dir)
        self._queues: dict[str, asyncio.Queue[tuple[str, list[Item] | None]]] = {}
        self._queue_batches = queue_batches
        self._writers: dict[str, ShardWriter] = {}
        # Per leaf, the Arrow copies of its shards, which the run's `Distiset` memory-maps.
        self.arrow_files: dict[str, list[Path]] = {}
        self._write_queues: dict[str, asyncio.Queue[list[Row] | None]] = {}
        # The leaves' writers get their own thread, below the event loop's priority.
        self._write_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pixtill-writer", initializer=lower_thread_priority
        )
        self._uncacheable_warned = False
        self._signatures: dict[str, str] = {}
        self._key_columns: dict[str, list[str]] = {}

    # -- orchestration -------------------------------------------------------------------
    async def run(self) -> dict[str, list[Path]]:
        try:
            return await self._run()
        finally:
            self._write_pool.shutdown(wait=True)  # idle by now: the writer tasks are done

    async def _run(self) -> dict[str, list[Path]]:
        pipeline = self.pipeline
        order = pipeline.topological_order()
        self._queues = {
            name: asyncio.Queue(maxsize=self._queue_batches)
            for name in order
            if pipeline.predecessors(name)
        }
        image_columns = pipeline.image_columns()
        for leaf in pipeline.leaves:
            self._writers[leaf] = ShardWriter(
                self.output_dir / leaf,
                image_columns=image_columns,
                rows_per_shard=self.rows_per_shard,
                arrow_directory=arrow_directory(self.output_dir, leaf),
            )
        for name in order:
            self.summary.steps[name] = StepSummary()
        self.observer.run_started(pipeline.name, order, self._total_rows(), self._request_stats())
        started = time.perf_counter()
        self._write_queues = {leaf: asyncio.Queue(maxsize=64) for leaf in pipeline.leaves}
        workers = {
            asyncio.create_task(self._run_step(name), name=f"pixtill-step-{name}"): name
            for name in order
        }
        for leaf in pipeline.leaves:
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
                        raise _worker_error(workers[task], exc) from exc
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for writer in self._writers.values():
                writer.abort()  # after the writer tasks: none is still writing
            raise
        shards = {}
        for leaf, writer in self._writers.items():
            shards[leaf] = await asyncio.get_running_loop().run_in_executor(
                self._write_pool, writer.close
            )
            self.arrow_files[leaf] = writer.arrow_paths
            self.summary.leaf_rows[leaf] = writer.rows_written
        self.summary.wall_seconds = time.perf_counter() - started
        return shards

    def _total_rows(self) -> int | None:
        totals: list[int | None] = []
        for name in self.pipeline.roots:
            total_rows = getattr(self.pipeline.steps[name], "total_rows", None)
            totals.append(total_rows() if callable(total_rows) else None)
        known = [t for t in totals if t is not None]
        return sum(known) if totals and len(known) == len(totals) else None

    def _request_stats(self) -> dict[str, RequestStats]:
        stats: dict[str, RequestStats] = {}
        for name, step in self.pipeline.steps.items():
            if isinstance(step, _Task):
                stats[name] = step.model.request_stats
        return stats

    async def _run_step(self, name: str) -> None:
        step = self.pipeline.steps[name]
        if isinstance(step, GeneratorStep):
            await self._run_generator(name, step)
        elif isinstance(step, _Task) and step.supports_streaming and step.replicas == 1:
            await self._run_streaming(name, step)
        elif isinstance(step, Step):
            await self._run_batches(name, step)
        else:
            raise TypeError(f"step {name!r} is neither a Step nor a GeneratorStep")
        self.observer.step_finished(name, self.summary.steps[name])
        for successor in self.pipeline.successors(name):
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

    async def _emit(self, name: str, items: list[Item]) -> None:
        if not items:
            return
        summary = self.summary.steps[name]
        summary.rows_out += len(items)
        successors = self.pipeline.successors(name)
        if not successors:
            await self._write_queues[name].put([item.row for item in items])
            return
        for position, successor in enumerate(successors):
            batch = items if position == 0 else [Item(i.key, dict(i.row)) for i in items]
            await self._queues[successor].put((name, batch))

    async def _inputs(self, name: str) -> AsyncIterator[list[Item]]:
        """Batches for step ``name``; rows from several predecessors are joined by key."""
        predecessors = self.pipeline.predecessors(name)
        queue = self._queues[name]
        open_inputs = len(predecessors)
        joining: dict[tuple[int, ...], dict[str, Row]] = {}
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
                    joined.append(Item(item.key, _merge_rows([parts[p] for p in predecessors])))
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
        batches = step.process_applying_mappings(0)
        position = 0
        while True:
            produced = await asyncio.to_thread(next, batches, None)
            if produced is None:
                return
            rows, last = produced
            items = [Item((position + i,), row) for i, row in enumerate(rows)]
            position += len(rows)
            summary = self.summary.steps[name]
            summary.rows_in += len(rows)
            self.observer.rows_done(name, summary)
            await self._emit(name, items)
            if last:
                return

    # -- streaming tasks -----------------------------------------------------------------
    async def _run_streaming(self, name: str, step: _Task) -> None:
        window = int(getattr(step.model, "max_concurrent_requests", 64))
        # Rows started and not yet passed on. A plain counter and an event rather than an
        # `asyncio.Semaphore`, whose `locked()`/`acquire()` cost more than the rest of the
        # loop's per-row bookkeeping.
        free = window + step.input_batch_size
        room = asyncio.Event()
        results: dict[int, list[Item]] = {}
        ready = asyncio.Event()
        failure: list[BaseException] = []
        signature = self._signature(step)
        summary = self.summary.steps[name]

        async def one(index: int, item: Item, row: Row, key: str, cached: Cached) -> None:
            try:
                rows = await self._task_row(step, signature, item, row, key, cached)
                results[index] = _fan_out(item, rows)
            except BaseException as exc:
                failure.append(exc)
            ready.set()

        async def flush(total: Callable[[], int | None]) -> None:
            nonlocal free
            next_index = 0
            while True:
                await ready.wait()
                ready.clear()
                if failure:
                    raise failure[0]
                out: list[Item] = []
                flushed = 0
                while next_index in results:
                    out.extend(results.pop(next_index))
                    next_index += 1
                    flushed += 1
                if flushed:
                    free += flushed
                    room.set()
                if out:
                    self._count(name, step, summary, out, rows_in=flushed)
                    await self._emit(name, out)
                if next_index == total():
                    return

        count = 0
        finished = False
        flusher = asyncio.create_task(flush(lambda: count if finished else None))
        running: set[asyncio.Task[None]] = set()
        try:
            async for batch in self._inputs(name):
                for item, (row, key, cached) in zip(batch, self._lookup(step, signature, batch)):
                    while free == 0:
                        room.clear()
                        await _while_alive(room.wait(), flusher)
                    free -= 1
                    task = asyncio.create_task(one(count, item, row, key, cached))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    count += 1
            finished = True
            ready.set()
            await flusher
        finally:
            flusher.cancel()
            for task in list(running):
                task.cancel()

    def _lookup(
        self, step: _Task, signature: str, batch: list[Item]
    ) -> list[tuple[Row, str, Cached]]:
        """Each item's row as the step sees it, its cache key and its cached rows (one query
        for the whole batch)."""
        rows = [_with_image_refs(step, step._rename_inputs([item.row])[0]) for item in batch]
        if not self.cache:
            return [(row, "", None) for row in rows]
        keys = [self._row_key(step, row) for row in rows]
        found = self.cache.get_many(signature, keys)
        return [(row, key, found.get(key)) for row, key in zip(rows, keys)]

    async def _task_row(
        self, step: _Task, signature: str, item: Item, row: Row, key: str, cached: Cached
    ) -> list[Row]:
        if cached is not None:
            rows = self._from_cache(step, row, cached)
        else:
            try:
                formatted = step.prepare_row(row, item.key[0])
            except RowError as exc:
                step.warn_row_failure(str(exc))
                rows = step.rows_from_error(row, str(exc))
            else:
                results = await step.agenerate_results(formatted)
                rows = step.rows_from_results(row, formatted, results, item.key[0])
                self._store(step, signature, key, row, rows)
        return step._rename_outputs(rows, output_mappings=False)

    def _signature(self, step: _Task) -> str:
        """The step's cache signature, computed once per step (replicas share their step's)."""
        if self.cache is None:
            return ""
        if step.name not in self._signatures:
            self._signatures[step.name] = step_signature(step)
        return self._signatures[step.name]

    def _from_cache(self, step: _Task, row: Row, cached: list[dict[str, Any]]) -> list[Row]:
        self.summary.steps[step.name].cached += 1
        return [_apply_delta(row, delta) for delta in cached]

    def _store(self, step: _Task, signature: str, key: str, row: Row, rows: list[Row]) -> None:
        """Cache what the step added to a row, unless the row failed (failures are retried on
        the next run) or holds a value the cache cannot store (then it is just not cached)."""
        if self.cache is None:
            return
        if any(f"error_{step.name}" in (r.get(METADATA_COLUMN) or {}) for r in rows):
            return
        outputs = _output_columns(step)
        try:
            self.cache.put(signature, key, [_delta(row, r, outputs) for r in rows])
        except TypeError as exc:
            if not self._uncacheable_warned:
                self._uncacheable_warned = True
                _log.warning("step %r: some rows are not cached: %s", step.name, exc)

    def _row_key(self, step: _Step, row: Row) -> str:
        columns = self._key_columns.get(step.name)
        if columns is None:  # once per step: a step's inputs do not change during a run
            columns = self._key_columns[step.name] = list(step.get_inputs())
        return row_key(row, columns)

    # -- batch steps ---------------------------------------------------------------------
    async def _run_batches(self, name: str, step: Step) -> None:
        summary = self.summary.steps[name]
        if isinstance(step, GlobalStep):
            everything: list[Item] = []
            async for batch in self._inputs(name):
                everything.extend(batch)
            out = await asyncio.to_thread(self._process_batch, step, everything)
            # A global step may reorder, drop or merge rows, so its rows cannot be matched with
            # a sibling branch's by position: fresh keys make such a join fail loudly.
            out = [Item((j, -1), item.row) for j, item in enumerate(out)]
            self._count(name, step, summary, out, rows_in=len(everything))
            await self._emit(name, out)
            return
        replicas = [step] + [
            await asyncio.to_thread(_loaded_copy, step) for _ in range(step.replicas - 1)
        ]
        free: asyncio.Queue[Step] = asyncio.Queue()
        for replica in replicas:
            free.put_nowait(replica)
        in_order: asyncio.Queue[tuple[asyncio.Task[list[Item]], int] | None] = asyncio.Queue(
            maxsize=len(replicas)
        )

        async def work(replica: Step, items: list[Item]) -> list[Item]:
            try:
                return await asyncio.to_thread(self._process_batch, replica, items)
            finally:
                free.put_nowait(replica)

        async def drain() -> None:
            while (queued := await in_order.get()) is not None:
                task, rows_in = queued
                out = await task
                self._count(name, step, summary, out, rows_in=rows_in)
                await self._emit(name, out)

        drainer = asyncio.create_task(drain())
        spawned: list[asyncio.Task[list[Item]]] = []
        try:
            async for items in self._rebatch(name, step.input_batch_size):
                replica = await free.get()
                task = asyncio.create_task(work(replica, items))
                spawned.append(task)
                await _while_alive(in_order.put((task, len(items))), drainer)
            await _while_alive(in_order.put(None), drainer)
            await drainer
        finally:
            drainer.cancel()
            # Worker threads cannot be cancelled: wait for them before unloading the replicas
            # they use (unloading an async model stops the loop a thread may be waiting on).
            await asyncio.shield(asyncio.gather(drainer, *spawned, return_exceptions=True))
            for replica in replicas[1:]:
                replica.unload()

    async def _rebatch(self, name: str, size: int) -> AsyncIterator[list[Item]]:
        pending: list[Item] = []
        async for batch in self._inputs(name):
            pending.extend(batch)
            while len(pending) >= size:
                yield pending[:size]
                pending = pending[size:]
        if pending:
            yield pending

    def _process_batch(self, step: Step, items: list[Item]) -> list[Item]:
        """Runs in a worker thread."""
        if isinstance(step, _Task) and type(step).process is _Task.process:
            return self._task_batch(step, items)
        rows = [item.row for item in items]
        out = [row for batch in step.process_applying_mappings(rows) for row in batch]
        if len(out) == len(items):
            return [Item(item.key, row) for item, row in zip(items, out)]
        first = items[0].key if items else (0,)
        return [Item((*first, j), row) for j, row in enumerate(out)]

    def _task_batch(self, step: _Task, items: list[Item]) -> list[Item]:
        signature = self._signature(step)
        looked_up = self._lookup(step, signature, items)
        todo = [i for i, (_, _, cached) in enumerate(looked_up) if cached is None]
        produced = step.process_rows(
            [looked_up[i][0] for i in todo], [items[i].key[0] for i in todo]
        )
        by_index = dict(zip(todo, produced))
        out: list[Item] = []
        for i, (item, (row, key, cached)) in enumerate(zip(items, looked_up)):
            if cached is None:
                new_rows = by_index[i]
                self._store(step, signature, key, row, new_rows)
            else:
                new_rows = self._from_cache(step, row, cached)
            out.extend(_fan_out(item, step._rename_outputs(new_rows, output_mappings=False)))
        return out

    # -- accounting ----------------------------------------------------------------------
    def _count(
        self,
        name: str,
        step: _Step,
        summary: StepSummary,
        out: Sequence[Item],
        rows_in: int,
    ) -> None:
        summary.rows_in += rows_in
        if isinstance(step, _Task):
            for item in out:
                meta = item.row.get(METADATA_COLUMN) or {}
                if f"error_{name}" in meta:
                    summary.failed += 1
                stats = meta.get(f"statistics_{name}")
                for entry in stats if isinstance(stats, list) else [stats]:
                    if isinstance(entry, dict):
                        summary.input_tokens += int(entry.get("input_tokens", 0))
                        summary.output_tokens += int(entry.get("output_tokens", 0))
        self.observer.rows_done(name, summary)


async def _while_alive(awaitable: Awaitable[Any], helper: asyncio.Task[None]) -> None:
    """Await ``awaitable`` unless ``helper`` dies first, in which case raise its error.

    A worker blocked on a full buffer must not wait forever for a helper that has crashed.
    """
    waiting = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({waiting, helper}, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
        helper.result()
        raise RuntimeError("helper task ended early")


def arrow_directory(output_dir: Path, leaf: str) -> Path:
    """Where a leaf's Arrow copies go: beside the Parquet shards, in a hidden folder."""
    return output_dir / ".arrow" / leaf


def _worker_error(step: str, exc: BaseException) -> Exception:
    from pixtill.pipeline.dag import PipelineError

    return PipelineError(f"step {step!r} failed: {type(exc).__name__}: {exc}")


def _with_image_refs(step: _Step, row: Row) -> Row:
    """The row with the step's image inputs decoded into `ImageRef`s, once.

    The cache key, the task and the Parquet writer then share one decoded image instead of
    each decoding the base64 again. A value that does not coerce is left for the task to
    report as a row error.
    """
    image_type: ImageType = getattr(step, "image_type", "auto")
    step_side = {data: own for own, data in step.input_mappings.items()}
    out = row
    for data_column in step.image_columns():
        column = step_side.get(data_column, data_column)  # the row already has step-side names
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            refs = [_shared_ref(v, image_type) for v in value]
            new: Any = refs if any(r is not v for r, v in zip(refs, value)) else value
        else:
            new = _shared_ref(value, image_type)
        if new is not value:
            if out is row:
                out = dict(row)
            out[column] = new
    return out


def _shared_ref(value: Any, image_type: ImageType) -> Any:
    """``value`` as an `ImageRef`, or unchanged: a URL (nothing to share, and the dataset must
    not fetch it) or a value that does not coerce (the task reports it as a row error)."""
    if isinstance(value, ImageRef):
        return value
    try:
        ref = coerce_image(value, image_type)
    except ImageError:
        return value
    return value if ref.kind == "url" else ref


def _fan_out(item: Item, rows: list[Row]) -> list[Item]:
    if len(rows) == 1:
        return [Item(item.key, rows[0])]
    return [Item((*item.key, k), row) for k, row in enumerate(rows)]


def _output_columns(step: _Task) -> frozenset[str]:
    """The dataset columns a task writes (after its output mappings)."""
    names = {*step.get_outputs(), "model_name"}
    return frozenset(step.output_mappings.get(n, n) for n in names)


def _delta(before: Row, after: Row, outputs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What a step added or changed in a row: all the cache needs to keep. The step's own
    output columns always count, even when the value is the very object it replaced."""
    delta = {
        k: v for k, v in after.items() if k in outputs or k not in before or before[k] is not v
    }
    meta_before = before.get(METADATA_COLUMN) or {}
    if METADATA_COLUMN in delta:
        delta[METADATA_COLUMN] = {
            k: v for k, v in delta[METADATA_COLUMN].items() if k not in meta_before
        }
    return delta


def _apply_delta(row: Row, delta: dict[str, Any]) -> Row:
    out = {**row, **delta}
    if METADATA_COLUMN in delta:
        out[METADATA_COLUMN] = {**(row.get(METADATA_COLUMN) or {}), **delta[METADATA_COLUMN]}
    return out


def _merge_rows(rows: list[Row]) -> Row:
    merged: Row = {}
    meta: dict[str, Any] = {}
    for row in rows:
        merged.update(row)
        meta.update(row.get(METADATA_COLUMN) or {})
    if meta:
        merged[METADATA_COLUMN] = meta
    return merged


def _loaded_copy(step: Step) -> Step:
    replica = step.model_copy(deep=True)
    replica.load()
    return replica


def __getattr__(name: str) -> object:
    # distilabel users import ``Pipeline`` from ``<package>.pipeline.local``; importing it at
    # the top would be a cycle (the pipeline imports this executor).
    if name == "Pipeline":
        from pixtill.pipeline.dag import Pipeline

        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
