"""Steps: the unit of work. A step's `process` is a generator over batches of plain-dict rows."""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Annotated, Any, Protocol, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)

from pixtill.errors import MissingColumnError, StepConfigError
from pixtill.mixins.runtime_parameters import RuntimeParametersMixin
from pixtill.mixins.serialization import Serializable
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.sharding import (
    ShardBatch,
    contiguous_range,
    islice_rows,
    numbered,
    round_robin,
)
from pixtill.steps.resources import StepResources
from pixtill.steps.typing import GeneratorStepOutput, Row, StepColumns, StepOutput

StepInput = Annotated[list[dict[str, Any]], "StepInput"]
"""A batch of rows handed to `Step.process`."""

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class StepGraph(Protocol):
    """What a step needs from the pipeline it is declared in (kept abstract so that steps never
    import the pipeline package)."""

    @property
    def steps(self) -> Mapping[str, _Step]: ...

    def add_step(self, step: _Step) -> None: ...

    def add_edge(self, upstream: _Step, downstream: _Step) -> None: ...


ACTIVE_GRAPH: ContextVar[StepGraph | None] = ContextVar("pixtill_active_graph", default=None)
StepT = TypeVar("StepT", bound="_Step")


def default_step_name(class_name: str, taken: Mapping[str, object] | None = None) -> str:
    """distilabel's default name: ``<snake_case class name>_<n>``, ``n`` the first index not
    ``taken`` in the pipeline (``TextGenerationWithImage`` -> ``text_generation_with_image_0``).

    Metadata keys are built from step names (``raw_output_text_generation_with_image_0``), so
    code written for distilabel finds its keys under the same names.
    """
    base = _CAMEL.sub("_", class_name).lower()
    index = 0
    while taken is not None and f"{base}_{index}" in taken:
        index += 1
    return f"{base}_{index}"


def normalize_columns(columns: StepColumns) -> dict[str, bool]:
    """``["a", "b"]`` -> ``{"a": True, "b": True}``; a dict is returned as is."""
    if isinstance(columns, dict):
        return dict(columns)
    return dict.fromkeys(columns, True)


