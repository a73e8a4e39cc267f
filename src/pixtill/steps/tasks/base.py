"""Tasks: steps that call a model once per row.

The row-level pieces (`prepare_row`, `rows_from_results`, `rows_from_error`) are public so that
an executor can stream rows through a model one at a time; `process` composes them for a batch.
A row that cannot be formatted, or whose request or `format_output` fails, gets ``None`` outputs
and the reason in its metadata; the other rows of the batch are untouched.
"""

from __future__ import annotations

import asyncio
import threading
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from pydantic import Field, PrivateAttr, model_validator

from pixtill.errors import ModelUnavailableError, RowError, StepConfigError, locate_once
from pixtill.images import ImageError
from pixtill.models.base import AsyncBridge, BaseModel
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    ImageGenerationOutput,
    failed_image_outputs,
)
from pixtill.models.llms.base import LLM, AsyncLLM, GenerateOutput, failed_generate_output
from pixtill.models.results import ModelResult
from pixtill.models.structured import (
    StructuredOutputError,
    StructuredOutputSpec,
    parse_structured,
)
from pixtill.run_report import FailureWarnings
from pixtill.steps.base import Step, StepInput
from pixtill.steps.tasks.failures import (
    failure_column,
    image_output_error,
    upstream_failure,
)
from pixtill.steps.tasks.references import replace_images, stored_input
from pixtill.steps.typing import Row, StepOutput

METADATA_COLUMN = "pixtill_metadata"
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class GenerationResult:
    """One generation of one row, whatever the model kind."""

    output: Any
    statistics: dict[str, int] | None = None
    error: str | None = None


