"""`Task`: a task driven by a text model (`LLM`), with structured output checks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pydantic import PrivateAttr

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


class _ParsedReplies:
    """Structured replies that `Task._checked` parsed and validated, by their text, until
    `Task.structured_reply` takes them: each reply is validated once (identical replies, common
    for a judge, share one parsed value: read it, do not change it). Bounded (a reply whose
    row never reaches `format_output` is dropped eventually); a copy of the task starts empty."""

    _LIMIT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, list[Any]] = OrderedDict()  # text -> [value, uses left]

    def put(self, text: str, value: Any) -> None:
        with self._lock:
            held = self._values.get(text)
            if held is None:
                self._values[text] = [value, 1]
            else:
                held[1] += 1
                self._values.move_to_end(text)
            while len(self._values) > self._LIMIT:
                self._values.popitem(last=False)

    def take(self, text: str) -> tuple[bool, Any]:
        with self._lock:
            held = self._values.get(text)
            if held is None:
                return False, None
            held[1] -= 1
            if held[1] <= 0:
                del self._values[text]
            return True, held[0]

    def __reduce__(self) -> tuple[type[_ParsedReplies], tuple[()]]:
        return (_ParsedReplies, ())


class Task(_Task):
    """A task driven by a text model (`LLM`)."""

    llm: LLM

    _replies: _ParsedReplies = PrivateAttr(default_factory=_ParsedReplies)

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
        its row with the validation message; `format_output` still gets the JSON text
        (`structured_reply` gives it the value already parsed and validated).
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
                        self._replies.put(output, parse_structured(output, spec))
                    except StructuredOutputError as exc:
                        why = str(exc)  # the reply is kept in the metadata's raw output
                if why is not None:
                    cause = ResultError(why, ErrorKind.INVALID_RESPONSE.value)
                    result = GenerationResult(output, result.statistics, why, cause)
            checked.append(result)
        return checked

    def structured_reply(self, output: Any) -> Any:
        """The parsed value of a structured reply (see `get_structured_output`), for
        `format_output`: the one the task already parsed and validated when the reply came
        in (a reply is validated once), else parsed and validated now. Raises
        `pixtill.models.structured.StructuredOutputError` for a reply that does not match."""
        if isinstance(output, str):
            found, value = self._replies.take(output)
            if found:
                return value
        spec = self.get_structured_output()
        if spec is None:
            raise StructuredOutputError(f"step {self.name!r} asks for no structured output")
        return parse_structured(output, spec)