class _Step(RuntimeParametersMixin, Serializable, BaseModel, ABC):
    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="forbid")

    name: str = Field(
        default="",
        description="Unique name; defaults to `<snake_case class name>_<n>` as in distilabel.",
    )
    input_mappings: dict[str, str] = Field(
        default_factory=dict,
        description="{step input column: dataset column} read under another name.",
    )
    output_mappings: dict[str, str] = Field(
        default_factory=dict,
        description="{step output column: dataset column} written under another name.",
    )

    replicas: int = Field(
        default=1, ge=1, description="Copies of a batch step run in parallel by the executor."
    )
    resources: StepResources = Field(
        default_factory=StepResources,
        description="What one replica needs from a cluster (CPUs, GPUs); read by the Ray executor.",
    )

    @model_validator(mode="after")
    def _replicas_from_resources(self) -> Any:
        if self.resources.replicas > 1 and self.replicas == 1:
            self.replicas = self.resources.replicas
        return self

    _logger: logging.Logger = PrivateAttr()
    _graph: StepGraph | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _join_given_pipeline(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """``Step(..., pipeline=p)`` (distilabel's keyword) joins ``p`` as if the step were
        created inside ``with p:``."""
        if not isinstance(data, dict) or data.get("pipeline") is None:
            if isinstance(data, dict) and "pipeline" in data:
                data = {k: v for k, v in data.items() if k != "pipeline"}
            return handler(data)
        data = dict(data)
        token = ACTIVE_GRAPH.set(data.pop("pipeline"))
        try:
            return handler(data)
        finally:
            ACTIVE_GRAPH.reset(token)

    @property
    def pipeline(self) -> StepGraph | None:
        """The pipeline the step was declared in (or given with ``pipeline=``), else None."""
        return self._graph

    def model_post_init(self, context: Any, /) -> None:
        # Runs before the step joins a pipeline, so the pipeline sees the final name.
        graph = ACTIVE_GRAPH.get()
        if not self.name:
            self.name = default_step_name(
                type(self).__name__, graph.steps if graph is not None else None
            )
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.name):
            raise StepConfigError(
                f"step name {self.name!r} may only hold letters, digits, '_' and '-'"
            )
        self._logger = logging.getLogger(f"pixtill.steps.{self.name}")
        self._check_output_mappings()
        if graph is not None:
            self._graph = graph
            graph.add_step(self)
        else:
            # distilabel's words (user code and tests look for them); running a step on its
            # own stays supported, so the hint says how, rather than refusing.
            self._logger.warning(
                "Step '%s' hasn't received a pipeline, and it hasn't been created within a "
                "`Pipeline` context. It runs on its own (`load()`, then `process(rows)`); to "
                "connect it to other steps, create it inside `with Pipeline(...):` or pass "
                "`pipeline=`.",
                self.name,
            )

    def _output_names(self) -> list[str]:
        """The step's own output columns (a task adds ``model_name``)."""
        return list(self.get_outputs())

    def _mapped_outputs(self) -> dict[str, str]:
        """``{output column: dataset column}`` with the output mappings applied."""
        return {n: self.output_mappings.get(n, n) for n in self._output_names()}

    def _check_output_mappings(self) -> None:
        """Refuse output mappings that would lose data: one onto the metadata column, or two
        outputs written to the same dataset column (``{"generation": "model_name"}``). An
        output mapped onto an input column is allowed: the output replaces it."""
        for source, target in self.output_mappings.items():
            if target == "pixtill_metadata":
                raise StepConfigError(
                    f"step {self.name!r}: output mapping {{{source!r}: {target!r}}} targets the "
                    "metadata column, which the step writes itself; choose another name"
                )
        try:
            mapped = self._mapped_outputs()
        except Exception:  # outputs known only once loaded: checked where they are known
            return
        seen: dict[str, str] = {}
        for source, target in mapped.items():
            if target in seen:
                raise StepConfigError(
                    f"step {self.name!r}: output mappings {self.output_mappings} write both "
                    f"{seen[target]!r} and {source!r} to column {target!r}; one would be lost"
                )
            seen[target] = source

    @property
    def is_global(self) -> bool:
        """Whether the step needs every row at once (a `GlobalStep`, or a task whose model
        uses offline batch generation)."""
        return isinstance(self, GlobalStep)

    # Wiring: ``a >> b``, ``a >> [b, c]`` and ``[b, c] >> d``.
    def connect(self, downstream: _Step) -> None:
        if self._graph is None or self._graph is not downstream._graph:
            raise StepConfigError(
                f"cannot connect {self.name!r} to {downstream.name!r}: both steps must be "
                "created inside the same `with Pipeline(...)` block"
            )
        self._graph.add_edge(self, downstream)

    def __rshift__(self, other: Union[StepT, list[StepT]]) -> Union[StepT, list[StepT]]:
        for downstream in other if isinstance(other, list) else [other]:
            self.connect(downstream)
        return other

    def __rrshift__(self: StepT, other: list[_Step]) -> StepT:
        for upstream in other:
            upstream.connect(self)
        return self

    @property
    def inputs(self) -> StepColumns:
        return []

    @property
    def outputs(self) -> StepColumns:
        return []

    def image_columns(self) -> list[str]:
        """Dataset columns (after mappings) this step reads or writes as images.

        The pipeline stores them as `datasets.Image` features instead of strings.
        """
        return []

    def get_inputs(self) -> dict[str, bool]:
        return normalize_columns(self.inputs)

    def get_outputs(self) -> dict[str, bool]:
        return normalize_columns(self.outputs)

    def load(self) -> None:
        """Acquire resources (models, clients). Called once before the first batch."""

    def unload(self) -> None:
        """Release what `load` acquired."""

    def check_row(self, row: Row, index: int) -> None:
        """Raise `MissingColumnError` naming step, column and row if a required input is absent."""
        for column, required in self.get_inputs().items():
            if required and column not in row:
                raise MissingColumnError(
                    f"required input column is missing (the row has {sorted(row)})",
                    step=self.name,
                    row=index,
                    column=self.input_mappings.get(column, column),  # the dataset's name
                )

    # Mappings: the step sees its own column names; the dataset keeps its own.
    def _rename_inputs(self, rows: list[Row]) -> list[Row]:
        if not self.input_mappings:
            return rows
        mappings = self.input_mappings
        out = []
        for original in rows:
            # Every mapping reads the original row, so swapped names ({"a": "b", "b": "a"})
            # swap instead of one overwriting the other.
            row = dict(original)
            for step_col, data_col in mappings.items():
                if data_col != step_col and data_col not in mappings:
                    row.pop(data_col, None)
            for step_col, data_col in mappings.items():
                if data_col in original:
                    row[step_col] = original[data_col]
                elif step_col != data_col:
                    # The mapped column is missing: never read the step's own name instead.
                    row.pop(step_col, None)
            out.append(row)
        return out

    def _rename_outputs(
        self, rows: list[Row], *, output_mappings: bool = True, written: set[str] | None = None
    ) -> list[Row]:
        """Give renamed inputs their dataset names back, then apply output mappings. A renamed
        input whose dataset name is in ``written`` (an output already mapped there) is
        dropped: the output replaces it."""
        mappings = self.output_mappings if output_mappings else {}
        if not self.input_mappings and not mappings:
            return rows
        written_or_empty = written or set()
        out = []
        for row in rows:
            row = dict(row)
            renamed = {}
            for step_col, data_col in self.input_mappings.items():
                if step_col in written_or_empty and step_col != data_col:
                    continue  # an output mapped onto this name holds it: not the input
                if step_col in row:
                    value = row.pop(step_col)
                    if data_col not in written_or_empty:
                        renamed[data_col] = value
            row.update(renamed)  # after every pop, so that swapped names swap back
            for step_col, data_col in mappings.items():
                if step_col in row:
                    row[data_col] = row.pop(step_col)
            out.append(row)
        return out


