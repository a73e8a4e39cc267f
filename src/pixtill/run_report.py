"""What went wrong in a run, for people: rate-limited per-row warnings while it runs, and a
summary of failed rows grouped by cause when it ends.

The summary is computed from the ``error_<step>`` entries of the ``pixtill_metadata`` column
(and their ``failure_<step>`` companions, see `failure_record`) only, so it works on any
executor's result (a `Distiset`, a dict of datasets, or plain rows). A row counts once, under
the first step that failed it: a later step that fails because its input is missing is a
consequence, not a cause. Causes are grouped by kind (rate-limited, timeout, server...).
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
FAILURE_PREFIX = "failure_"
UNKNOWN_KIND = "unknown"
INPUT_KIND = "input"
OUTPUT_KIND = "output"
MODEL_KIND = "model"
# The first failures of a step are logged one by one, then only a count.
DEFAULT_LOGGED_FAILURES = 5


def failure_record(kind: str, status: int | None = None) -> dict[str, Any]:
    """What ``pixtill_metadata["failure_<step>"]`` holds next to a row's ``error_<step>``
    message: the failure as data, ``{"kind": ..., "status": ...}``.

    ``kind``: a request failure's kind (``"rate_limited"``, ``"timeout"``, ``"connection"``,
    ``"bad_request"``, ``"auth"``, ``"server"``, ``"invalid_response"``: see
    `pixtill.models.http.ErrorKind`), ``"model"`` for another failure of the model call,
    ``"input"`` when the row's own input could not be used, ``"output"`` when the task could
    not use the model's answer (``format_output`` failed). ``status``: the HTTP status when
    there was one, else None. (Not an ``error_`` key: those hold messages only, as in
    distilabel.)"""
    return {"kind": kind, "status": status}


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
    """Rows that failed in ``step`` for one ``cause``; ``example`` is one full message,
    ``kind`` the failure's kind (see `failure_record`; ``"unknown"`` when the row does not
    say) and ``status`` its HTTP status, if any."""

    step: str
    cause: str
    count: int
    example: str
    kind: str = UNKNOWN_KIND
    status: int | None = None


@dataclass
class FailureSummary:
    """How many rows a run produced and how many failed, by step and cause.

    ``rows``: rows in the result (all leaves); ``failed``: rows with an ``error_<step>`` entry;
    ``groups``: the causes, grouped by kind (the most frequent kind first), the most frequent
    cause first within a kind.
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

    @property
    def by_kind(self) -> dict[str, int]:
        """Failed rows per kind (``{"rate_limited": 8, "timeout": 2}``), most frequent first."""
        counts: Counter[str] = Counter()
        for group in self.groups:
            counts[group.kind] += group.count
        return dict(counts.most_common())

    def __bool__(self) -> bool:
        return self.failed > 0

    def format(self, max_groups: int = 10) -> str:
        """Lines for people: the totals, then per kind a line with its count and HTTP
        statuses, and under it one line per cause (``max_groups`` cause lines at most)."""
        if not self.failed:
            return f"All {self.rows} rows succeeded."
        lines = [f"{self.failed} of {self.rows} rows failed ({self.failure_rate:.1%}):"]
        kinds = self.by_kind
        kind = None
        for group in self.groups[:max_groups]:
            if group.kind != kind:
                kind = group.kind
                lines.append(f"  {_kind_heading(kind, self.groups, kinds[kind])}")
            lines.append(f"    {group.count} x step {group.step!r}: {group.cause}")
        hidden = self.groups[max_groups:]
        if hidden:
            rest = sum(g.count for g in hidden)
            lines.append(f"  ... {rest} more rows in {len(hidden)} other causes")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _kind_heading(kind: str, groups: list[FailureGroup], count: int) -> str:
    statuses = sorted({g.status for g in groups if g.kind == kind and g.status is not None})
    http = f" (HTTP {', '.join(map(str, statuses))})" if statuses else ""
    return f"{kind}{http}: {count} row{'' if count == 1 else 's'}"


def _failure_of(meta: Mapping[str, Any], step: str) -> tuple[str, int | None]:
    """The kind and HTTP status ``failure_<step>`` records for the row (the first failed
    generation's when they are grouped); ``("unknown", None)`` when it records none."""
    record = meta.get(FAILURE_PREFIX + step)
    if isinstance(record, list):
        record = next((r for r in record if isinstance(r, Mapping)), None)
    if not isinstance(record, Mapping):
        return UNKNOWN_KIND, None
    kind = record.get("kind")
    status = record.get("status")
    return (
        kind if isinstance(kind, str) and kind else UNKNOWN_KIND,
        status if isinstance(status, int) and not isinstance(status, bool) else None,
    )


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
    names += [f.name for f in column.type if f.name.startswith(FAILURE_PREFIX)]
    fields = {name: column.combine_chunks().field(name).to_pylist() for name in names}
    return ({name: fields[name][i] for name in names} for i in range(len(column)))


def summarize_failures(source: Any) -> FailureSummary:
    """Count failed rows by kind, step and cause (see the module docs for what ``source`` may
    be)."""
    counts: Counter[tuple[str, int | None, str, str]] = Counter()
    examples: dict[tuple[str, int | None, str, str], str] = {}
    rows = failed = 0
    for meta in _metadata_of(source):
        rows += 1
        first = next(iter(_row_errors(meta)), None)
        if first is None:
            continue
        failed += 1
        step, message = first
        key = (*_failure_of(meta, step), step, cause_of(message))
        counts[key] += 1
        examples.setdefault(key, message)
    per_kind: Counter[str] = Counter()
    for (kind, *_), count in counts.items():
        per_kind[kind] += count
    order = {kind: rank for rank, (kind, _) in enumerate(per_kind.most_common())}
    ranked = sorted(counts.items(), key=lambda item: (order[item[0][0]], -item[1]))
    groups = []
    for key, count in ranked:
        kind, status, step, cause = key
        groups.append(FailureGroup(step, cause, count, examples[key], kind, status))
    return FailureSummary(rows=rows, failed=failed, groups=groups)


def warn_failures(
    summary: FailureSummary, logger: logging.Logger | None = None, *, pipeline: str = ""
) -> FailureSummary:
    """Log ``summary`` as one warning (the totals and the causes) when rows failed; returns it."""
    if summary.failed:
        name = f"pipeline {pipeline!r}: " if pipeline else ""
        (logger or logging.getLogger("pixtill")).warning("%s%s", name, summary.format())
    return summary
