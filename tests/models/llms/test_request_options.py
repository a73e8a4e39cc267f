"""The SDKs' request options in ``generation_kwargs`` (``extra_headers``, ``extra_query``,
``extra_body``) reach a server the way the OpenAI and Anthropic SDKs send them: as HTTP
headers, URL query parameters and body fields. A local server records what it got."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from models.fake_providers import FAST, loaded
from pixtill.models.image_editing import InferenceEndpointsImageEditing, OpenAIImageEditing
from pixtill.models.image_generation import (
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.models.llms import AnthropicLLM, OpenAILLM
from pixtill.models.request_options import split_request_options
from pixtill.steps.tasks import METADATA_COLUMN, ImageEditing, ImageGeneration, TextGeneration
from sample_images import image_bytes

SECRET = "hdr-SECRET-value-0123456789"
PNG = image_bytes(4, 4)
PNG_B64 = base64.b64encode(PNG).decode()


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_post("/hf/{task}", self._hf_task)
        return app

    async def _record(self, request: web.Request, body: Any = None) -> dict[str, Any]:
        body = await request.json() if body is None else body
        self.requests.append(
            {"headers": dict(request.headers), "query": dict(request.query), "body": body}
        )
        return body  # type: ignore[no-any-return]

    async def _images(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        return web.json_response({"data": [{"b64_json": PNG_B64}] * body.get("n", 1)})

    async def _edits(self, request: web.Request) -> web.Response:
        form = await request.post()  # multipart: the text fields are the body
        body = {k: v for k, v in form.items() if isinstance(v, str)}
        await self._record(request, body)
        return web.json_response({"data": [{"b64_json": PNG_B64}] * int(body.get("n", 1))})

    async def _hf_task(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(body=PNG, content_type="image/png")

    async def _chat(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        n = body.get("n", 1)
        choices = [
            {"index": k, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            for k in range(n)
        ]
        return web.json_response({"choices": choices, "usage": {"prompt_tokens": 3}})

    async def _messages(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response(
            {"content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 3}}
        )


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()
    with serve(rec.app()) as base:
        yield rec, base


OPTIONS = {
    "temperature": 0.1,
    "extra_headers": {"OpenAI-Project": "proj_1", "X-Custom-Auth": SECRET},
    "extra_query": {"api-version": "2024-10-21"},
    "extra_body": {"top_k": 5},
}


def _run(llm: Any, num_generations: int = 1) -> list[dict[str, Any]]:
    task = TextGeneration(name="ask", llm=llm, num_generations=num_generations)
    with loaded(task):
        return [r for batch in task.process([{"instruction": "hi"}]) for r in batch]


@pytest.mark.parametrize("num_generations", [1, 2])
def test_openai_extra_headers_are_http_headers_not_body_fields(
    recorder: tuple[Recorder, str], num_generations: int, caplog: pytest.LogCaptureFixture
) -> None:
    rec, base = recorder
    llm = OpenAILLM(
        model="m", base_url=f"{base}/v1", api_key="sk-x", generation_kwargs=OPTIONS, **FAST
    )
    with caplog.at_level(logging.DEBUG):
        rows = _run(llm, num_generations)
    assert rows[0]["generation"] == "ok"
    (got,) = rec.requests
    assert got["headers"]["OpenAI-Project"] == "proj_1"
    assert got["headers"]["X-Custom-Auth"] == SECRET
    assert got["query"] == {"api-version": "2024-10-21"}
    assert got["body"]["top_k"] == 5 and got["body"]["temperature"] == 0.1
    assert not {"extra_headers", "extra_query", "extra_body"} & set(got["body"])
    assert SECRET not in caplog.text
    assert SECRET not in str(rows[0][METADATA_COLUMN])


def test_anthropic_extra_headers_are_http_headers_not_body_fields(
    recorder: tuple[Recorder, str],
) -> None:
    rec, base = recorder
    options = {"extra_headers": {"anthropic-beta": "files-api-2025-04-14"}, "extra_body": {"x": 1}}
    llm = AnthropicLLM(
        model="claude", base_url=base, api_key="k", generation_kwargs=options, **FAST
    )
    rows = _run(llm)
    assert rows[0]["generation"] == "ok"
    (got,) = rec.requests
    assert got["headers"]["anthropic-beta"] == "files-api-2025-04-14"
    assert got["body"]["x"] == 1 and "extra_headers" not in got["body"]


def test_a_malformed_option_names_its_type_never_its_value() -> None:
    with pytest.raises(ValueError, match=r"\['extra_headers'\]\['X-Key'\] must be text") as err:
        split_request_options({"extra_headers": {"X-Key": [SECRET]}}, "OpenAILLM")
    assert SECRET not in str(err.value)
    with pytest.raises(ValueError, match="extra_body'\\] must be a mapping"):
        split_request_options({"extra_body": "x"}, "OpenAILLM")
    options = split_request_options({"extra_headers": {"A": 1, "B": None}}, "OpenAILLM")
    assert options.headers == {"A": "1"}  # None leaves a header out, as in the SDKs
    assert options.url("http://h/v1/x?a=1") == "http://h/v1/x?a=1"


def test_batch_requests_carry_extra_body_and_every_batch_call_the_extra_headers(
    tmp_path: Any,
) -> None:
    from models.llms.batch_job import KEY
    from models.llms.fake_batches import FakeBatches
    from pixtill.models.llms import OpenAIBatchLLM

    fake = FakeBatches(api_key=KEY)
    seen: list[str | None] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.headers.get("OpenAI-Project"))
        return await handler(request)  # type: ignore[no-any-return]

    app = fake.app()
    app.middlewares.append(record)
    options = {"extra_headers": {"OpenAI-Project": "proj_1"}, "extra_body": {"top_k": 5}}
    with serve(app) as base:
        llm = OpenAIBatchLLM(
            model="gpt-4o-mini",
            base_url=f"{base}/v1",
            api_key=KEY,
            state_dir=tmp_path / "batches",
            poll_interval=0.0,
            generation_kwargs=options,
        )
        with loaded(llm):
            (output,) = llm.generate([[{"role": "user", "content": "hi"}]])
    assert output["generations"][0]
    (batch,) = fake.batches.values()
    body = batch.lines[0]["body"]
    assert body["top_k"] == 5 and "extra_headers" not in body and "extra_body" not in body
    assert seen and set(seen) == {"proj_1"}  # upload, create, polls, results


IMAGE_OPTIONS = {
    "extra_headers": {"OpenAI-Project": "proj_1", "X-Custom-Auth": SECRET},
    "extra_query": {"api-version": "2024-10-21"},
    "extra_body": {"moderation": "low"},
}


def _image_backends(base: str) -> list[tuple[Any, str]]:
    kw: dict[str, Any] = {"generation_kwargs": IMAGE_OPTIONS, **FAST}
    return [
        (OpenAIImageGeneration(model="gpt-image-1", base_url=f"{base}/v1", api_key="k", **kw), "g"),
        (OpenAIImageEditing(model="gpt-image-1", base_url=f"{base}/v1", api_key="k", **kw), "e"),
        (InferenceEndpointsImageGeneration(base_url=f"{base}/hf/t2i", **kw), "g"),
        (InferenceEndpointsImageEditing(base_url=f"{base}/hf/i2i", **kw), "e"),
    ]


@pytest.mark.parametrize("which", range(4))
def test_image_backends_send_extra_headers_as_headers_and_query_as_query(
    recorder: tuple[Recorder, str],
    which: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    rec, base = recorder
    model, kind = _image_backends(base)[which]
    task: Any
    if kind == "g":
        task, row = ImageGeneration(name="draw", image_generation_model=model), {"prompt": "a cat"}
    else:
        task = ImageEditing(name="edit", image_editing_model=model)
        row = {"image": PNG_B64, "prompt": "make it red"}
    with caplog.at_level(logging.DEBUG), loaded(task):
        (out,) = [r for batch in task.process([row]) for r in batch]
    assert out["image"] is not None, out[METADATA_COLUMN]
    (got,) = rec.requests
    assert got["headers"]["OpenAI-Project"] == "proj_1"
    assert got["headers"]["X-Custom-Auth"] == SECRET
    assert got["query"] == {"api-version": "2024-10-21"}
    body = got["body"]
    fields = body["parameters"] if "/hf/" in str(model.base_url) else body  # HF: as huggingface_hub
    assert fields["moderation"] == "low"
    assert not {"extra_headers", "extra_query", "extra_body"} & (set(body) | set(fields))
    assert SECRET not in caplog.text
    assert SECRET not in str(out[METADATA_COLUMN])


def test_an_sdk_client_gets_the_options_back_as_its_own_keywords() -> None:
    seen: dict[str, Any] = {}

    class Images:
        async def generate(self, **kwargs: Any) -> Any:
            seen.update(kwargs)
            return type("Answer", (), {"data": [type("Item", (), {"b64_json": PNG_B64})()]})()

    model = OpenAIImageGeneration(
        model="gpt-image-1", api_key="k", generation_kwargs=IMAGE_OPTIONS, **FAST
    )
    model._aclient = type("Client", (), {"images": Images()})()
    task = ImageGeneration(name="draw", image_generation_model=model)
    with loaded(task):
        (out,) = [r for batch in task.process([{"prompt": "a cat"}]) for r in batch]
    assert out["image"] is not None
    assert seen["extra_headers"] == IMAGE_OPTIONS["extra_headers"]
    assert seen["extra_query"] == IMAGE_OPTIONS["extra_query"]
    assert seen["extra_body"] == {"moderation": "low"} and "moderation" not in seen
