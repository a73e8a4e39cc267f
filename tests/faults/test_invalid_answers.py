"""A server that answers every request with HTTP 200 and a body that is not the API (a web
page: base_url without ``/v1`` in front of a web app, a proxy's login page) stops the step
with one clear message, as a dead server does; a valid answer that is merely unhelpful (an
empty reply) never does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from models.fake_providers import FAST, loaded
from pixtill.cli import main
from pixtill.errors import ModelUnavailableError
from pixtill.models.llms import OpenAILLM
from pixtill.steps.tasks import TextGeneration

KEY = "sk-invalid-answers-0123456789"
HTML = "<!DOCTYPE html>\n<html><head><title>My app</title></head><body>Hello</body></html>"
OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}}]}
EMPTY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}


def _server(answer: Callable[[int], web.Response]) -> web.Application:
    count = [0]

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        count[0] += 1
        return answer(count[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", chat)
    return app


def _html(n: int) -> web.Response:
    return web.Response(text=HTML, content_type="text/html")


def _task(base: str, **overrides: Any) -> TextGeneration:
    llm = OpenAILLM(model="m", base_url=f"{base}/v1", api_key=KEY, **{**FAST, **overrides})
    return TextGeneration(name="ask", llm=llm)


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"q{i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("answer", "says", "hint"),
    [
        (_html, "answers was HTML, not JSON", "is base_url the API's root, e.g."),
        (
            lambda n: web.Response(text="upstream says hi", content_type="text/plain"),
            "answers was a body that is not JSON",
            "is base_url the API's root",
        ),
    ],
)
def test_every_answer_unparseable_stops_the_step(
    answer: Callable[[int], web.Response], says: str, hint: str
) -> None:
    with serve(_server(answer)) as base:
        task = _task(base)
        with loaded(task), pytest.raises(ModelUnavailableError) as caught:
            next(task.process(_rows(40)))
    message = str(caught.value)
    assert f"step 'ask': model 'm' at {base}/v1/chat/completions is unavailable" in message
    assert "each of the first 8 " in message  # fail_fast_attempts' default
    assert says in message and hint in message
    assert KEY not in message


def test_empty_replies_are_valid_answers_not_a_dead_server() -> None:
    with serve(_server(lambda n: web.json_response(EMPTY))) as base:
        task = _task(base)
        with loaded(task):
            rows = next(task.process(_rows(20)))
    assert len(rows) == 20  # each row has its own outcome; nothing stopped the step


def test_unparseable_answers_after_a_valid_one_fail_only_their_rows() -> None:
    """Once an answer parsed, the URL is the API: later bad bodies are each request's own."""

    def answer(n: int) -> web.Response:
        return web.json_response(OK) if n == 1 else _html(n)

    with serve(_server(answer)) as base:
        task = _task(base, max_concurrent_requests=1)
        with loaded(task):
            rows = next(task.process(_rows(20)))
    assert rows[0]["generation"] == "fine"
    assert all(row["generation"] is None for row in rows[1:])


CONFIG = """\
pipeline:
  name: html
  cache_dir: {cache}
  steps:
    - name: load
      type: pixtill.steps.LoadDataFromDicts
      params:
        data: {rows}
    - name: ask
      type: pixtill.steps.tasks.TextGeneration
      params:
        llm:
          type: pixtill.models.llms.OpenAILLM
          params: {{model: m, base_url: "{base}", api_key: {key}}}
  connections:
    - {{from: load, to: ask}}
"""


def test_the_cli_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(_server(_html)) as base:
        config = tmp_path / "html.yaml"
        text = CONFIG.format(cache=tmp_path / "c", rows=json.dumps(_rows(40)), base=base, key=KEY)
        config.write_text(text)
        code = main(["run", "-c", str(config), "-o", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("pixtill run: error:")]
    assert len(errors) == 1, err
    assert f"step 'ask': model 'm' at {base}/chat/completions is unavailable" in errors[0]
    assert "HTML, not JSON" in errors[0] and "e.g. http://host:8000/v1" in errors[0]
    assert KEY not in err
