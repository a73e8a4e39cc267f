"""AnthropicLLM against a fake Messages API on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, free_port, loaded, loaded_with_hangs
from pixtill.errors import ModelUnavailableError
from pixtill.models.http import ManualClock
from pixtill.models.llms import AnthropicLLM
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration, TextGenerationWithImage
from sample_images import image_bytes

KEY = "sk-ant-test-SECRET-0123456789"


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def make_llm(base: str, **overrides: Any) -> AnthropicLLM:
    values: dict[str, Any] = {"model": "claude-test", "base_url": base, "api_key": KEY, **FAST}
    values.update(overrides)
    return AnthropicLLM(**values)


def task_for(base: str, **overrides: Any) -> TextGenerationWithImage:
    options = {k: overrides.pop(k) for k in ("num_generations", "system_prompt") if k in overrides}
    return TextGenerationWithImage(name="claude", llm=make_llm(base, **overrides), **options)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_success_with_system_prompt(fake: FakeProviders, url: str) -> None:
    task = task_for(url, system_prompt="Be brief.")
    with loaded(task):
        rows = next(task.process([{"instruction": "What?", "image": b64(image_bytes(10, 6))}]))
    row = rows[0]
    assert row["generation"] == "Be brief.\nWhat? | images: PNG 10x6"
    assert row["model_name"] == "claude-test"
    assert row[METADATA_COLUMN]["statistics_claude"] == {"input_tokens": 13, "output_tokens": 7}
    (received,) = fake.received_on("messages")
    payload = received.payload
    assert payload["system"] == "Be brief."
    assert [m["role"] for m in payload["messages"]] == ["user"]
    assert payload["max_tokens"] == 1024
    block = payload["messages"][0]["content"][1]
    assert block["type"] == "image"
    assert block["source"]["type"] == "base64"
    assert block["source"]["media_type"] == "image/png"


def test_several_images_in_order_with_real_media_types(fake: FakeProviders, url: str) -> None:
    images = [
        image_bytes(16, 12, format="JPEG"),
        image_bytes(8, 8, format="PNG"),
        image_bytes(5, 7, format="GIF"),
        image_bytes(9, 3, format="WEBP"),
        image_bytes(4, 4, format="BMP"),  # not accepted by the API: sent as PNG
    ]
    with loaded(task_for(url)) as task:
        rows = next(task.process([{"instruction": "All", "image": [b64(i) for i in images]}]))
    (received,) = fake.received_on("messages")
    assert [(im.format, im.size, im.media_type) for im in received.images] == [
        ("JPEG", (16, 12), "image/jpeg"),
        ("PNG", (8, 8), "image/png"),
        ("GIF", (5, 7), "image/gif"),
        ("WEBP", (9, 3), "image/webp"),
        ("PNG", (4, 4), "image/png"),
    ]
    assert rows[0]["generation"] is not None


def test_url_images_become_url_sources(fake: FakeProviders, url: str) -> None:
    local = url + fake.add_static("doc.jpg", image_bytes(12, 12, format="JPEG"), "image/jpeg")
    with loaded(task_for(url)) as task:
        rows = next(task.process([{"instruction": "Read", "image": local}]))
    block = fake.received_on("messages")[0].payload["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "url", "url": local}}
    assert rows[0]["generation"] == "Read | images: JPEG 12x12"


def test_chat_generation_lifts_system_messages(fake: FakeProviders, url: str) -> None:
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "system", "content": [{"type": "text", "text": "Rule two."}]},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "image": b64(image_bytes(3, 3))},
            ],
        },
    ]
    task = ChatGeneration(name="chat", llm=make_llm(url))
    with loaded(task):
        rows = next(task.process([{"messages": messages}]))
    payload = fake.received_on("messages")[0].payload
    assert payload["system"] == "Rule one.\n\nRule two."
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    assert rows[0]["generation"].endswith("| images: PNG 3x3")


def test_headers_and_translated_kwargs(fake: FakeProviders, url: str) -> None:
    llm = make_llm(
        url, generation_kwargs={"max_completion_tokens": 50, "stop": "END", "temperature": 0.1}
    )
    task = TextGenerationWithImage(name="claude", llm=llm)
    with loaded(task):
        rows = next(task.process([{"instruction": "x", "image": b64(image_bytes())}]))
    assert rows[0]["generation"] is not None  # the fake refuses an Authorization header
    payload = fake.received_on("messages")[0].payload
    assert payload["max_tokens"] == 50
    assert payload["stop_sequences"] == ["END"]
    assert payload["temperature"] == 0.1
    assert "stop" not in payload and "max_completion_tokens" not in payload


def test_wrong_key_is_refused(url: str) -> None:
    with (
        loaded(task_for(url, api_key="sk-ant-wrong")) as task,
        pytest.raises(ModelUnavailableError) as info,
    ):  # every row would fail alike
        next(task.process([{"instruction": "x", "image": b64(image_bytes())}]))
    assert "HTTP 401" in str(info.value) and "check the API key" in str(info.value)
    assert "sk-ant-wrong" not in str(info.value)


def test_n_is_fanned_out(fake: FakeProviders, url: str) -> None:
    with loaded(task_for(url, num_generations=3)) as task:
        rows = next(task.process([{"instruction": "three", "image": b64(image_bytes())}]))
    assert len(rows) == 3
    assert all(r["generation"] == "three | images: PNG 16x12" for r in rows)
    assert len(fake.received_on("messages")) == 3
    assert all("n" not in r.payload for r in fake.received_on("messages"))


@pytest.mark.parametrize(
    ("marker", "attempts", "min_seconds"),
    [("[[429:2]]", 3, 0.0), ("[[429ra:1]]", 2, 0.3), ("[[500:2]]", 3, 0.0)],
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
        ("[[nochoices]]", "AnthropicLLM: the response has no content"),
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
    assert expected in rows[1][METADATA_COLUMN]["error_claude"]


def test_connection_refused() -> None:
    with (
        loaded(task_for(f"http://127.0.0.1:{free_port()}", max_retries=1)) as task,
        pytest.raises(ModelUnavailableError, match="connection refused"),
    ):
        next(task.process([{"instruction": "?", "image": b64(image_bytes())}]))


def test_batch_isolation(fake: FakeProviders, url: str) -> None:
    rows_in = [
        {
            "instruction": f"row {k}" + (" [[500:99]]" if k in (3, 17) else ""),
            "image": b64(image_bytes(4, 4 + k)),
            "k": k,
        }
        for k in range(30)
    ]
    with loaded(task_for(url, max_retries=1, max_concurrent_requests=6)) as task:
        rows = next(task.process(rows_in))
    assert [r["k"] for r in rows] == list(range(30))
    assert [r["k"] for r in rows if r["generation"] is None] == [3, 17]
    assert "HTTP 500 after 2 attempts" in rows[3][METADATA_COLUMN]["error_claude"]
    assert all(
        r["generation"] == f"row {r['k']} | images: PNG 4x{4 + r['k']}"
        for r in rows
        if r["k"] not in (3, 17)
    )


def test_missing_key_for_anthropic_is_an_error_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        AnthropicLLM(model="claude").load()
