"""Servers that answer in ways the other fault tests do not script: odd ``Retry-After`` values,
JSON bodies of the wrong shape, a body whose ``Content-Encoding`` lies, a refused key, a
``base_url`` that is not an http(s) URL. Each row either succeeds with the server's text or
fails alone with an error that names the step and the row; nothing hangs."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from http_servers import serve
from models.fake_providers import FAST, loaded
from pixtill.cli import main
from pixtill.errors import ModelUnavailableError
from pixtill.models.image_generation import OpenAIImageGeneration
from pixtill.models.llms import AnthropicLLM, InferenceEndpointsLLM, OpenAILLM
from pixtill.steps.tasks import METADATA_COLUMN, TextGeneration, TextGenerationWithImage

OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}}]}
_MARKER = re.compile(r"\[\[(\w+)\]\]")


def _first_then_ok(status: int, retry_after: str) -> Any:
    """The first request of the row is refused with ``Retry-After: retry_after``."""
    return lambda n: (
        web.json_response({}, status=status, headers={"Retry-After": retry_after})
        if n == 1
        else web.json_response(OK)
    )


def _body(text: str | bytes, **headers: str) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return lambda n: web.Response(
        body=data, headers={"Content-Type": "application/json", **headers}
    )


ANSWERS: dict[str, Any] = {
    # Retry-After values a server may really send, and then the row succeeds
    "date_in_the_past": _first_then_ok(429, "Wed, 21 Oct 2015 07:28:00 GMT"),
    "negative": _first_then_ok(503, "-5"),
    "garbage": _first_then_ok(429, "soon-ish"),
    "nan": _first_then_ok(429, "nan"),
    "fraction": _first_then_ok(429, "0.01"),
    # waiting this long would hang the row (and pause the whole window)
    "huge": _first_then_ok(429, "999999999"),
    "far_future_date": _first_then_ok(503, "Fri, 01 Jan 2100 00:00:00 GMT"),
    # 200s whose JSON is not a chat completion
    "null_body": _body("null"),
    "array_body": _body("[1, 2]"),
    "string_body": _body('"hello"'),
    "empty_body": _body(""),
    "choices_missing": _body('{"id": "x"}'),
    "choices_null": _body('{"choices": null}'),
    "choices_not_a_list": _body('{"choices": {"a": 1}}'),
    "message_null": _body('{"choices": [{"index": 0, "message": null}]}'),
    "content_a_number": _body('{"choices": [{"index": 0, "message": {"content": 5}}]}'),
    "error_in_a_200": _body('{"error": {"message": "model overloaded"}}'),
    "part_text_null": _body(
        '{"choices": [{"index": 0, "message": {"content": [{"type": "text", "text": null}]}}]}'
    ),
    # transport lies
    "gzip_lie": _body(json.dumps(OK), **{"Content-Encoding": "gzip"}),
    "gzip_cut": _body(gzip.compress(json.dumps(OK).encode())[:20], **{"Content-Encoding": "gzip"}),
    "not_utf8": _body(b'{"choices":[{"index":0,"message":{"content":"caf\xe9"}}]}'),
    "deep_json": _body("[" * 100_000 + "]" * 100_000),
    # still a success: OpenAI-compatible servers label JSON as text/plain at times
    "text_plain": lambda n: web.Response(text=json.dumps(OK), content_type="text/plain"),
}
SUCCEED = {"date_in_the_past", "negative", "garbage", "nan", "fraction", "text_plain"}
SAYS = {
    "huge": "Retry-After: 999999999 s, over the 120 s",
    "far_future_date": "over the 120 s a request may wait",
    "null_body": "expected a JSON object, got None",
    "array_body": "expected a JSON object",
    "string_body": "expected a JSON object",
    "empty_body": "malformed JSON",
    "choices_missing": "no choices",
    "choices_null": "no choices",
    "choices_not_a_list": "no choices",
    "message_null": "no text content",
    "content_a_number": "no text content",
    "error_in_a_200": "model overloaded",
    "part_text_null": "no text content",
    "gzip_lie": "gzip",
    "gzip_cut": "JSON",
    "not_utf8": "utf-8",
    "deep_json": "malformed JSON body",
}


class Scripted:
    """An OpenAI chat server whose answer for a row is picked by ``[[name]]`` in its text;
    ``n`` counts the requests for that name (the first one can fail, the retry succeed)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        text = " ".join(str(m.get("content")) for m in payload["messages"])
        found = _MARKER.search(text)
        name = found.group(1) if found else "ok"
        self.count[name] += 1
        answer = ANSWERS.get(name)
        return web.json_response(OK) if answer is None else answer(self.count[name])


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Scripted, str]]:
    server = Scripted()
    with serve(server.app()) as base:
        yield server, base


