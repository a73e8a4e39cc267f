"""The output side of a task: output columns from each generation, the metadata column (raw
input and output, statistics, errors), and the rows they make (one per generation, or one
grouped row)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from pixtill.errors import locate_once
from pixtill.models.base import BaseModel
from pixtill.models.results import ResultError
from pixtill.run_report import FAILURE_PREFIX, INPUT_KIND, OUTPUT_KIND, failure_record
from pixtill.steps.base import Step

# Re-exported (``as``): their home is `pixtill.steps.metadata`, shared with non-task steps.
from pixtill.steps.metadata import METADATA_COLUMN as METADATA_COLUMN
from pixtill.steps.metadata import check_metadata as check_metadata
from pixtill.steps.metadata import metadata_of as metadata_of
from pixtill.steps.tasks.references import stored_input
from pixtill.steps.typing import Row


class _TaskOutputs(Step):
    """The part of `_Task` that turns generations into rows (fields, formatting, metadata)."""

    num_generations: int = Field(default=1, ge=1, description="Generations per input row.")
    group_generations: bool = Field(
        default=False,
        description="One row with lists of generations instead of one row per generation.",
    )
    add_raw_output: bool = Field(default=True, description="Keep the raw model output in metadata.")
    add_raw_input: bool = Field(
        default=True, description="Keep the model input in metadata (images as references)."
    )

    raw_input_content_as_parts: ClassVar[bool | None] = None
    """How ``raw_input_<step>`` stores chat contents: None keeps strings unless a message of
    the row has a list of parts (see `stored_input`); True always stores lists of parts."""

    @abstractmethod
    def format_input(self, input: dict[str, Any]) -> Any:
        """Turn a row into what the model takes."""

    @abstractmethod
    def format_output(self, output: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn one raw generation into output columns."""

    @property
    def _model_name(self) -> str:
        return self.model.model_name

    @property
    @abstractmethod
    def model(self) -> BaseModel:
        """The model this task drives (text or image)."""

    def rows_from_error(self, row: Row, error: str, kind: str = INPUT_KIND) -> list[Row]:
        """The rows of an input row that failed before reaching the model (by default because
        its input could not be used: ``kind`` ``"input"``)."""
        cause = ResultError(error, kind)
        failed = [
            self._output_on_failure(None, row, error=error, cause=cause)
            for _ in range(self.num_generations)
        ]
        return self._shape(row, failed)

    # -- the seeds' formatting API ---------------------------------------------------------
    def _format_outputs(
        self,
        outputs: Sequence[Any],
        input: dict[str, Any] | None = None,
        *,
        statistics: Sequence[dict[str, int] | None] | None = None,
        errors: Sequence[str | None] | None = None,
        formatted_input: Any = None,
        row_number: int | None = None,
        causes: Sequence[ResultError | None] | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per generation: output columns plus the metadata column.

        Every generation is kept (the seeds' version silently kept only the first). A failed
        generation's ``errors[k]`` goes to ``error_<step>``, and its kind and HTTP status
        (``causes[k]``, when known) to ``failure_<step>`` (see `failure_record`).
        """
        if formatted_input is None and input is not None and self.add_raw_input:
            try:
                formatted_input = self.format_input(input)
            except Exception:
                formatted_input = None
        formatted: list[dict[str, Any]] = []
        for k, output in enumerate(outputs):
            error = errors[k] if errors else None
            stats = statistics[k] if statistics else None
            if error is not None:
                cause = causes[k] if causes else None
                formatted.append(self._output_on_failure(output, input, error=error, cause=cause))
                continue
            try:
                columns = self.format_output(output, input)
            except Exception as exc:
                why = f"format_output failed: {type(exc).__name__}: {exc} (raw output kept)"
                located = locate_once(why, step=self.name, row=row_number)
                cause = ResultError(located, OUTPUT_KIND)
                formatted.append(self._output_on_failure(output, input, error=located, cause=cause))
                continue
            formatted.append(
                self._create_metadata(columns, output, input, formatted_input, stats, None)
            )
        return formatted

    def _output_on_failure(
        self,
        output: Any,
        input: dict[str, Any] | None = None,
        *,
        error: str | None = None,
        cause: ResultError | None = None,
    ) -> dict[str, Any]:
        columns: dict[str, Any] = {c: None for c in self.get_outputs() if c != "model_name"}
        return self._create_metadata(columns, output, input, None, None, error, cause)

    def _create_metadata(
        self,
        columns: dict[str, Any],
        output: Any,
        input: dict[str, Any] | None,
        formatted_input: Any,
        statistics: dict[str, int] | None,
        error: str | None,
        cause: ResultError | None = None,
    ) -> dict[str, Any]:
        if self.output_mappings:
            columns = {self.output_mappings.get(k, k): v for k, v in columns.items()}
        meta = dict(metadata_of(input or {}))
        if self.add_raw_output or error is not None:
            meta[f"raw_output_{self.name}"] = self._raw_output_reference(output)
        if self.add_raw_input and formatted_input is not None:
            meta[f"raw_input_{self.name}"] = stored_input(
                formatted_input, content_as_parts=self.raw_input_content_as_parts
            )
        if statistics:
            meta[f"statistics_{self.name}"] = statistics
        if error is not None:
            meta[f"error_{self.name}"] = error
            kind, status = ("model", None) if cause is None else (cause.kind, cause.status)
            meta[f"{FAILURE_PREFIX}{self.name}"] = failure_record(kind, status)
        return {**columns, METADATA_COLUMN: meta}

    def _raw_output_reference(self, output: Any) -> Any:
        return output

    def _shape(self, row: Row, outputs: list[dict[str, Any]]) -> list[Row]:
        """Attach outputs to the row: one row per generation, or one grouped row.

        The model's name goes to ``model_name`` (as in distilabel), or where an output mapping
        sends it; when the row already has a ``model_name`` (an earlier task in a chain wrote
        it) and no mapping says otherwise, to ``model_name_<step name>``, so both survive."""
        model_column = self.output_mappings.get("model_name")
        if model_column is None:
            model_column = "model_name" if "model_name" not in row else f"model_name_{self.name}"
        model_name = {model_column: self._model_name}
        if not self.group_generations:
            return [{**row, **out, **model_name} for out in outputs]
        grouped: dict[str, Any] = {}
        for key in outputs[0]:
            if key == METADATA_COLUMN:
                continue
            grouped[key] = [out.get(key) for out in outputs]
        meta = dict(metadata_of(row))
        own_keys = {k for out in outputs for k in out[METADATA_COLUMN]} - set(meta)
        for key in sorted(own_keys):
            values = [out[METADATA_COLUMN].get(key) for out in outputs]
            meta[key] = values[0] if key.startswith("raw_input_") else values
        return [{**row, **grouped, METADATA_COLUMN: meta, **model_name}]
