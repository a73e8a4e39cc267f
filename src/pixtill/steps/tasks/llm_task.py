"""`Task`: a task driven by a text model (`LLM`), with structured output checks."""

from __future__ import annotations

from typing import Any

from pixtill.errors import ModelUnavailableError
from pixtill.models.llms.base import LLM, AsyncLLM, failed_generate_output
from pixtill.models.structured import (
    StructuredOutputError,
    StructuredOutputSpec,
    parse_structured,
)
from pixtill.steps.tasks.abstract_task import _Task
from pixtill.steps.tasks.results import GenerationResult, results_from_generate_output


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