def _task(base: str, **overrides: Any) -> TextGeneration:
    llm = OpenAILLM(
        model="m", base_url=f"{base}/v1", api_key="k", **{**FAST, "max_retries": 2, **overrides}
    )
    return TextGeneration(name="ask", llm=llm)


@pytest.mark.parametrize("name", list(ANSWERS))
def test_each_answer_gives_the_text_or_a_located_row_error(
    scripted: tuple[Scripted, str], name: str
) -> None:
    server, base = scripted
    server.count.clear()
    start = time.monotonic()
    with loaded(_task(base)) as task:
        fine, odd = next(task.process([{"instruction": "hi"}, {"instruction": f"x [[{name}]]"}]))
    assert time.monotonic() - start < 5  # nothing waits out a silly Retry-After
    assert fine["generation"] == "fine"  # the neighbour never suffers
    error = odd[METADATA_COLUMN].get("error_ask")
    if name in SUCCEED:
        assert (odd["generation"], error) == ("fine", None)
        return
    assert odd["generation"] is None
    assert error is not None and error.startswith("step 'ask': row 1: "), error
    assert SAYS[name] in error


def test_a_huge_retry_after_is_not_retried_and_pauses_nothing(
    scripted: tuple[Scripted, str],
) -> None:
    server, base = scripted
    server.count.clear()
    rows = [{"instruction": "x [[huge]]"}] + [{"instruction": f"row {i}"} for i in range(8)]
    with loaded(_task(base, max_concurrent_requests=2)) as task:
        out = next(task.process(rows))
    assert server.count["huge"] == 1
    assert [row["generation"] for row in out[1:]] == ["fine"] * 8


