"""OpenAI's Batch API: chat completions at about half the price, answered within 24 hours.

Flow (https://platform.openai.com/docs/guides/batch): the requests are written as JSONL
(``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``), uploaded with
``POST /v1/files`` (``purpose=batch``), a batch is created with ``POST /v1/batches``, polled
with ``GET /v1/batches/{id}`` until it is ``completed`` (or ``failed`` / ``expired`` /
``cancelled``), and the answers are read from its output file (``GET /v1/files/{id}/content``)
and its error file, matched back to the rows by ``custom_id``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from pixtill.models.llms._batch import BatchLLM, BatchStatus, RequestLine, jsonl_records
from pixtill.models.llms._batch_errors import openai_batch_kind, openai_line_error
from pixtill.models.llms._wire import Choice, openai_messages
from pixtill.models.llms.base import FormattedInput
from pixtill.models.llms.openai import OPENAI_BASE_URL, OpenAIChatLLM
from pixtill.models.multipart import FilePart, encode_multipart
from pixtill.models.remote import InvalidResponseError, SecretField, excerpt, resolve_secret
from pixtill.models.structured import StructuredOutputSpec, json_schema_of, schema_name
from pixtill.models.transport import RequestEngine

__all__ = ["OpenAIBatchLLM"]

_RESERVED = ("model", "messages", "n", "stream", "structured_output")
_ENDED_WITHOUT_ALL = {"failed", "expired", "cancelled"}


def response_format_of(spec: StructuredOutputSpec) -> dict[str, Any]:
    """A strict ``json_schema`` response format for a structured-output spec."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema_name(spec), "schema": json_schema_of(spec), "strict": True},
    }


