"""Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from pixtill.models.build_once import once
from pixtill.models.llms._wire import (
    Choice,
    anthropic_messages,
    fan_out,
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
from pixtill.models.results import ModelResult
from pixtill.models.structured import (
    StructuredOutputNotSupportedError,
    StructuredOutputSpec,
    json_schema_of,
    schema_name,
)
from pixtill.utils import fast_json

__all__ = ["AnthropicLLM"]

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024
_RESERVED = ("model", "messages", "system", "stream", "n", "seed")
_IMAGE_TOKEN_ESTIMATE = 256


class AnthropicLLM(RemoteModel, AsyncLLM):
    """A Claude model through the Messages API (``POST {base_url}/v1/messages``).

    System messages go to the top-level ``system`` field. Images become ``image`` blocks: http(s)
    URLs as a ``url`` source, everything else as ``base64`` with the media type sniffed from the
    bytes (formats the API does not take are sent as PNG). ``max_tokens`` (required by the API)
    defaults to 1024; OpenAI-style ``stop`` and ``max_completion_tokens`` are translated, other
    ``generation_kwargs`` (``temperature``, ``top_p``, ``top_k``, ``stop_sequences``...) go as
    they are, except the SDK's request options: ``extra_headers`` (e.g. an ``anthropic-beta``
    flag) are sent as HTTP headers, ``extra_query`` as query parameters, ``extra_body``'s keys
    merged into the body. The API has no ``n``: several generations are separate requests.

    Structured output (a task's ``structured_output=``) is sent as one forced tool whose
    ``input_schema`` is the schema; the tool call's input comes back as the generation's JSON
    text.
    """

    model: str = Field(description="Model name, e.g. 'claude-sonnet-4-5'.")
    base_url: str = Field(default=ANTHROPIC_BASE_URL, description="Root of the API.")
    api_key: SecretStr | None = SecretField("API key; defaults to ANTHROPIC_API_KEY at load time.")
    anthropic_version: str = Field(default="2023-06-01", description="`anthropic-version` header.")
    generation_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"max_tokens": DEFAULT_MAX_TOKENS},
        description="Sent with every request; max_tokens is 1024 when not given.",
    )

    @property
    def model_name(self) -> str:
        return self.model

    def _auth_headers(self) -> dict[str, str]:
        key = resolve_secret(self.api_key, "ANTHROPIC_API_KEY")
        if key is None:
            if self.base_url.rstrip("/") == ANTHROPIC_BASE_URL:
                raise ValueError("AnthropicLLM: no API key: pass api_key= or set ANTHROPIC_API_KEY")
            return {}
        return {"x-api-key": key}

    def _extra_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.anthropic_version}

    def _messages_url(self) -> str:
        root = self.base_url.rstrip("/")
        return f"{root}/messages" if root.endswith("/v1") else f"{root}/v1/messages"

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
        params = _anthropic_params(params)
        tool = _tool_of(spec) if spec is not None else None
        if tool is not None:
            params["tools"] = [tool]
            params["tool_choice"] = {"type": "tool", "name": tool["name"]}

        async def build() -> dict[str, Any]:
            # Runs once the request has its slot in the engine's window.
            system, messages = await anthropic_messages(input, self.image_resize)
            body: dict[str, Any] = {"model": self.model, "messages": messages, **params}
            if system is not None:
                body["system"] = system
            body.update(options.body)
            return body

        payload = once(build)
        tool_name = None if tool is None else tool["name"]
        tokens = 0
        if self.tokens_per_minute is not None:
            chars, images = prompt_chars(input)
            tokens = chars // 4 + images * _IMAGE_TOKEN_ESTIMATE + int(params["max_tokens"])
        url = options.url(self._messages_url())
        headers = options.headers or None

        async def one(_: int) -> Choice:
            body = await self._post_json(engine, url, payload, headers=headers, tokens=tokens)
            return self._parse(body, tool_name)

        return ModelResult.of(await fan_out(request.n, one))

    def _parse(self, body: Any, tool_name: str | None = None) -> Choice:
        if not isinstance(body, dict):
            raise InvalidResponseError(
                "AnthropicLLM", f"expected a JSON object, got {excerpt(body)}"
            )
        content = body.get("content")
        if not isinstance(content, list):
            if body.get("error"):
                raise InvalidResponseError(
                    "AnthropicLLM", f"the server answered {excerpt(body['error'])}"
                )
            raise InvalidResponseError(
                "AnthropicLLM", f"the response has no content: {excerpt(body)}"
            )
        if tool_name is not None:
            calls = [
                block.get("input")
                for block in content
                if isinstance(block, dict)
                and block.get("type") == "tool_use"
                and block.get("name") == tool_name
            ]
            texts = [fast_json.dumps(calls[0]).decode()] if calls else []
        else:
            texts = [  # a block whose text is null is no text, never the word "None"
                block["text"]
                for block in content
                if isinstance(block, dict)
                and block.get("type") == "text"
                and isinstance(block.get("text"), str)
            ]
        if not texts:
            if tool_name is not None:
                raise InvalidResponseError(
                    "AnthropicLLM",
                    f"the response has no {tool_name!r} tool call "
                    f"(stop_reason={body.get('stop_reason')!r})",
                )
            raise InvalidResponseError(
                "AnthropicLLM",
                f"the response has no text block (stop_reason={body.get('stop_reason')!r})",
            )
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        input_tokens = _int(usage.get("input_tokens"))
        if input_tokens is not None:  # cached prompt tokens are counted apart
            for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                input_tokens += _int(usage.get(key)) or 0
        stop = body.get("stop_reason")
        return Choice(
            "".join(texts),
            input_tokens,
            _int(usage.get("output_tokens")),
            finish_reason=stop if isinstance(stop, str) else None,
        )


def _tool_of(spec: StructuredOutputSpec) -> dict[str, Any]:
    """The one tool whose input is the structured output (Anthropic's documented way to get
    JSON that follows a schema: a forced tool call)."""
    schema = json_schema_of(spec)
    if schema.get("type") != "object":  # tool input is always an object
        raise StructuredOutputNotSupportedError(
            "AnthropicLLM: structured output needs an object schema (it is a tool's input)"
        )
    return {
        "name": schema_name(spec),
        "description": "Record the answer in this exact structure.",
        "input_schema": schema,
    }


def _int(value: Any) -> int | None:
    """A token count from the server's usage: a non-negative int, else None (a negative or
    non-integer count is the server's bug, not a statistic to store)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _anthropic_params(params: dict[str, Any]) -> dict[str, Any]:
    """Generation kwargs in the Messages API's names; ``max_tokens`` always set."""
    for key in _RESERVED:
        params.pop(key, None)
    if "max_completion_tokens" in params:
        params.setdefault("max_tokens", params.pop("max_completion_tokens"))
    params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    if "stop" in params:
        stop = params.pop("stop")
        params.setdefault("stop_sequences", [stop] if isinstance(stop, str) else list(stop))
    return params