# -- a server that refuses every request from the start --------------------------------------


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "refused the credentials"),
        (403, "refused the credentials"),
        (404, "no such endpoint or model"),
        (405, "no such endpoint or model"),
    ],
)
def test_a_refusing_server_stops_the_step_fast_without_the_key(status: int, says: str) -> None:
    key = "sk-hostile-test-0123456789abcdef"

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        message = {"error": {"message": f"Incorrect API key provided: {key}"}}
        return web.json_response(message, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    with serve(app) as base:
        llm = OpenAILLM(model="m", base_url=f"{base}/v1", api_key=key, **FAST)
        task = TextGeneration(name="ask", llm=llm)
        start = time.monotonic()
        with loaded(task), pytest.raises(ModelUnavailableError) as caught:
            next(task.process([{"instruction": f"q{i}"} for i in range(20)]))
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "step 'ask'" in message and "model 'm'" in message and f"HTTP {status}" in message
    assert says in message
    assert key not in message and key[:12] not in message


# -- a base_url that is not an http(s) URL ---------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("localhost:11434/v1", "did you mean 'http://localhost:11434/v1'"),
        ("htp://localhost:8000/v1", "http:// or https://"),
        ("http://", "with a host"),
        ("ftp://example.com/v1", "http:// or https://"),
    ],
)
@pytest.mark.parametrize("backend", [OpenAILLM, AnthropicLLM, OpenAIImageGeneration])
def test_a_base_url_without_an_http_scheme_is_refused_at_once(
    backend: Any, base_url: str, says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        backend(model="m", base_url=base_url, api_key="k")
    assert says in str(caught.value)


def test_a_refused_base_url_never_shows_a_password_or_query_key() -> None:
    with pytest.raises(ValidationError) as caught:
        InferenceEndpointsLLM(base_url="user:hunter2secret@localhost:8080/v1?key=sk-abcdefgh")
    message = str(caught.value)  # whole: pydantic's "input_value=..." must not echo it
    assert "hunter2secret" not in message and "sk-abcdefgh" not in message
    assert "localhost:8080/v1" in message


# -- Anthropic's Messages API answering oddly ------------------------------------------------

ANTHROPIC_ANSWERS: dict[str, tuple[dict[str, Any], str]] = {
    "text_null": ({"content": [{"type": "text", "text": None}]}, "no text block"),
    "no_blocks": ({"content": [], "stop_reason": "refusal"}, "stop_reason='refusal'"),
    "tool_only": (
        {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        "no text block",
    ),
    "content_a_string": ({"content": "fine"}, "no content"),
    "error_in_a_200": (
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        "Overloaded",
    ),
}


@pytest.mark.parametrize("name", list(ANTHROPIC_ANSWERS))
def test_anthropic_answers_that_hold_no_text_fail_their_row(name: str) -> None:
    async def messages(request: web.Request) -> web.Response:
        text = json.dumps(await request.json())
        if "[[" not in text:
            usage = {"input_tokens": 1, "output_tokens": 1}
            return web.json_response(
                {"content": [{"type": "text", "text": "fine"}], "usage": usage}
            )
        return web.json_response(ANTHROPIC_ANSWERS[name][0])

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    with serve(app) as base:
        llm = AnthropicLLM(model="m", base_url=base, api_key="k", **FAST)
        with loaded(TextGeneration(name="ask", llm=llm)) as task:
            fine, odd = next(task.process([{"instruction": "hi"}, {"instruction": "[[x]]"}]))
    assert fine["generation"] == "fine"
    assert odd["generation"] is None
    error = odd[METADATA_COLUMN]["error_ask"]
    assert error.startswith("step 'ask': row 1: ") and ANTHROPIC_ANSWERS[name][1] in error


# -- the CLI against a host that does not exist ----------------------------------------------

CLI_CONFIG = """\
pipeline:
  name: nowhere
  cache_dir: {cache}
  steps:
    - name: load
      type: pixtill.steps.LoadDataFromDicts
      params: {{data: [{{instruction: a}}, {{instruction: b}}, {{instruction: c}}]}}
    - name: ask
      type: pixtill.steps.tasks.TextGeneration
      params:
        llm:
          type: pixtill.models.llms.OpenAILLM
          params: {{model: m, base_url: "http://no-such-host.invalid:8000/v1", api_key: {key}}}
  connections:
    - {{from: load, to: ask}}
"""


def test_the_cli_names_an_unknown_host_in_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sk-unknown-host-0123456789"
    config = tmp_path / "nowhere.yaml"
    config.write_text(CLI_CONFIG.format(cache=tmp_path / "cache", key=key))
    start = time.monotonic()
    code = main(["run", "-c", str(config), "-o", str(tmp_path / "out"), "--no-progress"])
    assert time.monotonic() - start < 30  # a resolver that fails slowly still fails
    assert code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("pixtill run: error:")]
    assert len(errors) == 1, err
    assert (
        "step 'ask': model 'm' at http://no-such-host.invalid:8000/v1/chat/completions"
        in (errors[0])
    )
    assert "is unavailable" in errors[0] and "host" in errors[0]
    assert key not in err


# -- usage counts that are not counts --------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "many", "completion_tokens": -5},
        {"prompt_tokens": -1, "completion_tokens": None},
        {"prompt_tokens": True, "completion_tokens": 2.5},
        [1, 2],
    ],
    ids=repr,
)
def test_garbage_usage_is_no_statistic(usage: Any) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({**OK, "usage": usage})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as base, loaded(_task(base)) as task:
        (row,) = next(task.process([{"instruction": "hi"}]))
    assert row["generation"] == "fine"  # the text is still good
    statistics = row[METADATA_COLUMN].get("statistics_ask") or {}
    for count in statistics.values():
        assert count is None or (isinstance(count, int) and count >= 0), statistics