class OpenAIBatchLLM(BatchLLM):
    """Chat completions through OpenAI's Batch API (or a compatible server's).

    Use it like `OpenAILLM` in any task; each batch of rows the pipeline hands the task
    becomes one provider batch (raise the task's ``input_batch_size`` to send more rows per
    batch), split into several when a file would exceed ``max_requests_per_file`` requests or
    ``max_file_bytes`` bytes (OpenAI: 50,000 requests, 200 MB). Images go in the requests as
    data URLs (http URLs as they are), resized first with ``image_resize``. Each input is one
    request with ``n = num_generations``. ``generation_kwargs`` go into every request body;
    ``structured_output=`` becomes a strict ``json_schema`` response format.

    Submitted batch ids are kept under ``state_dir``: a run that was stopped while OpenAI
    worked collects those batches when run again (see `pixtill.models.llms._batch`).
    """

    provider: ClassVar[str] = "openai"

    model: str = Field(description="Model name, e.g. 'gpt-4o-mini'.")
    base_url: str = Field(default=OPENAI_BASE_URL, description="Root of the API (with /v1).")
    api_key: SecretStr | None = SecretField("API key; defaults to OPENAI_API_KEY at load time.")
    completion_window: str = Field(default="24h", description="The batch's completion window.")
    max_requests_per_file: int = Field(default=50_000, ge=1)
    max_file_bytes: int = Field(default=200 * 10**6, ge=1024)
    image_detail: Literal["auto", "low", "high"] | None = Field(
        default=None, description="`detail` of every image part."
    )

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def max_requests_per_batch(self) -> int:
        return self.max_requests_per_file

    @property
    def max_bytes_per_batch(self) -> int:
        return self.max_file_bytes

    def _root(self) -> str:
        return self.base_url.rstrip("/")

    def _auth_headers(self) -> dict[str, str]:
        key = resolve_secret(self.api_key, "OPENAI_API_KEY")
        if key is None:
            if self._root() == OPENAI_BASE_URL:
                raise ValueError("OpenAIBatchLLM: no API key: pass api_key= or set OPENAI_API_KEY")
            return {}
        return {"Authorization": f"Bearer {key}"}

    async def _request_lines(
        self, index: int, input: FormattedInput, num_generations: int, params: dict[str, Any]
    ) -> list[RequestLine]:
        body = {k: v for k, v in params.items() if k not in _RESERVED and v is not None}
        messages = await openai_messages(input, self.image_resize, self.image_detail)
        body = {"model": self.model, "messages": messages, **body}
        if num_generations > 1:
            body["n"] = num_generations
        spec = params.get("structured_output")
        if spec is not None:
            body["response_format"] = response_format_of(spec)
        return [RequestLine(f"r{index}", index, 0, body)]

    def _wire_line(self, line: RequestLine) -> dict[str, Any]:
        return {
            "custom_id": line.custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": line.body,
        }

    async def _submit(self, engine: RequestEngine, lines: list[bytes]) -> str:
        body, content_type = encode_multipart(
            [
                ("purpose", "batch"),
                ("file", FilePart(b"".join(lines), "pixtill-batch.jsonl", "application/jsonl")),
            ]
        )
        raw = await self._post_raw(engine, f"{self._root()}/files", body, content_type)
        uploaded = _json_object(raw, "the file upload")
        file_id = uploaded.get("id")
        if not isinstance(file_id, str):
            raise InvalidResponseError("OpenAIBatchLLM", f"upload gave no id: {excerpt(raw)}")
        created = await self._post_json(
            engine,
            f"{self._root()}/batches",
            {
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": self.completion_window,
                "metadata": {"created_by": "pixtill"},
            },
        )
        batch_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(batch_id, str):
            raise InvalidResponseError("OpenAIBatchLLM", f"no batch id: {excerpt(created)}")
        return batch_id

    async def _poll(self, engine: RequestEngine, batch_id: str) -> BatchStatus:
        batch = await self._get_json(engine, f"{self._root()}/batches/{batch_id}")
        if not isinstance(batch, dict):
            raise InvalidResponseError("OpenAIBatchLLM", f"batch status: {excerpt(batch)}")
        status = batch.get("status")
        files = {
            k: batch[k]
            for k in ("output_file_id", "error_file_id")
            if isinstance(batch.get(k), str)
        }
        if status == "completed":
            return BatchStatus(batch_id, True, None, files)
        if status in _ENDED_WITHOUT_ALL:
            errors = (batch.get("errors") or {}).get("data") or []
            messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
            why = f"ended {status}: {messages}".rstrip(": ")
            return BatchStatus(batch_id, True, why, files, openai_batch_kind(status))
        return BatchStatus(batch_id, False)

    async def _results(self, engine: RequestEngine, status: BatchStatus) -> dict[str, list[Choice]]:
        choices: dict[str, list[Choice]] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = status.extra.get(key)
            if not file_id:
                continue
            data = await self._get(engine, f"{self._root()}/files/{file_id}/content")
            for record in jsonl_records(data):
                cid = record.get("custom_id")
                if isinstance(cid, str):
                    choices[cid] = self._choices(record)
        return choices

    def _choices(self, record: dict[str, Any]) -> list[Choice]:
        response = record.get("response") or {}
        error = record.get("error")
        code = response.get("status_code")
        body = response.get("body")
        if error or code != 200:
            detail = error or (body.get("error") if isinstance(body, dict) else body)
            message = f"OpenAI batch request failed ({code}): {excerpt(detail)}"
            return [Choice.failed(openai_line_error(message, code, error))]
        try:
            return _PARSER._parse(body)
        except InvalidResponseError as exc:
            return [Choice.failed(str(exc))]


class OpenAIBatchResults(OpenAIChatLLM):
    """Reuses `OpenAIChatLLM`'s response parsing for the bodies inside a results file."""

    def _chat_url(self) -> str:  # pragma: no cover - never sends
        return ""

    def _wire_model(self) -> str:  # pragma: no cover - never sends
        return ""

    @property
    def model_name(self) -> str:  # pragma: no cover - never sends
        return "OpenAIBatchResults"


_PARSER = OpenAIBatchResults()


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    from pixtill.utils.fast_json import loads

    try:
        value = loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidResponseError("OpenAIBatchLLM", f"{what} answered {excerpt(raw)}")
    return value
