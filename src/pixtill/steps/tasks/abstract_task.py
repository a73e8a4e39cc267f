"""`_Task`, the base of every task: the model's lifecycle, row preparation (a row that cannot
be formatted fails alone), failures located at step/row/column, and batch and streaming
processing. The output side is `pixtill.steps.tasks.task_outputs`."""

from __future__ import annotations

import asyncio
import threading
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import PrivateAttr

from pixtill.errors import ModelUnavailableError, RowError, StepConfigError, locate_once
from pixtill.images import ImageError
from pixtill.models.base import AsyncBridge
from pixtill.models.image_generation.base import AsyncImageGenerationModel
from pixtill.models.llms.base import AsyncLLM
from pixtill.models.request import ModelRequest
from pixtill.run_report import FailureWarnings
from pixtill.steps.base import StepInput
from pixtill.steps.metadata import METADATA_COLUMN, check_metadata
from pixtill.steps.tasks.failures import failure_column, upstream_failure
from pixtill.steps.tasks.prepare_offload import PrepareCost, PrepareThread, holds_pil_image
from pixtill.steps.tasks.results import GenerationResult
from pixtill.steps.tasks.task_outputs import _TaskOutputs
from pixtill.steps.typing import Row, StepOutput

_WARNINGS_LOCK = threading.Lock()


