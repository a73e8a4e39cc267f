"""OpenAI's Chat Completions API, and the code every OpenAI-compatible backend shares.

`OpenAILLM` talks to api.openai.com or any server speaking the same API (vLLM, TGI, llama.cpp,
LiteLLM...). `InferenceEndpointsLLM` (``huggingface.py``) reuses `OpenAIChatLLM` with Hugging
Face's URLs and tokens.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator

from pixtill.models.build_once import once
from pixtill.models.llms._wire import (
    Choice,
    fan_out,
    openai_messages,
    prompt_chars,
)
from pixtill.models.llms.base import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.models.remote import (
    InvalidResponseError,
    RemoteModel,
    SecretField,
    excerpt,
    resolve_secret,
)
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import split_request_options
from pixtill.models.results import ModelResult, ResultError
from pixtill.models.structured import StructuredOutputSpec, json_schema_of, schema_name
from pixtill.models.transport import Payload, RequestEngine, RequestError

__all__ = ["OpenAIChatLLM", "OpenAILLM"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Keys of a request that pixtill sets itself: a generation kwarg never overrides them
# (``response_format`` may be given there; ``structured_output`` wins when both are set).
_RESERVED = ("model", "messages", "n", "stream")
# Statuses with which servers refuse ``n > 1`` (TGI: 422, others: 400).
_N_REJECTED = frozenset({400, 422})
# Rough prompt tokens per image, for tokens-per-minute pacing only.
_IMAGE_TOKEN_ESTIMATE = 256


def _response_format(structured_output: dict[str, Any] | None) -> dict[str, Any] | None:
    if not structured_output:
        return None
    kind = structured_output.get("type")
    if kind == "json_object" and set(structured_output) <= {"type", "value", "schema"}:
        return dict(structured_output)
    if kind == "json_schema" and isinstance(structured_output.get("json_schema"), dict):
        return dict(structured_output)
    title = structured_output.get("title")
    name = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] if isinstance(title, str) else ""
    return {
        "type": "json_schema",
        "json_schema": {"name": name or "output", "schema": structured_output, "strict": True},
    }


def spec_response_format(spec: StructuredOutputSpec) -> dict[str, Any]:
    """The ``response_format`` of a task's ``structured_output=`` spec: ``json_schema`` with the
    schema's name; ``strict`` only when the schema meets OpenAI's strict rules (every object
    closed with ``additionalProperties: false`` and every property required), since a strict
    request with any other schema is refused with a 400."""
    schema = json_schema_of(spec)
    body: dict[str, Any] = {"name": schema_name(spec), "schema": schema}
    if _strict_ok(schema):
        body["strict"] = True
    return {"type": "json_schema", "json_schema": body}


def _strict_ok(schema: Any) -> bool:
    if isinstance(schema, list):
        return all(_strict_ok(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if isinstance(props, dict) and set(schema.get("required") or ()) != set(props):
            return False
    return all(_strict_ok(value) for value in schema.values() if isinstance(value, (dict, list)))


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        texts = [  # a part whose text is null is no text, never the word "None"
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in ("text", "output_text")
            and isinstance(part.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


def _with(
    payload: Callable[[], Awaitable[dict[str, Any]]], **extra: Any
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A payload builder with ``extra`` keys set on the shared built payload."""

    async def build() -> dict[str, Any]:
        return {**(await payload()), **extra}

    return build


