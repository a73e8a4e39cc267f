"""A fake batch server for OpenAI's Batch API and Anthropic's Message Batches, on 127.0.0.1.

It validates what the real services validate and what pixtill could get wrong: the JSONL
(one JSON object per line, unique custom ids, method/url/body, the provider's limits on lines
and bytes per batch) and every image inside it (data URLs / base64 blocks must decode, their
declared media type must match the bytes). Batches stay ``in_progress`` while ``hold`` is set
and for ``polls_before_done`` polls after that, so tests decide when the provider "finishes"
without any clock. Requests whose text holds ``[[fail]]`` are answered with an error (a 400);
``[[fail:429]]`` (any status) with the error a request of that status gets: OpenAI's
``status_code``, Anthropic's error type (nested as the API documents it).

    POST /v1/files                       multipart upload (purpose=batch)
    POST /v1/batches                     create an OpenAI batch
    GET  /v1/batches/{id}                its status
    GET  /v1/files/{id}/content          input / output / error files
    POST /v1/messages/batches            create an Anthropic batch
    GET  /v1/messages/batches/{id}       its status
    GET  /v1/messages/batches/{id}/results
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

_DATA_URL = re.compile(r"^data:(image/[a-z]+);base64,(.*)$", re.DOTALL)
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FAIL = re.compile(r"\[\[fail(?::(\d{3}))?\]\]")
_ANTHROPIC_ERROR = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _failure_status(text: str) -> int | None:
    """The status a ``[[fail]]`` / ``[[fail:NNN]]`` marker asks for, None without one."""
    match = _FAIL.search(text)
    return None if match is None else int(match.group(1) or 400)


class _Bad(Exception):
    pass


def _image(data: bytes, declared: str) -> str:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except OSError as exc:
        raise _Bad(f"an image does not decode: {exc}") from None
    if _MIME.get(image.format or "") != declared:
        raise _Bad(f"image is {image.format} but declared {declared}")
    return f"{image.format} {image.size[0]}x{image.size[1]}"


def _describe_openai(messages: Any) -> tuple[str, list[str]]:
    if not isinstance(messages, list) or not messages:
        raise _Bad("messages must be a non-empty list")
    words: list[str] = []
    images: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            words.append(content)
            continue
        for part in content:
            if part["type"] == "text":
                words.append(part["text"])
            elif part["type"] == "image_url":
                match = _DATA_URL.match(part["image_url"]["url"])
                if match is None:
                    raise _Bad("image_url must be a data URL")
                images.append(_image(base64.b64decode(match[2], validate=True), match[1]))
            else:
                raise _Bad(f"unknown part type {part['type']!r}")
    return " ".join(words), images


def _describe_anthropic(messages: Any) -> tuple[str, list[str]]:
    words: list[str] = []
    images: list[str] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            words.append(content)
            continue
        for block in content:
            if block["type"] == "text":
                words.append(block["text"])
            elif block["type"] == "image":
                source = block["source"]
                if source["type"] != "base64":
                    raise _Bad("expected a base64 image source")
                data = base64.b64decode(source["data"], validate=True)
                images.append(_image(data, source["media_type"]))
            else:
                raise _Bad(f"unknown block type {block['type']!r}")
    return " ".join(words), images


@dataclass
class Batch:
    id: str
    provider: str
    lines: list[dict[str, Any]]
    polls: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class FakeBatches:
    def __init__(
        self,
        *,
        api_key: str,
        max_lines: int = 50_000,
        max_bytes: int = 200 * 10**6,
        polls_before_done: int = 1,
    ) -> None:
        self.api_key = api_key
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.polls_before_done = polls_before_done
        self.hold = False  # keep every batch in progress (the provider is "working")
        self.expire = False  # end batches as expired (OpenAI) with no output
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, Batch] = {}
        self.uploads = 0
        self.rejected: list[str] = []
        self.downloads = 0
        self.echo_key: str | None = None
        # Batches polled while ``hold`` is set: a client polls only after it has saved the
        # batch's id, so a test waits on this (`wait_for_polls`) instead of on the clock.
        self.polled_while_held: set[str] = set()
        self._changed = threading.Condition()

    def wait_for_polls(self, count: int, timeout: float, stop: Callable[[], bool]) -> bool:
        """Block until ``count`` distinct batches were polled while held, or ``stop()`` is true
        (checked whenever `wake` is called), or ``timeout`` seconds pass (a safety net, not
        the test's condition). True when the polls were seen."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.polled_while_held) >= count or stop(), timeout=timeout
            )
            return len(self.polled_while_held) >= count

    def wake(self) -> None:
        """Make `wait_for_polls` re-check its ``stop`` condition (another thread saw news)."""
        with self._changed:
            self._changed.notify_all()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=512 * 2**20)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_post("/v1/batches", self._create_openai)
        app.router.add_get("/v1/batches/{id}", self._openai_status)
        app.router.add_get("/v1/files/{id}/content", self._file)
        app.router.add_post("/v1/messages/batches", self._create_anthropic)
        app.router.add_get("/v1/messages/batches/{id}", self._anthropic_status)
        app.router.add_get("/v1/messages/batches/{id}/results", self._anthropic_results)
        return app

    def _refuse(self, message: str, status: int = 400) -> web.Response:
        self.rejected.append(message)
        if status == 401 and self.echo_key is not None:  # servers sometimes echo a bad key
            message = f"{message}: {self.echo_key}"
        return web.json_response({"error": {"message": message}}, status=status)

    # ------------------------------------------------------------------ OpenAI

    def _openai_auth(self, request: web.Request) -> bool:
        self.echo_key = request.headers.get("Authorization")
        return self.echo_key == f"Bearer {self.api_key}"

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._openai_auth(request):
            return self._refuse("bad key", 401)
        fields: dict[str, bytes] = {}
        async for part in await request.multipart():
            fields[part.name or ""] = bytes(await part.read())  # type: ignore[union-attr]
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return self._refuse("purpose=batch and a file are required")
        data = fields["file"]
        if len(data) > self.max_bytes:
            return self._refuse(f"file of {len(data)} bytes is over {self.max_bytes}")
        lines = data.splitlines()
        if len(lines) > self.max_lines:
            return self._refuse(f"{len(lines)} requests is over {self.max_lines}")
        seen: set[str] = set()
        for number, raw in enumerate(lines, 1):
            try:
                line = json.loads(raw)
                if set(line) != {"custom_id", "method", "url", "body"}:
                    raise _Bad(f"keys {sorted(line)}")
                if line["method"] != "POST" or line["url"] != "/v1/chat/completions":
                    raise _Bad("method/url")
                if line["custom_id"] in seen:
                    raise _Bad(f"duplicate custom_id {line['custom_id']}")
                seen.add(line["custom_id"])
                _describe_openai(line["body"]["messages"])
            except (ValueError, KeyError, TypeError, _Bad) as exc:
                return self._refuse(f"line {number}: {exc}")
        self.uploads += 1
        file_id = f"file-{len(self.files)}"
        self.files[file_id] = data
        return web.json_response({"id": file_id, "object": "file", "purpose": "batch"})

    async def _create_openai(self, request: web.Request) -> web.Response:
        if not self._openai_auth(request):
            return self._refuse("bad key", 401)
        payload = await request.json()
        if (
            payload.get("endpoint") != "/v1/chat/completions"
            or payload.get("completion_window") != "24h"
        ):
            return self._refuse("endpoint / completion_window")
        data = self.files.get(payload.get("input_file_id", ""))
        if data is None:
            return self._refuse("no such file", 404)
        batch = Batch(
            f"batch_{len(self.batches)}", "openai", [json.loads(x) for x in data.splitlines()]
        )
        self.batches[batch.id] = batch
        return web.json_response({"id": batch.id, "object": "batch", "status": "validating"})

    def _finished(self, batch: Batch) -> bool:
        if self.hold:
            with self._changed:
                self.polled_while_held.add(batch.id)
                self._changed.notify_all()
            return False
        batch.polls += 1
        return batch.polls > self.polls_before_done

    async def _openai_status(self, request: web.Request) -> web.Response:
        if not self._openai_auth(request):
            return self._refuse("bad key", 401)
        batch = self.batches[request.match_info["id"]]
        if not self._finished(batch):
            return web.json_response({"id": batch.id, "status": "in_progress"})
        if self.expire:
            return web.json_response({"id": batch.id, "status": "expired", "output_file_id": None})
        if not batch.output and not batch.errors:
            self._answer_openai(batch)
        body: dict[str, Any] = {"id": batch.id, "status": "completed"}
        for kind, records in (("output_file_id", batch.output), ("error_file_id", batch.errors)):
            if records:
                file_id = f"{batch.id}-{kind}"
                self.files[file_id] = b"".join(json.dumps(r).encode() + b"\n" for r in records)
                body[kind] = file_id
        return web.json_response(body)

    def _answer_openai(self, batch: Batch) -> None:
        for line in batch.lines:
            text, images = _describe_openai(line["body"]["messages"])
            cid = line["custom_id"]
            status = _failure_status(text)
            if status is not None:
                batch.errors.append(
                    {
                        "custom_id": cid,
                        "response": {
                            "status_code": status,
                            "body": {"error": {"message": "scripted failure"}},
                        },
                        "error": None,
                    }
                )
                continue
            n = line["body"].get("n", 1)
            if "response_format" in line["body"]:
                schema = line["body"]["response_format"]["json_schema"]["schema"]
                answers = [json.dumps({k: "x" for k in schema.get("properties", {})})] * n
            else:
                answers = [f"{text} | {', '.join(images)} | #{k}" for k in range(n)]
            batch.output.append(
                {
                    "id": f"resp-{cid}",
                    "custom_id": cid,
                    "response": {
                        "status_code": 200,
                        "body": {
                            "choices": [
                                {"index": k, "message": {"role": "assistant", "content": a}}
                                for k, a in enumerate(answers)
                            ],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 10 * n},
                        },
                    },
                    "error": None,
                }
            )

    async def _file(self, request: web.Request) -> web.Response:
        if not self._openai_auth(request):
            return self._refuse("bad key", 401)
        self.downloads += 1
        return web.Response(body=self.files[request.match_info["id"]])

    # ------------------------------------------------------------------ Anthropic

    def _anthropic_auth(self, request: web.Request) -> bool:
        self.echo_key = request.headers.get("x-api-key")
        return (
            request.headers.get("x-api-key") == self.api_key
            and request.headers.get("anthropic-version") == "2023-06-01"
        )

    async def _create_anthropic(self, request: web.Request) -> web.Response:
        if not self._anthropic_auth(request):
            return self._refuse("bad key", 401)
        raw = await request.read()
        if len(raw) > self.max_bytes:
            return self._refuse(f"batch of {len(raw)} bytes is over {self.max_bytes}", 413)
        requests = json.loads(raw).get("requests")
        if not isinstance(requests, list) or not 0 < len(requests) <= self.max_lines:
            return self._refuse("requests: 1 to max_lines items")
        seen: set[str] = set()
        for number, item in enumerate(requests):
            try:
                if set(item) != {"custom_id", "params"} or not _CUSTOM_ID.match(item["custom_id"]):
                    raise _Bad(f"bad request item {sorted(item)}")
                if item["custom_id"] in seen:
                    raise _Bad("duplicate custom_id")
                seen.add(item["custom_id"])
                params = item["params"]
                if not isinstance(params.get("max_tokens"), int) or "n" in params:
                    raise _Bad("max_tokens is required and n is not a Messages field")
                _describe_anthropic(params["messages"])
            except (KeyError, TypeError, ValueError, _Bad) as exc:
                return self._refuse(f"request {number}: {exc}")
        batch = Batch(f"msgbatch_{len(self.batches)}", "anthropic", requests)
        self.batches[batch.id] = batch
        return web.json_response(
            {"id": batch.id, "type": "message_batch", "processing_status": "in_progress"}
        )

    async def _anthropic_status(self, request: web.Request) -> web.Response:
        if not self._anthropic_auth(request):
            return self._refuse("bad key", 401)
        batch = self.batches[request.match_info["id"]]
        if not self._finished(batch):
            return web.json_response({"id": batch.id, "processing_status": "in_progress"})
        url = f"{request.url.origin()}/v1/messages/batches/{batch.id}/results"
        return web.json_response({"id": batch.id, "processing_status": "ended", "results_url": url})

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        if not self._anthropic_auth(request):
            return self._refuse("bad key", 401)
        self.downloads += 1
        batch = self.batches[request.match_info["id"]]
        out = []
        for item in batch.lines:
            text, images = _describe_anthropic(item["params"]["messages"])
            cid = item["custom_id"]
            status = _failure_status(text)
            if status == 400 and "[[fail]]" in text:
                result: dict[str, Any] = {
                    "type": "errored",
                    "error": {"type": "invalid_request_error", "message": "scripted failure"},
                }
            elif status is not None:
                error = {"type": _ANTHROPIC_ERROR[status], "message": "scripted failure"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
            else:
                tools = item["params"].get("tools")
                if tools:
                    props = tools[0]["input_schema"].get("properties", {})
                    content = [
                        {
                            "type": "tool_use",
                            "id": "t",
                            "name": tools[0]["name"],
                            "input": {k: "x" for k in props},
                        }
                    ]
                else:
                    content = [{"type": "text", "text": f"{text} | {', '.join(images)} | {cid}"}]
                result = {
                    "type": "succeeded",
                    "message": {
                        "type": "message",
                        "role": "assistant",
                        "content": content,
                        "usage": {"input_tokens": 50, "output_tokens": 7},
                    },
                }
            out.append(json.dumps({"custom_id": cid, "result": result}).encode() + b"\n")
        return web.Response(body=b"".join(out), content_type="application/binary")
