"""`RowRunner`: what happens to one row in one step, whatever executor schedules it.

Every executor calls it; executors only decide when and where rows run. For a task it holds:
the cache key of a row (the step's input columns, images by content hash) and the step's
signature, the cache lookup (one query per batch) and store (only what the step added, only
rows that did not fail), prepare -> generate -> rows for one row, fan-out into items, the
input mappings (without losing a shadowed column) and the accounting of rows, failures and
tokens. For any other step, a batch through ``process_applying_mappings``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pixtill.errors import RowError
from pixtill.pipeline.progress import RunObserver, StepSummary
from pixtill.pipeline.rows import (
    Item,
    apply_delta,
    delta,
    fan_out,
    output_columns,
    restore_shadowed,
    to_dataset_view,
    to_step_view,
    with_image_refs,
)
from pixtill.steps.base import Step, _Step
from pixtill.steps.metadata import metadata_of
from pixtill.steps.tasks.base import METADATA_COLUMN, _Task
from pixtill.steps.typing import Row
from pixtill.store.cache import ResponseCache
from pixtill.store.keys import row_key, step_signature

_log = logging.getLogger("pixtill.pipeline")

Cached = list[dict[str, Any]] | None


class Looked:
    """A row as a task sees it (step view, images decoded), its cache key and cached rows."""

    __slots__ = ("cached", "key", "row")

    def __init__(self, row: Row, key: str, cached: Cached) -> None:
        self.row, self.key, self.cached = row, key, cached


def streams(step: _Step) -> bool:
    """Whether a step's rows can be sent one at a time (an async model, the stock `process`)."""
    return isinstance(step, _Task) and step.supports_streaming and step.replicas == 1


def request_window(step: _Task) -> int:
    """How many of a streaming task's rows may be in flight: its model's request window."""
    return int(getattr(step.model, "max_concurrent_requests", 64))


