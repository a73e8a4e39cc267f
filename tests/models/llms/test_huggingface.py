"""InferenceEndpointsLLM against a fake TGI (Messages API, refuses n > 1) on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, free_port, loaded, loaded_with_hangs
from pixtill.errors import ModelUnavailableError
from pixtill.models.http import ManualClock
from pixtill.models.llms import InferenceEndpointsLLM
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from sample_images import image_bytes

TOKEN = "hf_test_SECRET_token_0123456789"
MODEL = "meta-llama/Llama-3.2-11B-Vision-Instruct"


@pytest.fixture(autouse=True)
def hf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read a real saved login token from this machine.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=TOKEN, tgi=True)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def make_llm(base: str, **overrides: Any) -> InferenceEndpointsLLM:
    values: dict[str, Any] = {"model_id": MODEL, "base_url": base, **FAST}
    values.update(overrides)
    return InferenceEndpointsLLM(**values)


def task_for(base: str, num_generations: int = 1, **overrides: Any) -> TextGenerationWithImage:
    return TextGenerationWithImage(
        name="vision_gen", llm=make_llm(base, **overrides), num_generations=num_generations
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------ the seed's examples


def test_seed_example_with_an_image_url(fake: FakeProviders, url: str) -> None:
    image_url = url + fake.add_static("boardwalk.jpg", image_bytes(64, 48, format="JPEG"))
    vision = TextGenerationWithImage(
        name="vision_gen",
        llm=InferenceEndpointsLLM(model_id=MODEL, base_url=url),
        image_type="url",
    )
    vision.load()
    try:
        result = next(
            vision.process([{"instruction": "What’s in this image?", "image": image_url}])
        )
    finally:
        vision.unload()
    assert len(result) == 1
    row = result[0]
    assert row["instruction"] == "What’s in this image?"
    assert row["image"] == image_url
    assert row["generation"] == "[0] What’s in this image? | images: JPEG 64x48"
    assert row["model_name"] == MODEL
    meta = row[METADATA_COLUMN]
    assert meta["raw_input_vision_gen"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": image_url},
    }
    assert meta["statistics_vision_gen"] == {"input_tokens": 14, "output_tokens": 9}
    (received,) = fake.received_on("chat")
    assert received.payload["model"] == MODEL
    part = received.payload["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": image_url}}


def test_seed_example_with_base64(fake: FakeProviders, url: str) -> None:
    base64_image = base64.b64encode(image_bytes(40, 30, format="JPEG")).decode("utf-8")
    vision = TextGenerationWithImage(
        name="vision_gen",
        llm=InferenceEndpointsLLM(model_id=MODEL, base_url=url),
        image_type="base64",
    )
    vision.load()
    try:
        result = next(
            vision.process([{"instruction": "What’s in this image?", "image": base64_image}])
        )
    finally:
        vision.unload()
    assert result[0]["generation"] == "[0] What’s in this image? | images: JPEG 40x30"
    (received,) = fake.received_on("chat")
    assert [(im.source, im.format, im.size) for im in received.images] == [
        ("data", "JPEG", (40, 30))
    ]


# ------------------------------------------------------------------ where requests go


def test_model_name_and_urls() -> None:
    serverless = InferenceEndpointsLLM(model_id=MODEL)
    assert serverless.model_name == MODEL
    assert serverless._chat_url() == "https://router.huggingface.co/v1/chat/completions"
    assert serverless._wire_model() == MODEL
    local = InferenceEndpointsLLM(base_url="http://127.0.0.1:8080/v1/")
    assert local.model_name == "http://127.0.0.1:8080/v1/"
    assert local._chat_url() == "http://127.0.0.1:8080/v1/chat/completions"
    assert local._wire_model() == "tgi"
    assert (
        InferenceEndpointsLLM(base_url="http://h:1")._chat_url() == "http://h:1/v1/chat/completions"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"model_id": "a/b", "endpoint_name": "e"},
        {"endpoint_name": "e", "base_url": "http://h"},
        {"model_id": "a/b", "endpoint_namespace": "me"},
    ],
)
def test_exactly_one_location(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"exactly one of|endpoint_namespace"):
        InferenceEndpointsLLM(**kwargs)


def test_endpoint_name_is_resolved_at_load(
    fake: FakeProviders, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any, Any]] = []

    def get_inference_endpoint(name: str, *, namespace: Any = None, token: Any = None) -> Any:
        calls.append((name, namespace, token))
        return SimpleNamespace(url=url, status="running")

    monkeypatch.setattr("huggingface_hub.get_inference_endpoint", get_inference_endpoint)
    task = TextGenerationWithImage(
        name="vision_gen",
        llm=InferenceEndpointsLLM(endpoint_name="my-vlm", endpoint_namespace="me", **FAST),
    )
    with loaded(task):
        rows = next(task.process([{"instruction": "hi", "image": b64(image_bytes())}]))
    assert calls == [("my-vlm", "me", TOKEN)]
    assert rows[0]["model_name"] == "my-vlm"
    assert rows[0]["generation"] is not None
    assert fake.received_on("chat")[0].payload["model"] == "tgi"


def test_endpoint_without_url_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "huggingface_hub.get_inference_endpoint",
        lambda name, **_: SimpleNamespace(url=None, status="paused"),
    )
    with pytest.raises(ValueError, match="'paused'"):
        InferenceEndpointsLLM(endpoint_name="sleepy").load()


def test_serverless_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ValueError, match="HF_TOKEN"):
        InferenceEndpointsLLM(model_id=MODEL).load()


def test_saved_login_token_is_used_for_hugging_face_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_saved")
    assert InferenceEndpointsLLM(model_id=MODEL)._auth_headers() == {
        "Authorization": "Bearer hf_saved"
    }
    # A custom server does not get the saved login token.
    assert InferenceEndpointsLLM(base_url="http://127.0.0.1:9")._auth_headers() == {}


# ------------------------------------------------------------------ n


def test_tgi_refuses_n_so_generations_fan_out(fake: FakeProviders, url: str) -> None:
    rows_in = [{"instruction": f"q{k}", "image": b64(image_bytes())} for k in range(3)]
    task = task_for(url, num_generations=2)
    with loaded(task):
        first = next(task.process(rows_in))
        refused_in_first_batch = len(fake.rejected)
        second = next(task.process(rows_in))
    assert len(first) == len(second) == 6
    assert all(r["generation"] is not None for r in first + second)
    assert [r["instruction"] for r in first] == ["q0", "q0", "q1", "q1", "q2", "q2"]
    assert [r["generation"][:3] for r in first] == ["[0]", "[0]"] * 3  # singles, one choice
    # Requests already on their way when the first 422 came back asked for n=2 as well;
    # after that, the refusal is remembered.
    assert 1 <= refused_in_first_batch <= 3
    assert {status for status, _ in fake.rejected} == {422}
    assert len(fake.rejected) == refused_in_first_batch
    assert all("n" not in r.payload for r in fake.received_on("chat"))
    assert len(fake.received_on("chat")) == 12


def test_native_n_off_never_sends_n(fake: FakeProviders, url: str) -> None:
    with loaded(task_for(url, num_generations=2, native_n=False)) as task:
        rows = next(task.process([{"instruction": "x", "image": b64(image_bytes())}]))
    assert len(rows) == 2
    assert fake.rejected == []


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("marker", "attempts", "min_seconds"),
    [("[[429:2]]", 3, 0.0), ("[[429ra:1]]", 2, 0.3), ("[[500:1]]", 2, 0.0)],
    ids=["429", "429-retry-after", "500"],
)
def test_transient_failures_are_retried(
    fake: FakeProviders, url: str, marker: str, attempts: int, min_seconds: float
) -> None:
    text = f"again {marker}"
    clock = ManualClock()  # Retry-After and backoffs are slept in virtual time
    with loaded(task_for(url)) as task:
        task.llm.load_with(clock=clock)
        rows = next(task.process([{"instruction": text, "image": b64(image_bytes())}]))
    assert rows[0]["generation"] is not None
    assert fake.attempts[text] == attempts
    assert max(clock.sleeps) >= min_seconds  # Retry-After: 0.3 was honoured


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("[[hang]]", "timeout after 2 attempts"),
        ("[[badjson]]", "malformed JSON body"),
        ("[[nochoices]]", "InferenceEndpointsLLM: the response has no choices"),
        ("[[status:400]]", "HTTP 400 after 1 attempt"),
    ],
)
def test_permanent_failures(url: str, marker: str, expected: str) -> None:
    rows_in = [
        {"instruction": "fine", "image": b64(image_bytes())},
        {"instruction": f"bad {marker}", "image": b64(image_bytes())},
    ]
    with loaded_with_hangs(task_for(url, timeout=0.3, max_retries=1)) as (task, transport):
        rows = next(task.process(rows_in))
    assert transport.hung == (2 if marker == "[[hang]]" else 0)
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    assert expected in rows[1][METADATA_COLUMN]["error_vision_gen"]


def test_connection_refused() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with (
        loaded(task_for(base, max_retries=0)) as task,
        pytest.raises(ModelUnavailableError, match="connection refused"),
    ):
        next(task.process([{"instruction": "?", "image": b64(image_bytes())}]))


def test_batch_isolation(fake: FakeProviders, url: str) -> None:
    rows_in = [
        {
            "instruction": f"row {k}" + (" [[status:422]]" if k in (3, 17) else ""),
            "image": b64(image_bytes(4 + k, 4)),
            "k": k,
        }
        for k in range(30)
    ]
    with loaded(task_for(url, max_concurrent_requests=5)) as task:
        rows = next(task.process(rows_in))
    assert [r["k"] for r in rows] == list(range(30))
    assert [r["k"] for r in rows if r["generation"] is None] == [3, 17]
    assert "HTTP 422" in rows[17][METADATA_COLUMN]["error_vision_gen"]
    assert all(
        r["generation"] == f"[0] row {r['k']} | images: PNG {4 + r['k']}x4"
        for r in rows
        if r["k"] not in (3, 17)
    )
