"""A configuration saved with its credentials masked (``***``) and loaded back says so when it
is read and refuses to load the model, naming each place and how to give it again, instead of
sending requests that the server answers with 401. No secret is in any message."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from models.fake_providers import FAST
from pixtill.models.llms import OpenAILLM
from pixtill.pipeline import Pipeline, StepLoadError
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration
from pixtill.utils.secrets import masked_credentials

SECRET = "tok-SECRET-0123456789"


def _app(seen: list[str | None]) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Api-Key"))
        if request.headers.get("X-Api-Key") != SECRET:
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}}
        return web.json_response({"choices": [choice]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def _saved(tmp_path: Path, base: str) -> Path:
    host = base.removeprefix("http://")
    with Pipeline(name="saved", cache_dir=tmp_path / "cache") as pipeline:
        llm = OpenAILLM(
            model="m",
            base_url=f"http://user:{SECRET}@{host}/v1",
            generation_kwargs={"extra_headers": {"X-Api-Key": SECRET}},
            **FAST,
        )
        LoadDataFromDicts(name="load", data=[{"instruction": "hi"}]) >> TextGeneration(
            name="ask", llm=llm
        )
    path = pipeline.dump(tmp_path / "saved.yaml")
    assert SECRET not in path.read_text()
    return path


def test_masked_credentials_are_named_when_read_and_refused_at_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str | None] = []
    with serve(_app(seen)) as base:
        path = _saved(tmp_path, base)
        with caplog.at_level(logging.WARNING):
            loaded = Pipeline.from_file(path)
        warning = caplog.text
        assert "step 'ask'" in warning
        assert "generation_kwargs['extra_headers']['X-Api-Key']" in warning
        assert "the password in base_url" in warning
        assert "--param ask.llm.<field>=" in warning
        with pytest.raises(StepLoadError) as refused:
            loaded.run(output_dir=tmp_path / "out", show_progress=False)
        message = str(refused.value)
        assert "holds '***' instead of a credential" in message
        assert "never saved" in message and "OPENAI_API_KEY" in message
        assert seen == []  # refused before any request: no 401 round trip
        assert SECRET not in message + caplog.text

        # Given again (as `pixtill run --param` would), the saved pipeline runs.
        llm: dict[str, Any] = {
            "generation_kwargs": {"extra_headers": {"X-Api-Key": SECRET}},
            "base_url": f"{base}/v1",
        }
        rows = loaded.run(
            parameters={"ask": {"llm": llm}}, output_dir=tmp_path / "out", show_progress=False
        )["ask"]
    assert rows[0]["generation"] == "ok" and seen == [SECRET]


def test_only_masks_count() -> None:
    assert masked_credentials({"Authorization": "Bearer ***"}, "h") == ["h['Authorization']"]
    assert masked_credentials({"Authorization": "Bearer real"}, "h") == []
    assert masked_credentials({"note": "***"}, "h") == []  # not a credential's name
    assert masked_credentials("https://h/v1?api_key=***&x=1", "base_url") == [
        "the 'api_key' query parameter of base_url"
    ]