def test_anthropic_negative_usage_is_no_statistic() -> None:
    async def messages(request: web.Request) -> web.Response:
        await request.read()
        usage = {"input_tokens": -3, "output_tokens": "x"}
        return web.json_response({"content": [{"type": "text", "text": "fine"}], "usage": usage})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    with serve(app) as base:
        llm = AnthropicLLM(model="m", base_url=base, api_key="k", **FAST)
        with loaded(TextGeneration(name="ask", llm=llm)) as task:
            (row,) = next(task.process([{"instruction": "hi"}]))
    assert row["generation"] == "fine"
    statistics = row[METADATA_COLUMN].get("statistics_ask") or {}
    assert all(count is None or count >= 0 for count in statistics.values()), statistics


# -- which column a server's complaint is about ----------------------------------------------

IMAGE_URL = "https://photos.example.org/cat.png"


@pytest.mark.parametrize(
    ("message", "column"),
    [
        # vLLM / aiohttp, naming only the image's host
        (
            "Cannot connect to host photos.example.org:443 ssl:default [Name or service not known]",
            "image",
        ),
        ("illegal base64 data at input byte 0", "image"),  # Ollama
        ("Image does not match the provided media type image/png", "image"),  # Anthropic
        ("Unable to download the file. Please verify the URL and try again.", "image"),
        ("This model's maximum context length is 4096 tokens", None),
        ("Invalid value for 'temperature': must be at most 2", None),
    ],
)
def test_a_400_names_the_image_column_only_when_it_is_about_the_image(
    message: str, column: str | None
) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": {"message": message}}, status=400)

    app = web.Application()
    app.router.add_post("/v1/images-api/chat/completions", chat)
    # the API under a path that holds "images": its own URL blames no column
    with serve(app) as base:
        llm = OpenAILLM(model="m", base_url=f"{base}/v1/images-api", api_key="k", **FAST)
        task = TextGenerationWithImage(name="vision", llm=llm)
        with loaded(task):
            (row,) = next(task.process([{"instruction": "what?", "image": IMAGE_URL}]))
    error = row[METADATA_COLUMN]["error_vision"]
    where = "step 'vision': row 0" + (f", column '{column}'" if column else "") + ": "
    assert error.startswith(where), error


# -- a port that does not speak plain HTTP ---------------------------------------------------


def test_https_to_a_plain_http_server_stops_fast_with_a_hint() -> None:
    async def chat(request: web.Request) -> web.Response:
        return web.json_response(OK)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as base:
        url = base.replace("http://", "https://") + "/v1"
        task = TextGeneration(name="ask", llm=OpenAILLM(model="m", base_url=url, api_key="k"))
        start = time.monotonic()
        with loaded(task), pytest.raises(ModelUnavailableError) as caught:
            next(task.process([{"instruction": f"q{i}"} for i in range(10)]))
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "TLS handshake failed" in message and "needs http:// in base_url" in message


def test_a_port_that_speaks_another_protocol_stops_fast() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)
    stop = threading.Event()

    def banner() -> None:  # an SSH server: a banner, then nothing HTTP
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=banner, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        task = TextGeneration(name="ask", llm=OpenAILLM(model="m", base_url=url, api_key="k"))
        start = time.monotonic()
        with loaded(task), pytest.raises(ModelUnavailableError, match="is unavailable"):
            next(task.process([{"instruction": f"q{i}"} for i in range(10)]))
        assert time.monotonic() - start < 30
    finally:
        stop.set()
        thread.join(5)
        listener.close()
