"""The SDKs' request options in ``generation_kwargs`` (``extra_headers``, ``extra_query``,
``extra_body``) reach a server the way the OpenAI and Anthropic SDKs send them: as HTTP
headers, URL query parameters and body fields. A local server records what it got."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from models.fake_providers import FAST, loaded
from pixtill.models.llms import AnthropicLLM, OpenAILLM
from pixtill.models.request_options import split_request_options
from pixtill.steps.tasks import METADATA_COLUMN, TextGeneration

SECRET = "hdr-SECRET-value-0123456789"


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        return app

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append(
            {"headers": dict(request.headers), "query": dict(request.query), "body": body}
        )
        return body  # type: ignore[no-any-return]

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