def _int_or_none(value: Any) -> int | None:
    """A token count from the server's usage: a non-negative int, else None (a negative or
    non-integer count is the server's bug, not a statistic to store)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers that sum to it."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


class OpenAIChatLLM(RemoteModel, AsyncLLM):
    """Shared by every backend that speaks OpenAI's ``/chat/completions`` (not for direct use).

    Subclasses give the URL (`_chat_url`), the request's ``model`` (`_wire_model`) and
    credentials (`_auth_headers`).
    """

    structured_output: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A JSON schema the answer must follow (sent as a strict json_schema response "
            'format), or a ready response_format such as {"type": "json_object"}.'
        ),
    )
    native_n: bool = Field(
        default=True,
        description=(
            "Ask for num_generations choices in one request (`n`). A server that refuses n > 1 "
            "or returns fewer choices gets single requests instead, for the rest of the run."
        ),
    )
    image_detail: Literal["auto", "low", "high"] | None = Field(
        default=None, description="`detail` of every image part (OpenAI vision)."
    )

    _n_unsupported: bool = PrivateAttr(default=False)

    @field_validator("structured_output")
    @classmethod
    def _check_structured_output(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("type", "object"), str):
            raise ValueError("structured_output must be a JSON schema or a response_format")
        return value

    @abstractmethod
    def _chat_url(self) -> str:
        """Full URL of the chat completions route."""

    @abstractmethod
    def _wire_model(self) -> str:
        """The request's ``model`` field."""

    def unload(self) -> None:
        super().unload()
        self._n_unsupported = False

    # ----------------------------------------------------------------- generation

    @canonical_edge
    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        request = ModelRequest.of_call(input, num_generations, kwargs, self.generation_kwargs)
        return (await self._agenerate_result(request)).to_generate_output()

    async def _agenerate_result(self, request: ModelRequest[FormattedInput]) -> ModelResult:
        engine = await self._aengine()
        input = request.input
        params = dict(request.settings)
        params.pop("structured_output", None)  # only `request.structured_output` counts
        options = split_request_options(params, type(self).__name__)
        spec = request.structured_output
        for key in _RESERVED:
            params.pop(key, None)
        if spec is not None:  # the task's shape wins over the model's own setting
            response_format: dict[str, Any] | None = spec_response_format(spec)
        else:
            response_format = _response_format(self.structured_output)

        async def build() -> dict[str, Any]:
            # Runs once the request has its slot in the engine's window.
            messages = await openai_messages(input, self.image_resize, self.image_detail)
            body: dict[str, Any] = {"model": self._wire_model(), "messages": messages, **params}
            if response_format is not None:
                body["response_format"] = response_format
            body.update(options.body)
            return body

        payload = once(build)
        n = request.n
        tokens = tokens_n = 0
        if self.tokens_per_minute is not None:
            tokens = self._estimate_tokens(input, params)
            tokens_n = self._estimate_tokens(input, params, n)
        url = options.url(self._chat_url())
        headers = options.headers or None

        if n > 1 and self.native_n and not self._n_unsupported:
            try:
                body = await self._post_json(
                    engine, url, _with(payload, n=n), headers=headers, tokens=tokens_n
                )
            except RequestError as exc:
                if exc.status not in _N_REJECTED:
                    raise
                choices = await self._fan_out(
                    engine, url, payload, n, 0, tokens, params.get("seed"), headers
                )
                self._n_unsupported = True  # the single requests worked: n was the problem
                return ModelResult.of(choices)
            choices = self._parse(body)[:n]
            if len(choices) < n:
                more = await self._fan_out(
                    engine,
                    url,
                    payload,
                    n - len(choices),
                    len(choices),
                    tokens,
                    params.get("seed"),
                    headers,
                )
                self._n_unsupported = True
                choices += more
            return ModelResult.of(choices)
        return ModelResult.of(
            await self._fan_out(engine, url, payload, n, 0, tokens, params.get("seed"), headers)
        )

    async def _fan_out(
        self,
        engine: RequestEngine,
        url: str,
        payload: Callable[[], Awaitable[dict[str, Any]]],
        count: int,
        offset: int,
        tokens: int,
        seed: Any = None,
        headers: dict[str, str] | None = None,
    ) -> list[Choice]:
        async def one(k: int) -> Choice:
            body: Payload = payload
            if isinstance(seed, int) and offset + k > 0:  # distinct seeds, distinct answers
                body = _with(payload, seed=seed + offset + k)
            response = await self._post_json(engine, url, body, headers=headers, tokens=tokens)
            return self._parse(response)[0]

        return await fan_out(count, one)

    def _estimate_tokens(self, input: FormattedInput, params: dict[str, Any], n: int = 1) -> int:
        """Tokens-per-minute estimate of a request: prompt characters / 4, a rough 256 per
        image, and ``max_tokens`` per choice (0 when not set)."""
        chars, images = prompt_chars(input)
        max_tokens = params.get("max_completion_tokens") or params.get("max_tokens") or 0
        return chars // 4 + images * _IMAGE_TOKEN_ESTIMATE + int(max_tokens) * n

    def _parse(self, body: Any) -> list[Choice]:
        """Choices of a chat completion, in index order; raises `InvalidResponseError`."""
        backend = type(self).__name__
        if not isinstance(body, dict):
            raise InvalidResponseError(backend, f"expected a JSON object, got {excerpt(body)}")
        raw = body.get("choices")
        if not isinstance(raw, list) or not raw:
            if body.get("error"):
                raise InvalidResponseError(backend, f"the server answered {excerpt(body['error'])}")
            raise InvalidResponseError(backend, f"the response has no choices: {excerpt(body)}")
        raw = sorted(
            raw, key=lambda c: (_int_or_none(c.get("index")) or 0) if isinstance(c, dict) else 0
        )
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
        total_out = _int_or_none(usage.get("completion_tokens"))
        shares = _split(total_out, len(raw)) if total_out is not None else [None] * len(raw)

        choices: list[Choice] = []
        for k, choice in enumerate(raw):
            if not isinstance(choice, dict):
                choices.append(Choice.failed(f"choice {k} is not an object"))
                continue
            message = choice.get("message")
            text = _content_text(message.get("content")) if isinstance(message, dict) else None
            own = choice.get("usage")
            out_tokens = shares[k]
            if isinstance(own, dict) and _int_or_none(own.get("completion_tokens")) is not None:
                out_tokens = own["completion_tokens"]
            error = None
            if text is None:
                refusal = message.get("refusal") if isinstance(message, dict) else None
                why = (
                    f"the model refused: {refusal}"
                    if refusal
                    else f"finish_reason={choice.get('finish_reason')!r}"
                )
                error = f"choice {k} has no text content ({why})"
            finish = choice.get("finish_reason")
            finish = finish if isinstance(finish, str) else None
            failure = None if error is None else ResultError(error, "invalid_response")
            choices.append(Choice(text, prompt_tokens, out_tokens, failure, finish))
        if all(c.text is None for c in choices):
            raise InvalidResponseError(
                backend, choices[0].error_message or "no choice has text content"
            )
        return choices