class _Task(Step):
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

    _failure_warnings: FailureWarnings | None = PrivateAttr(default=None)
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

    @abstractmethod
    def format_input(self, input: dict[str, Any]) -> Any:
        """Turn a row into what the model takes."""

    @abstractmethod
    def format_output(self, output: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn one raw generation into output columns."""

    @property
    def _model_name(self) -> str:
        return self.model.model_name

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
        self.model.unload()
        super().unload()

    @abstractmethod
    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        """Call the model on formatted inputs: per input, one result per generation."""

    @property
    @abstractmethod
    def model(self) -> BaseModel:
        """The model this task drives (text or image)."""

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

    # -- row-level pieces ------------------------------------------------------------------
    def prepare_row(self, row: Row, index: int) -> Any:
        """Check and format one row; any problem becomes a `RowError` naming step/row/column."""
        self.check_row(row, index)
        try:
            return self.format_input(row)
        except (RowError, ImageError) as exc:
            message = exc.message + upstream_failure(row, exc.column, self.name)
            raise RowError(message, step=self.name, row=index, column=exc.column) from exc
        except Exception as exc:
            raise RowError(f"{type(exc).__name__}: {exc}", step=self.name, row=index) from exc

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
        )
        failure = next((e for e in errors if e is not None), None)
        if failure is None:
            failure = next(
                (o[METADATA_COLUMN].get(f"error_{self.name}") for o in outputs if o), None
            )
        if failure is not None:
            self.warn_row_failure(failure)
        return self._shape(row, outputs)

    def rows_from_error(self, row: Row, error: str) -> list[Row]:
        failed = [
            self._output_on_failure(None, row, error=error) for _ in range(self.num_generations)
        ]
        return self._shape(row, failed)

    # -- the seeds' formatting API ---------------------------------------------------------
    def _format_inputs(self, inputs: list[dict[str, Any]]) -> list[Any]:
        return [self.prepare_row(row, index) for index, row in enumerate(inputs)]

    def _format_outputs(
        self,
        outputs: Sequence[Any],
        input: dict[str, Any] | None = None,
        *,
        statistics: Sequence[dict[str, int] | None] | None = None,
        errors: Sequence[str | None] | None = None,
        formatted_input: Any = None,
        row_number: int | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per generation: output columns plus the metadata column.

        Every generation is kept (the seeds' version silently kept only the first).
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
                formatted.append(self._output_on_failure(output, input, error=error))
                continue
            try:
                columns = self.format_output(output, input)
            except Exception as exc:
                why = f"format_output failed: {type(exc).__name__}: {exc} (raw output kept)"
                located = locate_once(why, step=self.name, row=row_number)
                formatted.append(self._output_on_failure(output, input, error=located))
                continue
            formatted.append(
                self._create_metadata(columns, output, input, formatted_input, stats, None)
            )
        return formatted

    def _output_on_failure(
        self, output: Any, input: dict[str, Any] | None = None, *, error: str | None = None
    ) -> dict[str, Any]:
        columns: dict[str, Any] = {c: None for c in self.get_outputs() if c != "model_name"}
        return self._create_metadata(columns, output, input, None, None, error)

    def _create_metadata(
        self,
        columns: dict[str, Any],
        output: Any,
        input: dict[str, Any] | None,
        formatted_input: Any,
        statistics: dict[str, int] | None,
        error: str | None,
    ) -> dict[str, Any]:
        if self.output_mappings:
            columns = {self.output_mappings.get(k, k): v for k, v in columns.items()}
        meta = dict((input or {}).get(METADATA_COLUMN) or {})
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
        meta = dict(row.get(METADATA_COLUMN) or {})
        own_keys = {k for out in outputs for k in out[METADATA_COLUMN]} - set(meta)
        for key in sorted(own_keys):
            values = [out[METADATA_COLUMN].get(key) for out in outputs]
            meta[key] = values[0] if key.startswith("raw_input_") else values
        return [{**row, **grouped, METADATA_COLUMN: meta, **model_name}]

    # -- batch processing ------------------------------------------------------------------
    def process_applying_mappings(self, inputs: StepInput) -> StepOutput:
        """Like `Step`'s, but rows with problems fail alone instead of stopping the batch.

        Output mappings are applied as outputs are formatted (see `_create_metadata`), so an
        output never overwrites an input column of the same name before being renamed.
        """
        renamed = self._rename_inputs(inputs)
        if not self.input_mappings or type(self).process is not _Task.process:
            for output in self.process(renamed):
                yield self._rename_outputs(output, output_mappings=False)
            return
        # Row by row, so that a dataset column an input mapping shadows (``{"instruction":
        # "question"}`` over a row that also has "instruction") comes back untouched.
        written = {self.output_mappings.get(c, c) for c in self.get_outputs()} | {METADATA_COLUMN}
        out: list[Row] = []
        for original, produced in zip(inputs, self.process_rows(renamed)):
            for row in self._rename_outputs(produced, output_mappings=False):
                for step_col, data_col in self.input_mappings.items():
                    shadowed = step_col != data_col and step_col in original
                    if shadowed and step_col not in written:
                        row[step_col] = original[step_col]
                out.append(row)
        yield out

    def process(self, inputs: StepInput) -> StepOutput:
        yield self.process_batch(inputs)

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


class Task(_Task):
    """A task driven by a text model (`LLM`)."""

    llm: LLM

    @property
    def model(self) -> LLM:
        return self.llm

    async def agenerate_results(self, formatted: Any) -> list[GenerationResult]:
        llm = self.llm
        if not isinstance(llm, AsyncLLM):
            return await super().agenerate_results(formatted)
        try:
            output = await llm.agenerate_n(
                formatted, num_generations=self.num_generations, **self._call_kwargs()
            )
        except ModelUnavailableError as exc:  # the run's problem, not the row's
            raise exc.located(model=llm.model_name, step=self.name) from None
        except Exception as exc:
            output = failed_generate_output(llm.describe_error(exc), self.num_generations)
        return self._checked(results_from_generate_output(output, self.num_generations))

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        outputs = self.llm.generate_outputs(
            inputs=formatted, num_generations=self.num_generations, **self._call_kwargs()
        )
        return [
            self._checked(results_from_generate_output(o, self.num_generations)) for o in outputs
        ]

    def get_structured_output(self) -> StructuredOutputSpec | None:
        """The JSON shape this task needs from its model (a JSON Schema dict or a pydantic
        model class), or None for free text (the default, as in distilabel).

        When set, it is sent to the model as ``structured_output=`` (see
        `pixtill.models.structured`), and a generation that does not parse and validate fails
        its row with the validation message; `format_output` still gets the JSON text.
        """
        return None

    def _call_kwargs(self) -> dict[str, Any]:
        kwargs = self.llm.get_generation_kwargs()
        spec = self.get_structured_output()
        if spec is not None:
            kwargs["structured_output"] = spec
        return kwargs

    def _checked(self, results: list[GenerationResult]) -> list[GenerationResult]:
        """Fail the generations that are not what a text model promises: no text, or not a
        ``str``; with a structured output, a reply that does not parse and validate."""
        spec = self.get_structured_output()
        checked = []
        for result in results:
            if result.error is None:
                output = result.output
                if output is None:
                    result = GenerationResult(None, result.statistics, "the model returned no text")
                elif not isinstance(output, str):
                    why = f"the model returned a {type(output).__name__}, not text"
                    result = GenerationResult(None, result.statistics, why)
                elif spec is not None:
                    try:
                        parse_structured(output, spec)
                    except StructuredOutputError as exc:
                        result = GenerationResult(output, result.statistics, str(exc))
            checked.append(result)
        return checked


def results_from_generate_output(
    output: GenerateOutput | ModelResult | list[str | None], num_generations: int
) -> list[GenerationResult]:
    """One `GenerationResult` per generation of one input.

    ``output`` is a `GenerateOutput` dict, a `~pixtill.models.results.ModelResult`, or a plain
    list of generations (the shape LLMs written for distilabel before 1.5 return; they carry
    no statistics).
    """
    if isinstance(output, ModelResult):  # the canonical type, from a backend or a custom LLM
        output = output.to_generate_output()
    if isinstance(output, list):
        output = {"generations": list(output)}
    generations = list(output.get("generations") or [])
    error = output.get("error")
    if len(generations) < num_generations:
        generations += [None] * (num_generations - len(generations))
        error = error or f"model returned fewer than {num_generations} generations"
    stats = output.get("statistics") or {}
    in_tokens = stats.get("input_tokens") or []
    out_tokens = stats.get("output_tokens") or []
    results = []
    for k, generation in enumerate(generations):
        per_gen: dict[str, int] = {}
        if k < len(in_tokens):
            per_gen["input_tokens"] = in_tokens[k]
        if k < len(out_tokens):
            per_gen["output_tokens"] = out_tokens[k]
        failed = error if generation is None and error else None
        results.append(GenerationResult(generation, per_gen or None, failed))
    return results


class ImageTask(_Task):
    """A task driven by an image-generation model.

    ``llm`` is a read-only alias of ``image_generation_model``, kept because the seed
    documentation's custom tasks call ``self.llm``; the library itself never uses it.
    """

    image_generation_model: ImageGenerationModel

    @model_validator(mode="before")
    @classmethod
    def _reject_llm(cls, data: Any) -> Any:
        if isinstance(data, dict) and "llm" in data:
            raise ValueError("`ImageTask` takes its model as `image_generation_model`, not `llm`")
        return data

    @property
    def llm(self) -> ImageGenerationModel:
        return self.image_generation_model

    @property
    def model(self) -> ImageGenerationModel:
        return self.image_generation_model

    async def agenerate_results(self, formatted: Any) -> list[GenerationResult]:
        model = self.image_generation_model
        if not isinstance(model, AsyncImageGenerationModel):
            return await super().agenerate_results(formatted)
        try:
            outputs = await model.agenerate(
                formatted, num_generations=self.num_generations, **model.get_generation_kwargs()
            )
        except ModelUnavailableError as exc:  # the run's problem, not the row's
            raise exc.located(model=model.model_name, step=self.name) from None
        except Exception as exc:
            outputs = failed_image_outputs(model.describe_error(exc), self.num_generations)
            return results_from_image_outputs(outputs)
        # Decoding checks cost milliseconds per image: off the event loop.
        return await asyncio.to_thread(results_from_image_outputs, outputs)

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        model = self.image_generation_model
        outputs = model.generate_outputs(
            inputs=formatted, num_generations=self.num_generations, **model.get_generation_kwargs()
        )
        return [results_from_image_outputs(o) for o in outputs]

    def _raw_output_reference(self, output: Any) -> Any:
        return replace_images(output)


def results_from_image_outputs(outputs: list[ImageGenerationOutput]) -> list[GenerationResult]:
    """One result per generation; a generation whose images are missing or not decodable
    images fails with the reason, never stored as a success."""
    return [GenerationResult(o, None, o.get("error") or image_output_error(o)) for o in outputs]


TaskUnion = Union[Task, ImageTask]
