"""`Task`: a task driven by a text model (`LLM`), with structured output checks."""

from __future__ import annotations

from typing import Any

from pixtill.errors import ModelUnavailableError
from pixtill.models.http import ErrorKind
from pixtill.models.llms.base import LLM, AsyncLLM
from pixtill.models.request import ModelRequest
from pixtill.models.results import ModelResult, ResultError
from pixtill.models.structured import (
    StructuredOutputError,
    StructuredOutputSpec,
    parse_structured,
)
from pixtill.steps.tasks.abstract_task import _Task
from pixtill.steps.tasks.results import GenerationResult, failure_of, results_of_text


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
            result = await llm.agenerate_result(self.model_request(formatted))
        except ModelUnavailableError as exc:  # the run's problem, not the row's
            raise exc.located(model=llm.model_name, step=self.name) from None
        except Exception as exc:
            result = ModelResult.failed(failure_of(llm, exc), self.num_generations)
        return self._checked(results_of_text(result, self.num_generations))

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        requests = [self.model_request(item) for item in formatted]
        results = self.llm.generate_results(requests)
        return [self._checked(results_of_text(r, self.num_generations)) for r in results]

    def model_request(self, formatted: Any) -> ModelRequest[Any]:
        """The canonical request of one formatted row: ``num_generations``, the model's
        generation settings and this task's structured output (`get_structured_output`)."""
        request = super().model_request(formatted)
        spec = self.get_structured_output()
        if spec is None:
            return request
        return ModelRequest(request.input, request.n, request.settings, spec)

    def get_structured_output(self) -> StructuredOutputSpec | None:
        """The JSON shape this task needs from its model (a JSON Schema dict or a pydantic
        model class), or None for free text (the default, as in distilabel).

        When set, it is the request's ``structured_output`` (see
        `pixtill.models.structured`), and a generation that does not parse and validate fails
        its row with the validation message; `format_output` still gets the JSON text.
        """
        return None

    def _checked(self, results: list[GenerationResult]) -> list[GenerationResult]:
        """Fail the generations that are not what a text model promises: no text, or not a
        ``str``; with a structured output, a reply that does not parse and validate."""
        spec = self.get_structured_output()
        checked = []
        for result in results:
            if result.error is None:
                output = result.output
                why: str | None = None
                if output is None:
                    why = "the model returned no text"
                elif not isinstance(output, str):
                    why = f"the model returned a {type(output).__name__}, not text"
                    output = None
                elif spec is not None:
                    try:
                        parse_structured(output, spec)
                    except StructuredOutputError as exc:
                        why = str(exc)  # the reply is kept in the metadata's raw output
                if why is not None:
                    cause = ResultError(why, ErrorKind.INVALID_RESPONSE.value)
                    result = GenerationResult(output, result.statistics, why, cause)
            checked.append(result)
        return checked