class OpenAILLM(OpenAIChatLLM):
    """A chat model behind OpenAI's API, or any OpenAI-compatible server (``base_url``).

    Images go as ``image_url`` parts: http(s) URLs are passed through for the server to fetch,
    every other image is sent as a data URL (resized first with ``image_resize``).
    ``generation_kwargs`` go into the request as they are (``max_tokens`` or
    ``max_completion_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``, ...), except
    the SDK's request options: ``extra_headers`` are sent as HTTP headers, ``extra_query`` as
    query parameters and ``extra_body``'s keys merged into the body
    (`pixtill.models.request_options`).

    Statistics per generation: ``input_tokens`` is the request's prompt tokens, ``output_tokens``
    the choice's completion tokens (the request's total split evenly when the server gives only
    a total).
    """

    model: str = Field(description="Model name sent with every request, e.g. 'gpt-4o-mini'.")
    base_url: str = Field(default=OPENAI_BASE_URL, description="Root of the API (with /v1).")
    api_key: SecretStr | None = SecretField("API key; defaults to OPENAI_API_KEY at load time.")

    @property
    def model_name(self) -> str:
        return self.model

    def _chat_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def _wire_model(self) -> str:
        return self.model

    def _auth_headers(self) -> dict[str, str]:
        key = resolve_secret(self.api_key, "OPENAI_API_KEY")
        if key is None:
            if self.base_url.rstrip("/") == OPENAI_BASE_URL:
                raise ValueError("OpenAILLM: no API key: pass api_key= or set OPENAI_API_KEY")
            return {}  # a local OpenAI-compatible server may need none
        return {"Authorization": f"Bearer {key}"}
