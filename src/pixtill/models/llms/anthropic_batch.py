"""Anthropic's Message Batches API: Messages requests at half the price, within 24 hours.

Flow (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing): ``POST
/v1/messages/batches`` with ``{"requests": [{"custom_id", "params"}]}``, poll ``GET
/v1/messages/batches/{id}`` until ``processing_status`` is ``ended``, then read the JSONL at its
``results_url`` (``{"custom_id", "result": {"type": "succeeded", "message"}}``, or ``errored``,
``canceled``, ``expired``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr

from pixtill.models.llms._batch import BatchLLM, BatchStatus, RequestLine, jsonl_records
from pixtill.models.llms._batch_errors import anthropic_line_error
from pixtill.models.llms._wire import Choice, anthropic_messages
from pixtill.models.llms.anthropic import ANTHROPIC_BASE_URL, AnthropicLLM, _anthropic_params
from pixtill.models.llms.base import FormattedInput
from pixtill.models.remote import InvalidResponseError, SecretField, excerpt, resolve_secret
from pixtill.models.structured import json_schema_of, schema_name
from pixtill.models.transport import RequestEngine
from pixtill.utils import fast_json

__all__ = ["AnthropicBatchLLM"]


class AnthropicBatchLLM(BatchLLM):
    """Claude through Anthropic's Message Batches API.

    Use it like `AnthropicLLM` in any task. Each batch of rows a task gets becomes one provider
    batch (several past ``max_batch_requests`` requests or ``max_batch_bytes`` bytes;
    Anthropic: 100,000 requests, 256 MB). The API has no ``n``: each generation is its own
    request (custom id ``r<row>-g<k>``). Images go as base64 ``image`` blocks (http URLs as URL
    sources). ``structured_output=`` is sent as a forced tool whose ``input_schema`` is the
    schema; the tool call's input comes back as the JSON text.

    Submitted batch ids are kept under ``state_dir`` and collected by a later run of the same
    requests (see `pixtill.models.llms._batch`).
    """

    provider: ClassVar[str] = "anthropic"

    model: str = Field(description="Model name, e.g. 'claude-sonnet-4-5'.")
    base_url: str = Field(default=ANTHROPIC_BASE_URL, description="Root of the API.")
    api_key: SecretStr | None = SecretField("API key; defaults to ANTHROPIC_API_KEY at load time.")
    anthropic_version: str = Field(default="2023-06-01", description="`anthropic-version` header.")
    max_batch_requests: int = Field(default=100_000, ge=1)
    max_batch_bytes: int = Field(default=256 * 10**6, ge=1024)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def max_requests_per_batch(self) -> int:
        return self.max_batch_requests

    @property
    def max_bytes_per_batch(self) -> int:
        return self.max_batch_bytes

    def _root(self) -> str:
        root = self.base_url.rstrip("/")
        return root if root.endswith("/v1") else f"{root}/v1"

    def _auth_headers(self) -> dict[str, str]:
        key = resolve_secret(self.api_key, "ANTHROPIC_API_KEY")
        if key is None:
            if self.base_url.rstrip("/") == ANTHROPIC_BASE_URL:
                raise ValueError(
                    "AnthropicBatchLLM: no API key: pass api_key= or set ANTHROPIC_API_KEY"
                )
            return {}
        return {"x-api-key": key}

    def _extra_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.anthropic_version, **super()._extra_headers()}

    async def _request_lines(
        self, index: int, input: FormattedInput, num_generations: int, params: dict[str, Any]
    ) -> list[RequestLine]:
        options = dict(params)
        spec = options.pop("structured_output", None)
        options = _anthropic_params({k: v for k, v in options.items() if v is not None})
        system, messages = await anthropic_messages(input, self.image_resize)
        body: dict[str, Any] = {"model": self.model, "messages": messages, **options}
        if system is not None:
            body["system"] = system
        if spec is not None:
            name = schema_name(spec)
            body["tools"] = [
                {
                    "name": name,
                    "description": "Give the answer as this tool's input.",
                    "input_schema": json_schema_of(spec),
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": name}
        return [RequestLine(f"r{index}-g{k}", index, k, body) for k in range(num_generations)]

    def _wire_line(self, line: RequestLine) -> dict[str, Any]:
        return {"custom_id": line.custom_id, "params": line.body}

    async def _submit(self, engine: RequestEngine, lines: list[bytes]) -> str:
        # The request lines are already-encoded JSON objects: splice them into one body
        # instead of decoding and re-encoding every image.
        payload = b'{"requests":[' + b",".join(line.rstrip(b"\n") for line in lines) + b"]}"
        raw = await self._post_raw(
            engine, f"{self._root()}/messages/batches", payload, "application/json"
        )
        created = _object(raw, "creating the batch")
        batch_id = created.get("id")
        if not isinstance(batch_id, str):
            raise InvalidResponseError("AnthropicBatchLLM", f"no batch id: {excerpt(created)}")
        return batch_id

    async def _poll(self, engine: RequestEngine, batch_id: str) -> BatchStatus:
        batch = await self._get_json(engine, f"{self._root()}/messages/batches/{batch_id}")
        if not isinstance(batch, dict):
            raise InvalidResponseError("AnthropicBatchLLM", f"batch status: {excerpt(batch)}")
        if batch.get("processing_status") != "ended":
            return BatchStatus(batch_id, False)
        url = batch.get("results_url")
        if not isinstance(url, str) or not url:
            return BatchStatus(batch_id, True, "ended without a results_url")
        return BatchStatus(batch_id, True, None, {"results_url": url})

    async def _results(self, engine: RequestEngine, status: BatchStatus) -> dict[str, list[Choice]]:
        data = await self._get(engine, status.extra["results_url"])
        out: dict[str, list[Choice]] = {}
        for record in jsonl_records(data):
            cid = record.get("custom_id")
            if isinstance(cid, str):
                out[cid] = [_choice(record.get("result"))]
        return out


_PARSER = AnthropicLLM(model="batch-results", base_url="http://unused.invalid")


def _choice(result: Any) -> Choice:
    if not isinstance(result, dict):
        return Choice.failed(f"AnthropicBatchLLM: malformed result {excerpt(result)}")
    kind = result.get("type")
    if kind != "succeeded":
        detail = result.get("error") or kind
        why = f"Anthropic batch request {kind}: {excerpt(detail)}"
        return Choice.failed(anthropic_line_error(why, kind, result.get("error")))
    message = result.get("message")
    if isinstance(message, dict):
        for block in message.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                usage = message.get("usage") or {}
                text = fast_json.dumps(block.get("input")).decode()
                return Choice(text, usage.get("input_tokens"), usage.get("output_tokens"))
    try:
        return _PARSER._parse(message)
    except InvalidResponseError as exc:
        return Choice.failed(str(exc))


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = fast_json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidResponseError("AnthropicBatchLLM", f"{what} answered {excerpt(raw)}")
    return value
