"""OpenAIImageGeneration and InferenceEndpointsImageGeneration against fake servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, free_port, loaded, loaded_with_hangs
from pixtill.errors import ModelUnavailableError
from pixtill.models.image_generation import (
    InferenceEndpointsImageGeneration,
    OpenAIImageGeneration,
)
from pixtill.models.image_generation.utils import image_from_str
from pixtill.models.results import Generation
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration

KEY = "sk-test-images-SECRET-0123456789"
FLUX = "black-forest-labs/FLUX.1-schnell"


@pytest.fixture(autouse=True)
def hf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", KEY)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def openai_model(base: str, **overrides: Any) -> OpenAIImageGeneration:
    values: dict[str, Any] = {"base_url": f"{base}/v1", "api_key": KEY, **FAST}
    values.update(overrides)
    return OpenAIImageGeneration(**values)


def hf_model(base: str, **overrides: Any) -> InferenceEndpointsImageGeneration:
    values: dict[str, Any] = {"model_id": FLUX, "base_url": f"{base}/models/{FLUX}", **FAST}
    values.update(overrides)
    return InferenceEndpointsImageGeneration(**values)


def image_task(model: Any, num_generations: int = 1) -> ImageGeneration:
    return ImageGeneration(
        name="image-generation", image_generation_model=model, num_generations=num_generations
    )


# ------------------------------------------------------------------ OpenAI


def test_openai_b64_answer(fake: FakeProviders, url: str) -> None:
    # A compatible server's own model: it takes any "<w>x<h>" size (DALL·E models would not).
    model = openai_model(
        url, model="local-diffusion", generation_kwargs={"size": "32x24", "quality": "standard"}
    )
    with loaded(image_task(model)) as task:
        rows = next(task.process([{"prompt": "a white siamese cat"}]))
    assert len(rows) == 1
    image = image_from_str(rows[0]["image"])
    assert (image.format, image.size) == ("PNG", (32, 24))
    assert rows[0]["model_name"] == "local-diffusion"
    (received,) = fake.received_on("images")
    assert received.payload == {
        "model": "local-diffusion",
        "prompt": "a white siamese cat",
        "n": 1,
        "size": "32x24",
        "quality": "standard",
        "response_format": "b64_json",
    }
    # Metadata keeps a content hash of the image, not a second copy.
    raw = rows[0][METADATA_COLUMN]["raw_output_image-generation"]
    assert raw["images"][0].startswith("sha256:")


def test_openai_url_answer_is_fetched_without_the_key(fake: FakeProviders, url: str) -> None:
    model = openai_model(
        url, model="local-diffusion", generation_kwargs={"response_format": "url", "size": "16x16"}
    )
    with loaded(image_task(model, num_generations=2)) as task:
        rows = next(task.process([{"prompt": "a fox"}]))
    assert [image_from_str(r["image"]).size for r in rows] == [(16, 16), (16, 16)]
    assert rows[0]["image"] != rows[1]["image"]
    assert fake.file_gets == 2  # the fake refuses a GET that carries credentials
    assert fake.received_on("images")[0].payload["response_format"] == "url"


def test_dall_e_3_fans_out_single_requests(fake: FakeProviders, url: str) -> None:
    with loaded(image_task(openai_model(url), num_generations=3)) as task:
        rows = next(task.process([{"prompt": "three cats"}]))
    assert len(rows) == 3
    assert len({r["image"] for r in rows}) == 3
    assert [r.payload["n"] for r in fake.received_on("images")] == [1, 1, 1]


def test_n_is_sent_in_chunks_of_max_n_per_request(fake: FakeProviders, url: str) -> None:
    model = openai_model(url, model="dall-e-2", max_n_per_request=2)
    with loaded(image_task(model, num_generations=5)) as task:
        rows = next(task.process([{"prompt": "five cats"}]))
    assert len(rows) == 5
    assert all(r["image"] is not None for r in rows)
    assert sorted(r.payload["n"] for r in fake.received_on("images")) == [1, 2, 2]


def test_dall_e_2_sends_n_natively(fake: FakeProviders, url: str) -> None:
    with loaded(image_task(openai_model(url, model="dall-e-2"), num_generations=4)) as task:
        rows = next(task.process([{"prompt": "four"}]))
    assert len(rows) == 4
    assert [r.payload["n"] for r in fake.received_on("images")] == [4]


def test_gpt_image_models_get_no_response_format(fake: FakeProviders, url: str) -> None:
    model = openai_model(url, model="gpt-image-1", generation_kwargs={"response_format": "url"})
    with loaded(image_task(model)) as task:
        rows = next(task.process([{"prompt": "p"}]))
    assert rows[0]["image"] is not None
    assert "response_format" not in fake.received_on("images")[0].payload


def test_openai_failure_isolation_and_retries(fake: FakeProviders, url: str) -> None:
    prompts = [f"prompt {k}" for k in range(8)]
    prompts[2] += " [[status:400]]"
    prompts[5] += " [[500:1]]"  # recovers on retry
    with loaded(image_task(openai_model(url))) as task:
        rows = next(task.process([{"prompt": p} for p in prompts]))
    assert [r["prompt"] for r in rows] == prompts
    assert [r["image"] is None for r in rows] == [k == 2 for k in range(8)]
    assert "HTTP 400" in rows[2][METADATA_COLUMN]["error_image-generation"]
    assert fake.attempts[prompts[5]] == 2


def test_openai_response_without_data(url: str) -> None:
    with loaded(image_task(openai_model(url))) as task:
        rows = next(task.process([{"prompt": "[[nochoices]]"}]))
    error = rows[0][METADATA_COLUMN]["error_image-generation"]
    assert "OpenAIImageGeneration: the response has no data" in error


def test_openai_partial_failure_of_one_chunk(fake: FakeProviders, url: str) -> None:
    """One of the fan-out requests fails: only its generation is None."""
    model = openai_model(url)
    attempts: list[int] = []

    async def flaky_request(engine: Any, payload: dict[str, Any], n: int) -> list[Generation]:
        attempts.append(n)
        if len(attempts) == 2:
            raise RuntimeError("chunk failed")
        return [Generation.of_image("aGVsbG8=")] * n

    object.__setattr__(model, "_request", flaky_request)

    async def main() -> Any:
        try:
            return await model.agenerate("p", num_generations=3)
        finally:
            await model.aclose()

    outputs = asyncio.run(main())
    assert [o["images"] for o in outputs] == [["aGVsbG8="], [None], ["aGVsbG8="]]
    assert outputs[1]["error"] == "RuntimeError: chunk failed"


# ------------------------------------------------------------------ Hugging Face


def test_hf_raw_bytes_with_width_and_height(fake: FakeProviders, url: str) -> None:
    model = hf_model(url, generation_kwargs={"width": 48, "height": 32, "num_inference_steps": 4})
    with loaded(image_task(model)) as task:
        rows = next(task.process([{"prompt": "a white siamese cat"}]))
    image = image_from_str(rows[0]["image"])
    assert (image.format, image.size) == ("PNG", (48, 32))
    assert rows[0]["model_name"] == FLUX
    (received,) = fake.received_on("text-to-image")
    assert received.payload == {
        "inputs": "a white siamese cat",
        "parameters": {"width": 48, "height": 32, "num_inference_steps": 4},
    }
    assert received.meta["model"] == FLUX


def test_hf_generations_get_distinct_seeds(fake: FakeProviders, url: str) -> None:
    model = hf_model(url, generation_kwargs={"seed": 42, "guidance_scale": 0.0})
    with loaded(image_task(model, num_generations=3)) as task:
        rows = next(task.process([{"prompt": "seeded"}]))
    assert len({r["image"] for r in rows}) == 3
    received = fake.received_on("text-to-image")
    assert sorted(r.payload["parameters"]["seed"] for r in received) == [42, 43, 44]
    assert all(r.meta["x-use-cache"] == "" for r in received)


def test_hf_without_seed_bypasses_the_cache(fake: FakeProviders, url: str) -> None:
    with loaded(image_task(hf_model(url), num_generations=2)) as task:
        rows = next(task.process([{"prompt": "unseeded"}]))
    assert len(rows) == 2
    received = fake.received_on("text-to-image")
    assert [r.meta["x-use-cache"] for r in received] == ["false", "false"]
    assert all("parameters" not in r.payload for r in received)


def test_hf_json_answer(url: str) -> None:
    with loaded(image_task(hf_model(url, generation_kwargs={"width": 16, "height": 8}))) as task:
        rows = next(task.process([{"prompt": "as json [[json]]"}]))
    assert image_from_str(rows[0]["image"]).size == (16, 8)


def test_hf_non_image_answer_is_an_error(url: str) -> None:
    with loaded(image_task(hf_model(url))) as task:
        rows = next(task.process([{"prompt": "[[nochoices]]"}, {"prompt": "fine"}]))
    error = rows[0][METADATA_COLUMN]["error_image-generation"]
    assert "InferenceEndpointsImageGeneration: no image in the JSON response" in error
    assert rows[1]["image"] is not None


def test_hf_failure_isolation(fake: FakeProviders, url: str) -> None:
    prompts = [f"p{k}" + (" [[status:503]]" if k == 1 else "") for k in range(5)]
    prompts[3] += " [[429:1]]"
    with loaded(image_task(hf_model(url, max_retries=1))) as task:
        rows = next(task.process([{"prompt": p} for p in prompts]))
    assert [r["image"] is None for r in rows] == [False, True, False, False, False]
    assert "HTTP 503 after 2 attempts" in rows[1][METADATA_COLUMN]["error_image-generation"]


def test_hf_hang_and_connection_refused(url: str) -> None:
    with loaded_with_hangs(image_task(hf_model(url, timeout=0.3, max_retries=0))) as (task, hangs):
        rows = next(task.process([{"prompt": "[[hang]]"}]))
    assert hangs.hung == 1
    assert "timeout after 1 attempt" in rows[0][METADATA_COLUMN]["error_image-generation"]
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        loaded(image_task(hf_model(dead, max_retries=0))) as task,
        pytest.raises(ModelUnavailableError) as info,
    ):  # a dead server stops the step
        next(task.process([{"prompt": "anyone"}]))
    message = str(info.value)
    assert message.startswith("step 'image-generation': model 'black-forest-labs/FLUX.1-schnell'")
    assert "connection refused" in message and "is the server running" in message


def test_hf_urls() -> None:
    serverless = InferenceEndpointsImageGeneration(model_id=FLUX)
    assert serverless._task_url() == f"https://router.huggingface.co/hf-inference/models/{FLUX}"
    assert serverless.model_name == FLUX


def test_hf_endpoint_name(fake: FakeProviders, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "huggingface_hub.get_inference_endpoint",
        lambda name, **_: SimpleNamespace(url=f"{url}/models/org/flux-endpoint", status="running"),
    )
    model = InferenceEndpointsImageGeneration(endpoint_name="flux-endpoint", **FAST)
    with loaded(image_task(model)) as task:
        rows = next(task.process([{"prompt": "endpoint"}]))
    assert rows[0]["image"] is not None
    assert rows[0]["model_name"] == "flux-endpoint"
    assert fake.received_on("text-to-image")[0].meta["model"] == "org/flux-endpoint"
