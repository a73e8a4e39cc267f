"""Progress bars for a run, and a closing summary, drawn with rich.

One bar per step: rows done / expected (indeterminate when the loader cannot tell), rows/s,
elapsed time, and, for steps that send requests, the live request counters (in flight, retries,
rate limits) read from the model's ``request_stats`` each time rich redraws. The observer calls
themselves only update counters, so they stay cheap on the executor's loop.

When the output is not a terminal (CI logs, a pipe), rich draws the bars once, at the end, and
this observer prints one plain status line every ``plain_interval`` seconds instead of a
redrawn display, so a log holds a few lines, not thousands.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from pixtill.pipeline.progress import RequestStats, RunObserver, RunSummary, StepSummary

if TYPE_CHECKING:
    from pixtill.pipeline.graph import Graph as Pipeline

__all__ = ["RichProgress", "load_hint"]


def load_hint(path: str | Path) -> str:
    """The Python a user runs to load a saved dataset."""
    return f'from pixtill.distiset import Distiset; Distiset.load_from_disk("{path}")'


class _RowsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done:,} rows")
        return Text(f"{done:,}/{int(task.total):,} rows")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed if task.finished else task.speed
        if speed is None:
            elapsed = task.elapsed or 0.0
            speed = task.completed / elapsed if elapsed > 0 and task.completed else None
        return Text("" if speed is None else f"{speed:,.1f} rows/s", style="progress.data.speed")


class _StatsColumn(ProgressColumn):
    """Failures and cache hits from the step's summary; live request counters from its model."""

    def __init__(self, request_stats: Mapping[str, RequestStats]) -> None:
        super().__init__()
        self._request_stats = request_stats

    def render(self, task: Task) -> Text:
        parts: list[str] = []
        stats = _read_stats(self._request_stats.get(str(task.fields.get("step", ""))))
        if stats is not None and not task.finished:
            parts.append(f"in flight {int(stats.get('in_flight', 0))}")
        if stats is not None and stats.get("retried"):
            parts.append(f"retries {int(stats['retried'])}")
        if stats is not None and stats.get("rate_limited"):
            parts.append(f"429s {int(stats['rate_limited'])}")
        failed = int(task.fields.get("failed", 0))
        if failed:
            parts.append(f"failed {failed}")
        cached = int(task.fields.get("cached", 0))
        if cached:
            parts.append(f"cached {cached}")
        return Text(" · ".join(parts), style="red" if failed else "dim")


def _read_stats(call: RequestStats | None) -> Mapping[str, float | int] | None:
    if call is None:
        return None
    try:
        return call()
    except Exception:  # a progress bar must never take the run down
        return None