class Step(_Step):
    """Transforms batches of rows. ``process`` may yield several batches; all are used."""

    input_batch_size: int = Field(default=50, ge=1)

    @abstractmethod
    def process(self, inputs: StepInput) -> StepOutput:
        """Yield output batches for the given input batch."""

    def process_applying_mappings(self, inputs: StepInput) -> StepOutput:
        """Run `process` with mappings applied and required columns checked first."""
        renamed = self._rename_inputs(inputs)
        for index, row in enumerate(renamed):
            self.check_row(row, index)
        for output in self.process(renamed):
            yield self._rename_outputs(output)


class GlobalStep(Step):
    """A step that needs every row at once (deduplication, sorting, statistics)."""


class GeneratorStep(_Step):
    """Produces rows from nothing (a loader). ``process`` yields ``(batch, is_last)``."""

    batch_size: int = Field(default=50, ge=1)

    @abstractmethod
    def process(self, offset: int = 0) -> GeneratorStepOutput:
        """Yield ``(rows, is_last)`` starting after ``offset`` rows."""

    def process_applying_mappings(self, offset: int = 0) -> GeneratorStepOutput:
        for rows, last in self.process(offset):
            yield self._rename_outputs(rows), last

    def plan_shard(self, rank: int, world_size: int) -> None:
        """Told by an executor before `load`: this run will ask for ``process_shard(rank,
        world_size)``. A loader that can then avoid reading the whole data at `load` (data
        files: only footers and file lists) uses it; the default ignores it."""

    def process_shard(self, rank: int = 0, world_size: int = 1) -> Iterator[ShardBatch]:
        """Rank ``rank``'s part of the rows for ``world_size`` shards, as ``(global row
        numbers, rows, is_last)`` batches (output mappings applied). Shards partition the
        rows exactly; a row's number is its position in the unsharded data. This default
        reads every row and keeps ``i % world_size == rank``; loaders that know their size
        read only their block (`pixtill.steps.generators.sharding`)."""
        if world_size == 1 and rank == 0:
            yield from numbered(self.process_applying_mappings(0), 0)
            return
        yield from round_robin(self.process_applying_mappings(0), rank, world_size, self.batch_size)

    def _contiguous_shard(self, total: int, rank: int, world_size: int) -> Iterator[ShardBatch]:
        """Rank ``rank``'s contiguous block of a loader of ``total`` rows whose `process`
        takes an offset and yields rows in a stable order."""
        if world_size == 1 and rank == 0:
            yield from numbered(self.process_applying_mappings(0), 0)
            return
        block = contiguous_range(total, rank, world_size)
        if not block:
            yield [], [], True
            return
        stream = islice_rows(self.process_applying_mappings(block.start), len(block))
        yield from numbered(batches_with_last(stream, self.batch_size), block.start)


def iter_rows(step_output: Iterator[list[Row]]) -> Iterator[Row]:
    """Flatten every batch a step yields."""
    for batch in step_output:
        yield from batch
