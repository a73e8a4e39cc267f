"""What went wrong in a run, for people: rate-limited per-row warnings while it runs, and a
summary of failed rows grouped by cause when it ends.

The summary is computed from the ``error_<step>`` entries of the ``pixtill_metadata`` column
only, so it works on any executor's result (a `Distiset`, a dict of datasets, or plain rows).
A row counts once, under the first step that failed it: a later step that fails because its
input is missing is a consequence, not a cause.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixtill.errors import split_location

METADATA_COLUMN = "pixtill_metadata"
_ERROR_PREFIX = "error_"
# The first failures of a step are logged one by one, then only a count.
DEFAULT_LOGGED_FAILURES = 5


class FailureWarnings:
    """Logs a step's row failures as warnings: the first ``first`` one by one, then one line
    saying that the rest are counted in the run's summary. Thread-safe."""

    def __init__(
        self, logger: logging.Logger, step: str, first: int = DEFAULT_LOGGED_FAILURES
    ) -> None:
        self._logger = logger
        self._step = step
        self._first = first
        self._count = 0
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> FailureWarnings:
        return self  # replicas of a step share one count

    def __reduce__(self) -> tuple[Any, ...]:  # a fresh count in another process
        return (type(self), (self._logger, self._step, self._first))

    @property
    def count(self) -> int:
        """How many failures were reported so far."""
        return self._count

    def warn(self, message: str) -> None:
        with self._lock:
            self._count += 1
            count = self._count
        if count <= self._first:
            self._logger.warning("%s", message)
        elif count == self._first + 1:
            self._logger.warning(
                "step %r: more rows failed; further failures are not logged one by one "
                "(the run's summary groups them by cause)",
                self._step,
            )


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)'\"]+", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']{24,}'|\"[^\"]{24,}\"")
_ATTEMPTS = re.compile(r"after \d+ attempts?")
_NUMBER = re.compile(r"(?<![A-Za-z0-9])\d{4,}(?![A-Za-z0-9])")


def cause_of(message: str) -> str:
    """The part of a row error that says why, with what varies from row to row (location,
    URLs, long quoted values, attempt counts, long numbers) blanked, so that equal causes group
    together: ``"step 'v': row 3: RequestError: HTTP 500 after 7 attempts (POST http://...)"``
    -> ``"RequestError: HTTP 500 after retries (POST <url>)"``."""
    cause = split_location(message).cause
    cause = _URL.sub("<url>", cause)
    cause = _QUOTED.sub("'...'", cause)
    cause = _ATTEMPTS.sub("after retries", cause)
    cause = _NUMBER.sub("N", cause)
    cause = " ".join(cause.split())
    return cause if len(cause) <= 160 else cause[:157] + "..."


@dataclass
class FailureGroup:
    """Rows that failed in ``step`` for one ``cause``; ``example`` is one full message."""

    step: str
    cause: str
    count: int
    example: str


@dataclass
class FailureSummary:
    """How many rows a run produced and how many failed, by step and cause.

    ``rows``: rows in the result (all leaves); ``failed``: rows with an ``error_<step>`` entry;
    ``groups``: the causes, most frequent first.
    """

    rows: int = 0
    failed: int = 0
    groups: list[FailureGroup] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        """``failed / rows`` (0.0 for an empty result)."""
        return self.failed / self.rows if self.rows else 0.0

    @property
    def by_step(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for group in self.groups:
            counts[group.step] += group.count
        return dict(counts)

    def __bool__(self) -> bool:
        return self.failed > 0

    def format(self, max_groups: int = 10) -> str:
        """Lines for people: the totals, then one line per cause (``max_groups`` at most)."""
        if not self.failed:
            return f"All {self.rows} rows succeeded."
        lines = [f"{self.failed} of {self.rows} rows failed ({self.failure_rate:.1%}):"]
        for group in self.groups[:max_groups]:
            lines.append(f"  {group.count} x step {group.step!r}: {group.cause}")
        hidden = self.groups[max_groups:]
        if hidden:
            rest = sum(g.count for g in hidden)
            lines.append(f"  ... {rest} more rows in {len(hidden)} other causes")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _row_errors(meta: Any) -> Iterable[tuple[str, str]]:
    if not isinstance(meta, Mapping):
        return
    for key, value in meta.items():
        if isinstance(key, str) and key.startswith(_ERROR_PREFIX) and value is not None:
            # Grouped generations keep one error per generation: the first one says why.
            if isinstance(value, list):
                value = next((v for v in value if v is not None), None)
                if value is None:
                    continue
            yield key[len(_ERROR_PREFIX) :], str(value)


def _metadata_of(source: Any) -> Iterable[Any]:
    """The metadata of every row of ``source``: a dataset (only its metadata column is read),
    a mapping of name -> dataset (a `Distiset`), or an iterable of row dicts."""
    if hasattr(source, "column_names") and hasattr(source, "select_columns"):
        if METADATA_COLUMN not in source.column_names:
            return [None] * len(source)
        return _dataset_metadata(source)
    if isinstance(source, Mapping) and not _is_row(source):
        return (meta for value in source.values() for meta in _metadata_of(value))
    return (row.get(METADATA_COLUMN) if isinstance(row, Mapping) else None for row in source)


def _is_row(value: Mapping[Any, Any]) -> bool:
    return METADATA_COLUMN in value


def _dataset_metadata(dataset: Any) -> Iterable[Any]:
    """Only the ``error_*`` fields of a dataset's metadata column, read through Arrow (raw
    inputs and outputs in the same column are never turned into Python objects)."""
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

    column = dataset.data.column(METADATA_COLUMN)
    if not pa.types.is_struct(column.type):
        values: list[Any] = column.to_pylist()
        return iter(values)
    names = [f.name for f in column.type if f.name.startswith(_ERROR_PREFIX)]
    if not names:
        return iter([None] * len(column))
    fields = {name: column.combine_chunks().field(name).to_pylist() for name in names}
    return ({name: fields[name][i] for name in names} for i in range(len(column)))


def summarize_failures(source: Any) -> FailureSummary:
    """Count failed rows by step and cause (see the module docs for what ``source`` may be)."""
    counts: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    rows = failed = 0
    for meta in _metadata_of(source):
        rows += 1
        first = next(iter(_row_errors(meta)), None)
        if first is None:
            continue
        failed += 1
        step, message = first
        key = (step, cause_of(message))
        counts[key] += 1
        examples.setdefault(key, message)
    groups = [
        FailureGroup(step, cause, count, examples[(step, cause)])
        for (step, cause), count in counts.most_common()
    ]
    return FailureSummary(rows=rows, failed=failed, groups=groups)


def warn_failures(
    summary: FailureSummary, logger: logging.Logger | None = None, *, pipeline: str = ""
) -> FailureSummary:
    """Log ``summary`` as one warning (the totals and the causes) when rows failed; returns it."""
    if summary.failed:
        name = f"pipeline {pipeline!r}: " if pipeline else ""
        (logger or logging.getLogger("pixtill")).warning("%s%s", name, summary.format())
    return summary