class RichProgress(RunObserver):
    """Live progress bars (``transient=False``) and a summary table when the run ends.

    ``pipeline`` (optional) lets the bars know how many rows each step should see (fan-out by
    ``num_generations`` included); without it every bar expects the loader's row count.
    ``dataset_path`` is where the caller saves the dataset; the summary says how to load it.
    ``bars=False`` prints only the summary. Use it as a context manager, or call `close`, so
    the display stops when a run fails.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        pipeline: Pipeline | None = None,
        dataset_path: str | Path | None = None,
        bars: bool = True,
        refresh_per_second: float = 4.0,
        plain_interval: float = 30.0,
    ) -> None:
        self.console = console or Console()
        self.pipeline = pipeline
        self.dataset_path = Path(dataset_path) if dataset_path is not None else None
        self.bars = bars
        self.refresh_per_second = refresh_per_second
        self.plain_interval = plain_interval
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._summaries: dict[str, StepSummary] = {}
        self._last_plain = 0.0
        self._pipeline_name = ""

    # -- observer hooks --------------------------------------------------------------------
    def run_started(
        self,
        pipeline: str,
        steps: list[str],
        total_rows: int | None,
        request_stats: Mapping[str, RequestStats],
    ) -> None:
        self.close()
        self._pipeline_name = pipeline
        self._last_plain = time.monotonic()
        if not self.bars:
            return
        expected = self._expected_rows(steps, total_rows)
        width = max((len(s) for s in steps), default=4)
        progress = Progress(
            TextColumn(f"{{task.description:<{width}}}"),
            BarColumn(bar_width=30),
            _RowsColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            _StatsColumn(dict(request_stats)),
            console=self.console,
            transient=False,
            refresh_per_second=self.refresh_per_second,
        )
        self._tasks = {
            step: progress.add_task(step, total=expected.get(step), step=step, failed=0, cached=0)
            for step in steps
        }
        self._progress = progress
        progress.start()

    def rows_done(self, step: str, summary: StepSummary) -> None:
        self._summaries[step] = summary
        progress, task = self._progress, self._tasks.get(step)
        if progress is not None and task is not None:
            progress.update(
                task, completed=summary.rows_in, failed=summary.failed, cached=summary.cached
            )
        self._maybe_plain_line()

    def step_finished(self, step: str, summary: StepSummary) -> None:
        self._summaries[step] = summary
        progress, task = self._progress, self._tasks.get(step)
        if progress is not None and task is not None:
            # The real count is known now: an indeterminate or over-estimated bar completes.
            progress.update(
                task,
                total=summary.rows_in,
                completed=summary.rows_in,
                failed=summary.failed,
                cached=summary.cached,
            )

    def run_finished(self, summary: RunSummary) -> None:
        self.close()
        self.console.print(self.summary_table(summary))
        for line in self.summary_lines(summary):
            self.console.print(line, soft_wrap=True, markup=False, highlight=False)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the live display (idempotent); the bars stay on screen."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- rendering -------------------------------------------------------------------------
    def summary_table(self, summary: RunSummary) -> Table:
        table = Table(title=f"pipeline {summary.pipeline!r}", title_justify="left")
        headers = ("step", "rows in", "rows out", "failed", "cached", "tokens in", "tokens out")
        for header in headers:
            table.add_column(header, justify="left" if header == "step" else "right")
        for name, step in summary.steps.items():
            table.add_row(
                name,
                f"{step.rows_in:,}",
                f"{step.rows_out:,}",
                Text(f"{step.failed:,}", style="red" if step.failed else ""),
                f"{step.cached:,}",
                f"{step.input_tokens:,}",
                f"{step.output_tokens:,}",
            )
        return table

    def summary_lines(self, summary: RunSummary) -> list[str]:
        tokens_in, tokens_out = summary.tokens
        leaves = ", ".join(f"{leaf}: {rows:,}" for leaf, rows in summary.leaf_rows.items())
        lines = [
            f"rows per leaf: {leaves or 'none'}",
            f"failed rows: {summary.failed:,}   tokens: {tokens_in:,} in / {tokens_out:,} out",
            f"wall time: {format_duration(summary.wall_seconds)}",
        ]
        if self.dataset_path is not None:
            lines.append(f"dataset: {self.dataset_path}")
            lines.append(f"load it with: {load_hint(self.dataset_path)}")
        elif summary.output_dir is not None:
            lines.append(f"dataset: {summary.output_dir}")
            lines.append(f"load it with: {load_hint(summary.output_dir)}")
        return lines

    def _expected_rows(self, steps: list[str], total_rows: int | None) -> dict[str, int | None]:
        if self.pipeline is None:
            return dict.fromkeys(steps, total_rows)
        return expected_rows(self.pipeline, steps, total_rows)

    def _maybe_plain_line(self) -> None:
        """Outside a terminal, one status line now and then instead of a redrawn display."""
        if self.console.is_terminal or self.plain_interval <= 0:
            return
        now = time.monotonic()
        if now - self._last_plain < self.plain_interval:
            return
        self._last_plain = now
        parts = []
        for name, summary in self._summaries.items():
            part = f"{name} {summary.rows_in:,}"
            if summary.failed:
                part += f" ({summary.failed:,} failed)"
            parts.append(part)
        self.console.print(
            f"[{self._pipeline_name}] rows done: " + ", ".join(parts),
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


def expected_rows(
    pipeline: Pipeline, steps: list[str], total_rows: int | None
) -> dict[str, int | None]:
    """Input rows each step should see: the loaders' counts, times upstream fan-out.

    A plain step is assumed to keep its row count, a global step's output is unknown.
    """
    from pixtill.steps.base import GeneratorStep, GlobalStep
    from pixtill.steps.tasks.base import _Task

    roots = [n for n in steps if not pipeline.predecessors(n)]
    produced: dict[str, int | None] = {}
    expected: dict[str, int | None] = {}
    for name in steps:
        step = pipeline.steps.get(name)
        predecessors = pipeline.predecessors(name)
        if isinstance(step, GeneratorStep):
            if len(roots) == 1:
                count = total_rows
            else:
                counter = getattr(step, "total_rows", None)
                try:
                    count = counter() if callable(counter) else None
                except Exception:
                    count = None
            expected[name] = produced[name] = count if isinstance(count, int) else None
            continue
        rows_in = produced.get(predecessors[0]) if predecessors else total_rows
        expected[name] = rows_in
        if rows_in is None or isinstance(step, GlobalStep):
            produced[name] = None
        elif isinstance(step, _Task) and not step.group_generations:
            produced[name] = rows_in * step.num_generations
        else:
            produced[name] = rows_in
    return expected


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