class RowRunner:
    """The per-row semantics of a run (see the module docstring); one per run, shared by its
    steps. ``cache`` None runs without a cache. Thread-safe for different steps; a step's
    batches may run in worker threads."""

    def __init__(self, cache: ResponseCache | None, observer: RunObserver) -> None:
        self.cache = cache
        self.observer = observer
        self._uncacheable_warned = False
        self._signatures: dict[str, str] = {}
        self._key_columns: dict[str, list[str]] = {}
        self._outputs: dict[str, frozenset[str]] = {}

    # -- cache -------------------------------------------------------------------------------
    def signature(self, step: _Task) -> str:
        """The step's cache signature, computed once per step (replicas share their step's)."""
        if self.cache is None:
            return ""
        if step.name not in self._signatures:
            self._signatures[step.name] = step_signature(step)
        return self._signatures[step.name]

    def lookup(self, step: _Task, items: Sequence[Item]) -> list[Looked]:
        """Each item's row as the step sees it, its cache key and its cached rows (one query
        for the whole batch)."""
        rows = [with_image_refs(step, to_step_view(step, item.row)) for item in items]
        if not self.cache:
            return [Looked(row, "", None) for row in rows]
        keys = [self._row_key(step, row) for row in rows]
        found = self.cache.get_many(self.signature(step), keys)
        return [Looked(row, key, found.get(key)) for row, key in zip(rows, keys)]

    def _row_key(self, step: _Step, row: Row) -> str:
        columns = self._key_columns.get(step.name)
        if columns is None:  # once per step: a step's inputs do not change during a run
            columns = self._key_columns[step.name] = list(step.get_inputs())
        return row_key(row, columns)

    def _store(self, step: _Task, key: str, row: Row, rows: list[Row]) -> None:
        """Cache what the step added to a row, unless the row failed (failures are retried on
        the next run) or holds a value the cache cannot store (then it is just not cached)."""
        if self.cache is None:
            return
        if any(f"error_{step.name}" in (r.get(METADATA_COLUMN) or {}) for r in rows):
            return
        outputs = self._output_columns(step)
        try:
            self.cache.put(self.signature(step), key, [delta(row, r, outputs) for r in rows])
        except TypeError as exc:
            if not self._uncacheable_warned:
                self._uncacheable_warned = True
                _log.warning("step %r: some rows are not cached: %s", step.name, exc)

    def _output_columns(self, step: _Task) -> frozenset[str]:
        if step.name not in self._outputs:
            self._outputs[step.name] = output_columns(step)
        return self._outputs[step.name]

    # -- one row, one batch ------------------------------------------------------------------
    async def task_row(
        self, step: _Task, item: Item, looked: Looked, summary: StepSummary
    ) -> list[Item]:
        """One row through a streaming task: from the cache, or prepare -> generate; a row that
        cannot be prepared fails alone. Returns its items (dataset view)."""
        row = looked.row
        if looked.cached is not None:
            summary.cached += 1
            rows = [apply_delta(row, change) for change in looked.cached]
        else:
            try:
                formatted = await step.aprepare_row(row, item.key[0])
            except RowError as exc:
                step.warn_row_failure(str(exc))
                rows = step.rows_from_error(row, str(exc))
            else:
                results = await step.agenerate_results(formatted)
                rows = step.rows_from_results(row, formatted, results, item.key[0])
                self._store(step, looked.key, row, rows)
        return fan_out(item, to_dataset_view(step, item.row, rows, self._output_columns(step)))

    def batch(self, step: Step, items: list[Item], summary: StepSummary) -> list[Item]:
        """A batch through any non-generator step (runs in a worker thread)."""
        if isinstance(step, _Task) and type(step).process is _Task.process:
            return self._task_batch(step, items, summary)
        rows = [item.row for item in items]
        out = [row for batch in step.process_applying_mappings(rows) for row in batch]
        if len(out) == len(items):
            if step.input_mappings:  # one row per row: shadowed columns can be restored
                outputs = output_columns(step)
                out = [
                    restore_shadowed(step, i.row, [dict(r)], outputs)[0] for i, r in zip(items, out)
                ]
            return [Item(item.key, row) for item, row in zip(items, out)]
        first = items[0].key if items else (0,)
        return [Item((*first, j), row) for j, row in enumerate(out)]

    def _task_batch(self, step: _Task, items: list[Item], summary: StepSummary) -> list[Item]:
        looked = self.lookup(step, items)
        todo = [i for i, found in enumerate(looked) if found.cached is None]
        produced = step.process_rows([looked[i].row for i in todo], [items[i].key[0] for i in todo])
        by_index = dict(zip(todo, produced))
        outputs = self._output_columns(step)
        out: list[Item] = []
        for i, (item, found) in enumerate(zip(items, looked)):
            if found.cached is None:
                new_rows = by_index[i]
                self._store(step, found.key, found.row, new_rows)
            else:
                summary.cached += 1
                new_rows = [apply_delta(found.row, change) for change in found.cached]
            out.extend(fan_out(item, to_dataset_view(step, item.row, new_rows, outputs)))
        if self.cache is not None:
            step.results_cached()  # a batch model's state files can go
        return out

    # -- accounting --------------------------------------------------------------------------
    def count(self, step: _Step, summary: StepSummary, out: Sequence[Item], rows_in: int) -> None:
        """Add a batch's rows, failures and tokens to ``summary`` and tell the observer."""
        summary.rows_in += rows_in
        if isinstance(step, _Task):
            name = step.name
            for item in out:
                meta = metadata_of(item.row)
                if f"error_{name}" in meta:
                    summary.failed += 1
                stats = meta.get(f"statistics_{name}")
                for entry in stats if isinstance(stats, list) else [stats]:
                    if isinstance(entry, dict):
                        summary.input_tokens += int(entry.get("input_tokens", 0))
                        summary.output_tokens += int(entry.get("output_tokens", 0))
        self.observer.rows_done(step.name, summary)
