"""Credentials outside ``api_key`` (a header in generation_kwargs, a password or key in the
URL) never show up in reprs, saved configs, cache keys, datasets or logs."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from http_servers import serve
from models.fake_providers import FAST
from pixtill.models.llms import OpenAILLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGenerationWithImage
from pixtill.store.keys import step_signature
from pixtill.utils.secrets import is_secret_name, mask_url
from sample_images import image_bytes

SECRET = "sk-test-SECRET123456"
HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "Proxy-Authorization": f"Basic {SECRET}",
    "x-api-key": SECRET,
    "api-key": SECRET,
    "X-Auth-Token": SECRET,
    "Cookie": f"session={SECRET}",
}


async def _echo(request: web.Request) -> web.Response:
    """A server that refuses every request, echoing back everything it was sent."""
    body = await request.text()
    echoed = {"url": str(request.url), "headers": dict(request.headers), "body": body}
    return web.json_response({"error": {"message": json.dumps(echoed)}}, status=400)


@pytest.fixture
def url() -> Iterator[str]:
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", _echo)
    with serve(app) as base:
        yield base


def _models(base: str) -> dict[str, OpenAILLM]:
    host = base.removeprefix("http://")
    return {
        **{
            f"header {name}": OpenAILLM(
                model="m",
                base_url=f"{base}/v1",
                generation_kwargs={"extra_headers": {name: value}},
                **FAST,
            )
            for name, value in HEADERS.items()
        },
        "userinfo": OpenAILLM(model="m", base_url=f"http://u:{SECRET}@{host}/v1", **FAST),
        "query key": OpenAILLM(model="m", base_url=f"{base}/v1?key={SECRET}", **FAST),
        "query api_key": OpenAILLM(model="m", base_url=f"{base}/v1?api_key={SECRET}", **FAST),
    }


def test_names_and_urls() -> None:
    for name in [*HEADERS, "access_token", "X-Goog-Api-Key", "password"]:
        assert is_secret_name(name), name
    for name in ["max_tokens", "temperature", "top_k", "stop", "Content-Type"]:
        assert not is_secret_name(name), name
    assert mask_url(f"http://u:{SECRET}@h:8/v1") == "http://u:***@h:8/v1"
    assert mask_url(f"https://h/v1?key={SECRET}&x=1") == "https://h/v1?key=***&x=1"
    assert mask_url("https://h/v1?x=1") == "https://h/v1?x=1"


def test_not_in_repr_dump_or_cache_key() -> None:
    for kind, llm in _models("http://127.0.0.1:9").items():
        task = TextGenerationWithImage(name="vision", llm=llm)
        for text in (repr(llm), str(llm), llm.model_dump_json(), json.dumps(llm.model_dump())):
            assert SECRET not in text, kind
            assert "***" in text, kind
        assert SECRET not in repr(task) and SECRET not in task.model_dump_json(), kind
        # the signature hashes a masked config: another secret, the same cache key
        other = llm.model_copy(
            update={
                "generation_kwargs": json.loads(
                    json.dumps(llm.generation_kwargs).replace(SECRET, "sk-other-7777777")
                ),
                "base_url": (llm.base_url or "").replace(SECRET, "sk-other-7777777"),
            }
        )
        assert step_signature(task) == step_signature(
            TextGenerationWithImage(name="vision", llm=other)
        ), kind


def test_saved_config_dataset_and_logs_hold_no_secret(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    image = base64.b64encode(image_bytes()).decode()
    for i, (kind, llm) in enumerate(_models(url).items()):
        with Pipeline(name=f"secrets-{i}", cache_dir=tmp_path / "cache") as pipeline:
            load = LoadDataFromDicts(name="load", data=[{"instruction": "hi", "image": image}])
            load >> TextGenerationWithImage(
                name="vision", llm=llm.model_copy(update={"max_retries": 0})
            )
        saved = pipeline.dump(tmp_path / f"p{i}.yaml").read_text()
        assert SECRET not in saved, kind
        out = tmp_path / f"out{i}"
        distiset = pipeline.run(output_dir=out)
        rows = distiset["vision"] if "vision" in distiset else next(iter(distiset.values()))
        error = json.dumps(list(rows), default=str)
        assert "HTTP 400" in error, kind  # the server's echo reached the row, scrubbed
        assert SECRET not in error, kind
        for path in [*out.rglob("*"), *(tmp_path / "cache").rglob("*")]:
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), (kind, path)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)
