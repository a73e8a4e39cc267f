"""Quality gates: keep rows by declared conditions, and route the rest to a leaf of their own.

`FilterRows` never drops a row: it marks each one with ``kept`` and ``drop_reason`` (the first
condition the row failed, with the values it read). Two `SelectRows` steps after it split the
stream into the rows kept and the rows dropped, each a leaf (a dataset) of the run, so nothing
vanishes silently::

    gate = FilterRows(name="gate", conditions=["judge_score >= 4", "not failed"])
    gate >> [SelectRows(name="good", where="kept"), SelectRows(name="dropped", where="not kept")]

Conditions are text in a small grammar (see `pixtill.steps.quality.conditions`), parsed when the
step is built, never evaluated as Python, so a YAML pipeline file cannot run code through them.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import Field, PrivateAttr, field_validator

from pixtill.errors import RowError
from pixtill.run_report import INPUT_KIND
from pixtill.steps.base import Step, StepInput
from pixtill.steps.metadata import check_metadata, failed_row
from pixtill.steps.quality.conditions import Condition
from pixtill.steps.typing import StepColumns, StepOutput

KEPT_COLUMN = "kept"
REASON_COLUMN = "drop_reason"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class FilterRows(Step):
    """Mark each row ``kept`` when every condition in ``conditions`` holds.

    ``conditions`` is one condition or a list (all must hold), e.g.
    ``["judge_score >= 4", "not failed", "width(image) >= 512 or source == 'curated'"]``.

    Output columns: ``kept`` (bool) and ``drop_reason`` (``None`` for a kept row, else e.g.
    ``"gate: judge_score >= 4 (judge_score=2.5)"``). Gates chain: a row that an earlier gate
    already marked not kept stays so, with the earlier reason. A row whose ``pixtill_metadata``
    is not a dict, met by a condition that reads it (``failed``), is not kept: its reason and
    ``pixtill_metadata["error_<step name>"]`` name the step, row and column. Raises
    `ConditionError` when the step is built if a condition is outside the grammar.
    """

    conditions: list[str] = Field(min_length=1, description="Conditions that must all hold.")

    _parsed: list[Condition] = PrivateAttr(default_factory=list)

    @field_validator("conditions", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._parsed = [Condition(text) for text in self.conditions]

    @property
    def inputs(self) -> StepColumns:
        columns = {c: True for cond in self._parsed for c in cond.columns()}
        columns.update({KEPT_COLUMN: False, REASON_COLUMN: False})
        return columns

    @property
    def outputs(self) -> StepColumns:
        return [KEPT_COLUMN, REASON_COLUMN]

    def reason(self, row: dict[str, Any]) -> str | None:
        """Why ``row`` fails this gate (the first failing condition), or None if it passes."""
        for condition in self._parsed:
            if not condition.holds(row):
                return f"{self.name}: {condition.explain(row)}"
        return None

    def process(self, inputs: StepInput) -> StepOutput:
        reads_metadata = any(condition.reads_metadata() for condition in self._parsed)
        out = []
        for index, row in enumerate(inputs):
            if row.get(KEPT_COLUMN) is False:
                out.append(row)  # an earlier gate's verdict and reason stand
                continue
            if reads_metadata:
                try:
                    check_metadata(row, self.name, index)
                except RowError as exc:  # a metadata value that is not a dict: say so
                    self._logger.warning("%s", exc)
                    failed = failed_row(row, step=self.name, error=str(exc), kind=INPUT_KIND)
                    out.append({**failed, KEPT_COLUMN: False, REASON_COLUMN: str(exc)})
                    continue
            reason = self.reason(row)
            out.append({**row, KEPT_COLUMN: reason is None, REASON_COLUMN: reason})
        yield out


class SelectRows(Step):
    """Pass on only the rows where ``where`` holds (one condition or a list, all must hold).

    A router for one branch of the graph: put it after a `FilterRows` gate, once with
    ``where="kept"`` and once with ``where="not kept"``, so both kinds of row end up in a
    dataset. Used alone it drops rows without a trace; prefer a gate before it.
    """

    where: Union[str, list[str]] = Field(description="Condition(s) a row must meet.")

    _parsed: list[Condition] = PrivateAttr(default_factory=list)

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._parsed = [Condition(text) for text in _as_list(self.where)]

    @property
    def inputs(self) -> StepColumns:
        return {c: True for cond in self._parsed for c in cond.columns()}

    def process(self, inputs: StepInput) -> StepOutput:
        yield [row for row in inputs if all(c.holds(row) for c in self._parsed)]


__all__ = ["KEPT_COLUMN", "REASON_COLUMN", "FilterRows", "SelectRows"]
