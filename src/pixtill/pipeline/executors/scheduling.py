"""How the local executor schedules the rows of one step: a streaming task (rows one at a
time, a bounded reorder buffer) or batch steps (worker threads, ``replicas`` copies, global
steps). See `pixtill.pipeline.executors.local` for the picture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

from pixtill.pipeline.progress import RunSummary
from pixtill.pipeline.row_runner import RowRunner, request_window
from pixtill.pipeline.rows import Item
from pixtill.steps.base import Step
from pixtill.steps.tasks.base import _Task


class StepHost(Protocol):
    """What a step's scheduling needs from the run: its inputs, a way out, the runner."""

    runner: RowRunner
    summary: RunSummary
    reorder_factor: int

    def inputs(self, name: str) -> AsyncIterator[list[Item]]: ...

    async def emit(self, name: str, items: list[Item]) -> None: ...


# -- streaming tasks ---------------------------------------------------------------------------


async def run_streaming(run: StepHost, name: str, step: _Task) -> None:
    """Rows one at a time through ``step``'s model: at most its window in flight, at most
    ``reorder_factor`` windows of finished rows waiting for an earlier row, out in order."""
    window = request_window(step)
    # Plain counters and an event rather than `asyncio.Semaphore`s, whose
    # `locked()`/`acquire()` cost more than the rest of the loop's per-row bookkeeping.
    in_flight = 0  # started, not finished: at most `window`
    held = 0  # started, not passed on: at most `window` + the reorder buffer
    max_held = window * (1 + run.reorder_factor)
    room = asyncio.Event()
    results: dict[int, list[Item]] = {}
    ready = asyncio.Event()
    failure: list[BaseException] = []
    summary = run.summary.steps[name]
    runner = run.runner

    async def one(index: int, item: Item, looked: Any) -> None:
        nonlocal in_flight
        try:
            results[index] = await runner.task_row(step, item, looked, summary)
        except BaseException as exc:
            failure.append(exc)
        in_flight -= 1
        room.set()
        ready.set()

    async def flush() -> None:
        nonlocal held
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
                held -= flushed
                room.set()
            if out:
                runner.count(step, summary, out, rows_in=flushed)
                await run.emit(name, out)
            if finished and next_index == count:
                return

    count = 0
    finished = False
    flusher = asyncio.create_task(flush())
    running: set[asyncio.Task[None]] = set()
    try:
        async for batch in run.inputs(name):
            for item, looked in zip(batch, runner.lookup(step, batch)):
                while in_flight >= window or held >= max_held:
                    room.clear()
                    await _while_alive(room.wait(), flusher)
                in_flight += 1
                held += 1
                task = asyncio.create_task(one(count, item, looked))
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


# -- batch steps ---------------------------------------------------------------------
async def run_batches(run: StepHost, name: str, step: Step) -> None:
    """Batches of ``input_batch_size`` through ``replicas`` copies in worker threads, out in
    order; a global step gets every row at once."""
    summary = run.summary.steps[name]
    runner = run.runner
    if step.is_global:  # a GlobalStep, or a task whose model uses offline batches
        everything: list[Item] = []
        async for batch in run.inputs(name):
            everything.extend(batch)
        out = await asyncio.to_thread(runner.batch, step, everything, summary)
        # A global step may reorder, drop or merge rows, so its rows cannot be matched with
        # a sibling branch's by position: fresh keys make such a join fail loudly.
        out = [Item((j, -1), item.row) for j, item in enumerate(out)]
        runner.count(step, summary, out, rows_in=len(everything))
        await run.emit(name, out)
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
            return await asyncio.to_thread(runner.batch, replica, items, summary)
        finally:
            free.put_nowait(replica)

    async def drain() -> None:
        while (queued := await in_order.get()) is not None:
            task, rows_in = queued
            out = await task
            runner.count(step, summary, out, rows_in=rows_in)
            await run.emit(name, out)

    drainer = asyncio.create_task(drain())
    spawned: list[asyncio.Task[list[Item]]] = []
    try:
        async for items in _rebatch(run, name, step.input_batch_size):
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


async def _rebatch(run: StepHost, name: str, size: int) -> AsyncIterator[list[Item]]:
    pending: list[Item] = []
    async for batch in run.inputs(name):
        pending.extend(batch)
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


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


def _loaded_copy(step: Step) -> Step:
    replica = step.model_copy(deep=True)
    replica.load()
    return replica