class _Task(_TaskOutputs):
    _failure_warnings: FailureWarnings | None = PrivateAttr(default=None)
    _prepare_thread: PrepareThread = PrivateAttr(default_factory=PrepareThread)
    _prepares_images: bool | None = PrivateAttr(default=None)
    _prepare_cost: PrepareCost = PrivateAttr(default_factory=lambda: PrepareCost())
    # distilabel's switch, set to True by the tasks that work on all rows at once
    # (``_can_be_used_with_offline_batch_generation = True`` in a subclass).
    _can_be_used_with_offline_batch_generation: bool = PrivateAttr(default=False)

    def model_post_init(self, context: Any, /) -> None:
        # Before joining a pipeline: a refused task must not be left in the graph.
        if self.uses_offline_batch_generation and not (
            self._can_be_used_with_offline_batch_generation
        ):
            raise StepConfigError(
                f"`{type(self).__name__}` task cannot be used with offline batch generation "
                "feature (set `_can_be_used_with_offline_batch_generation = True` on a task "
                "whose rows can all wait for one provider batch)"
            )
        super().model_post_init(context)

    @property
    def uses_offline_batch_generation(self) -> bool:
        """Whether the model has ``use_offline_batch_generation`` set."""
        return bool(getattr(self.model, "use_offline_batch_generation", False))

    @property
    def is_global(self) -> bool:
        """True when the model uses offline batch generation: all rows go in one call."""
        return self.uses_offline_batch_generation or super().is_global

    def load(self) -> None:
        """Load the model; raises `StepConfigError` while a required runtime parameter
        (``x: RuntimeParameter[int]`` without default) is still unset."""
        missing = self.missing_runtime_parameters()
        if missing:
            raise StepConfigError(
                f"step {self.name!r}: required runtime parameter(s) {missing} not set; give "
                "them at construction, with `set_runtime_parameters(...)` or in "
                "`Pipeline.run(parameters={step: {...}})`"
            )
        super().load()
        self._failure_warnings = None  # each run logs its own first failures
        self.model.load()

    def unload(self) -> None:
        self._prepare_thread.close()
        self.model.unload()
        super().unload()

    @abstractmethod
    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        """Call the model on formatted inputs: per input, one result per generation."""

    @property
    def supports_streaming(self) -> bool:
        """True when rows can go to the model one at a time (`agenerate_results`).

        That needs an async model and the library's own `process`; a task that overrides
        `process` is run batch by batch exactly as written.
        """
        return self.supports_async_model and type(self).process is _Task.process

    @property
    def supports_async_model(self) -> bool:
        if self.uses_offline_batch_generation:
            return False  # the whole batch goes to `offline_batch_generate` at once
        return isinstance(self.model, (AsyncLLM, AsyncImageGenerationModel))

    async def agenerate_results(self, formatted: Any) -> list[GenerationResult]:
        """Send one formatted row to an async model; a failure becomes failed results."""
        raise NotImplementedError(f"{type(self).__name__} has no async model")

    def model_request(self, formatted: Any) -> ModelRequest[Any]:
        """The canonical request of one formatted row: ``num_generations`` generations with
        the model's generation settings (``generation_kwargs``). A task that asks for more
        (a structured output, a seed per attempt) overrides it."""
        return ModelRequest.of_call(
            formatted, self.num_generations, self.model.get_generation_kwargs()
        )

    # -- row-level pieces ------------------------------------------------------------------
    def prepare_row(self, row: Row, index: int) -> Any:
        """Check and format one row; any problem becomes a `RowError` naming step/row/column."""
        self.check_row(row, index)
        check_metadata(row, self.name, index)
        try:
            return self.format_input(row)
        except (RowError, ImageError) as exc:
            message = exc.message + upstream_failure(row, exc.column, self.name)
            # the dataset's name of the column (the row here has the step's names)
            column = self.input_mappings.get(exc.column, exc.column) if exc.column else None
            raise RowError(message, step=self.name, row=index, column=column) from exc
        except Exception as exc:
            raise RowError(f"{type(exc).__name__}: {exc}", step=self.name, row=index) from exc

    async def aprepare_row(self, row: Row, index: int) -> Any:
        """`prepare_row` for the streaming path. Formatting a row whose images are cheap to
        check (encoded bytes, URLs, paths of plain PNGs) takes tens of microseconds, less than a
        thread hop, so it runs inline; a row holding a PIL image (PNG-encoded for its data URL),
        or any row of a step whose rows have proved slow to format (decoding, EXIF rotation,
        resizing: see `PrepareCost`), runs in the step's worker thread, one call at a time,
        so milliseconds of image work never stall the event loop and every request in flight.
        A text-only task always formats inline. The thread ends at `unload`."""
        if not self._takes_images():
            return self.prepare_row(row, index)
        cost = self._prepare_cost
        if not cost.offload and not holds_pil_image(row, self.image_columns()):
            started = time.perf_counter()
            try:
                return self.prepare_row(row, index)
            finally:
                cost.record(time.perf_counter() - started)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._prepare_thread.pool(), self.prepare_row, row, index)

    def _takes_images(self) -> bool:
        """Whether one of the task's input columns is an image column (asked once)."""
        takes = self._prepares_images
        if takes is None:
            inputs = {self.input_mappings.get(c, c) for c in self.get_inputs()}
            takes = self._prepares_images = bool(inputs & set(self.image_columns()))
        return takes

    def warn_row_failure(self, message: str) -> None:
        """Log a failed row as a warning: the first few of this step one by one, then a count
        (the run's summary groups them all by cause)."""
        warnings = self._failure_warnings
        if warnings is None:
            with _WARNINGS_LOCK:
                warnings = self._failure_warnings
                if warnings is None:
                    warnings = FailureWarnings(self._logger, self.name)
                    self._failure_warnings = warnings
        warnings.warn(message)

    def locate_failure(self, message: str, row: Row, row_number: int | None) -> str:
        """A request or response failure said where it happened: the step, the row and, when
        an input value caused it, the column (`pixtill.errors.locate`). The column is the one
        whose value the message quotes (an image URL the server could not fetch), else the
        row's only image column when the message is about an image."""
        return locate_once(
            message,
            step=self.name,
            row=row_number,
            column=self._failure_column(message, row),
        )

    def _failure_column(self, message: str, row: Row) -> str | None:
        return failure_column(message, row, [c for c in self.get_inputs() if c in row])

    def rows_from_results(
        self,
        row: Row,
        formatted: Any,
        results: Sequence[GenerationResult],
        row_number: int | None = None,
    ) -> list[Row]:
        """The output rows of one input row. Failed generations get ``None`` outputs and their
        error, located at ``row_number`` (the row's position in the dataset), in metadata; the
        first failure of the row is logged (rate-limited, see `warn_row_failure`)."""
        errors = [
            None if r.error is None else self.locate_failure(r.error, row, row_number)
            for r in results
        ]
        outputs = self._format_outputs(
            [r.output for r in results],
            row,
            statistics=[r.statistics for r in results],
            errors=errors,
            formatted_input=formatted,
            row_number=row_number,
            causes=[r.cause for r in results],
        )
        failure = next((e for e in errors if e is not None), None)
        if failure is None:
            failure = next(
                (o[METADATA_COLUMN].get(f"error_{self.name}") for o in outputs if o), None
            )
        if failure is not None:
            self.warn_row_failure(failure)
        return self._shape(row, outputs)

    # -- the seeds' formatting API ---------------------------------------------------------
    def _format_inputs(self, inputs: list[dict[str, Any]]) -> list[Any]:
        return [self.prepare_row(row, index) for index, row in enumerate(inputs)]

    # -- batch processing ------------------------------------------------------------------
    def process_applying_mappings(self, inputs: StepInput) -> StepOutput:
        """Like `Step`'s, but rows with problems fail alone instead of stopping the batch.

        Output mappings are applied as outputs are formatted (see `_create_metadata`), so an
        output never overwrites an input column of the same name before being renamed.
        """
        renamed = self._rename_inputs(inputs)
        if not self.input_mappings or type(self).process is not _Task.process:
            for output in self.process(renamed):
                yield self._rename_outputs(output, output_mappings=False, written=self._written())
            return
        # Row by row, so that a dataset column an input mapping shadows (``{"instruction":
        # "question"}`` over a row that also has "instruction") comes back untouched.
        written = self._written()
        out: list[Row] = []
        for original, produced in zip(inputs, self.process_rows(renamed)):
            for row in self._rename_outputs(produced, output_mappings=False, written=written):
                for step_col, data_col in self.input_mappings.items():
                    shadowed = step_col != data_col and step_col in original
                    if shadowed and step_col not in written:
                        row[step_col] = original[step_col]
                    if step_col in written and data_col in original and data_col not in written:
                        # an output took the input's step-side name: the input keeps its own
                        row[data_col] = original[data_col]
                out.append(row)
        yield out

    def _written(self) -> set[str]:
        """The dataset columns this task writes (output mappings applied), metadata included."""
        return set(self._mapped_outputs().values()) | {METADATA_COLUMN}

    def _output_names(self) -> list[str]:
        return [*self.get_outputs(), "model_name"]

    def process(self, inputs: StepInput) -> StepOutput:
        """The rows' outputs, one batch. Called directly on a task that does not override it,
        the input mappings apply as in a pipeline (which itself calls `process_rows` with the
        rows renamed), so a mapped column is read and no dataset column is lost."""
        if self.input_mappings and type(self).process is _Task.process:
            yield from self.process_applying_mappings(inputs)
            return
        yield self.process_batch(inputs)

    def results_cached(self) -> None:
        """The rows made so far are stored in a pipeline's cache: a batch model may now delete
        what it kept to collect them again after a crash (the state files of its finished
        provider batches)."""
        forget = getattr(self.model, "forget_collected_batches", None)
        if callable(forget):
            forget()

    def process_batch(self, rows: list[Row]) -> list[Row]:
        return [out for produced in self.process_rows(rows) for out in produced]

    def process_rows(
        self, rows: list[Row], row_numbers: Sequence[int] | None = None
    ) -> list[list[Row]]:
        """The rows each input row turns into, in input order; errors are per row.

        ``row_numbers`` name the rows in error messages (their position in the dataset);
        by default their position in ``rows``.
        """
        numbers = list(row_numbers) if row_numbers is not None else list(range(len(rows)))
        model = self.model
        if isinstance(model, AsyncBridge) and self.supports_async_model:
            return model._run_sync(self.aprocess_rows(rows, numbers))
        prepared, errors = self._prepare_rows(rows, numbers)
        order = sorted(prepared)
        try:
            results = self._generate([prepared[i] for i in order]) if order else []
        except ModelUnavailableError as exc:
            raise exc.located(model=model.model_name, step=self.name) from None
        return self._assemble(rows, numbers, prepared, errors, dict(zip(order, results)))

    async def aprocess_rows(self, rows: list[Row], row_numbers: Sequence[int]) -> list[list[Row]]:
        """`process_rows` for an async model, on its event loop: each row is sent as soon as
        it is formatted, so requests are in flight while later rows are still being checked."""
        prepared: dict[int, Any] = {}
        errors: dict[int, str] = {}
        sent: dict[int, asyncio.Task[list[GenerationResult]]] = {}
        for index, row in enumerate(rows):
            if self._try_prepare(index, row, row_numbers[index], prepared, errors):
                sent[index] = asyncio.create_task(self.agenerate_results(prepared[index]))
            if index % 16 == 15:
                await asyncio.sleep(0)  # let responses be handled between rows
        try:
            results = {index: await task for index, task in sent.items()}
        except BaseException:
            for task in sent.values():  # a dead model: nothing else is worth waiting for
                task.cancel()
            await asyncio.gather(*sent.values(), return_exceptions=True)
            raise
        return self._assemble(rows, row_numbers, prepared, errors, results)

    def _prepare_rows(
        self, rows: list[Row], numbers: Sequence[int]
    ) -> tuple[dict[int, Any], dict[int, str]]:
        prepared: dict[int, Any] = {}
        errors: dict[int, str] = {}
        for index, row in enumerate(rows):
            self._try_prepare(index, row, numbers[index], prepared, errors)
        return prepared, errors

    def _try_prepare(
        self, index: int, row: Row, number: int, prepared: dict[int, Any], errors: dict[int, str]
    ) -> bool:
        """Prepare one row into ``prepared``, or record why it cannot be used in ``errors``."""
        try:
            prepared[index] = self.prepare_row(row, number)
        except RowError as exc:
            self.warn_row_failure(str(exc))
            errors[index] = str(exc)
            return False
        return True

    def _assemble(
        self,
        rows: list[Row],
        numbers: Sequence[int],
        prepared: dict[int, Any],
        errors: dict[int, str],
        by_index: dict[int, list[GenerationResult]],
    ) -> list[list[Row]]:
        return [
            self.rows_from_error(row, errors[index])
            if index in errors
            else self.rows_from_results(row, prepared[index], by_index[index], numbers[index])
            for index, row in enumerate(rows)
        ]
