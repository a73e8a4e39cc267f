"""OpenAILLM against a fake OpenAI server on 127.0.0.1, through the tasks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, free_port, loaded, loaded_with_hangs
from pixtill.errors import ModelUnavailableError
from pixtill.images import ImageRef, ResizePolicy
from pixtill.models.http import ManualClock
from pixtill.models.llms import OpenAILLM
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration, TextGenerationWithImage
from sample_images import image_bytes, truncated_png

KEY = "sk-test-openai-SECRET-0123456789"


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def make_llm(base: str, **overrides: Any) -> OpenAILLM:
    values: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "base_url": f"{base}/v1",
        "api_key": KEY,
        **FAST,
    }
    values.update(overrides)
    return OpenAILLM(**values)


def vision(base: str, **overrides: Any) -> TextGenerationWithImage:
    task_options = {
        k: overrides.pop(k)
        for k in ("num_generations", "image_type", "validate_images", "system_prompt")
        if k in overrides
    }
    return TextGenerationWithImage(name="vision", llm=make_llm(base, **overrides), **task_options)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------ success


def test_one_row_with_an_image(fake: FakeProviders, url: str) -> None:
    png = image_bytes(16, 12)
    with loaded(vision(url)) as task:
        rows = next(task.process([{"instruction": "Describe it.", "image": b64(png)}]))
        stats = task.llm.request_stats()
    assert len(rows) == 1
    row = rows[0]
    assert row["generation"] == "[0] Describe it. | images: PNG 16x12"
    assert row["model_name"] == "gpt-4o-mini"
    meta = row[METADATA_COLUMN]
    assert meta["statistics_vision"] == {"input_tokens": 12, "output_tokens": 7}
    # raw_input holds a content hash, never the image itself.
    assert b64(png) not in json.dumps(meta)
    assert meta["raw_input_vision"][0]["content"][1]["image_url"]["url"].startswith("sha256:")
    (received,) = fake.received_on("chat")
    assert received.payload["model"] == "gpt-4o-mini"
    assert "n" not in received.payload
    assert [(im.source, im.format, im.size) for im in received.images] == [
        ("data", "PNG", (16, 12))
    ]
    assert stats is not None
    assert (stats["done"], stats["failed"], stats["in_flight"]) == (1, 0, 0)


def test_several_images_reach_the_server_in_order_and_decode(fake: FakeProviders, url: str) -> None:
    images = [
        image_bytes(16, 12, format="PNG"),
        image_bytes(20, 10, format="JPEG"),
        image_bytes(8, 8, format="WEBP"),
        image_bytes(5, 7, format="GIF"),
    ]
    with loaded(vision(url)) as task:
        rows = next(task.process([{"instruction": "Compare.", "image": [b64(i) for i in images]}]))
    (received,) = fake.received_on("chat")
    assert [(im.format, im.size, im.media_type) for im in received.images] == [
        ("PNG", (16, 12), "image/png"),
        ("JPEG", (20, 10), "image/jpeg"),
        ("WEBP", (8, 8), "image/webp"),
        ("GIF", (5, 7), "image/gif"),
    ]
    assert rows[0]["generation"].endswith("PNG 16x12, JPEG 20x10, WEBP 8x8, GIF 5x7")


def test_url_images_are_passed_through_untouched(fake: FakeProviders, url: str) -> None:
    local = url + fake.add_static("cat.png", image_bytes(9, 9))
    remote = "https://example.invalid/images/boardwalk.jpg?size=large&x=1"
    with loaded(vision(url, image_type="url", image_detail="low")) as task:
        rows = next(task.process([{"instruction": "What?", "image": [local, remote]}]))
    (received,) = fake.received_on("chat")
    sent = received.payload["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": local, "detail": "low"}}
    assert sent[2] == {"type": "image_url", "image_url": {"url": remote, "detail": "low"}}
    # The server fetched the local one itself (so it really was a URL, not a data URL).
    assert [(im.source, im.format, im.size) for im in received.images] == [
        ("url", "PNG", (9, 9)),
        ("url", None, None),
    ]
    assert rows[0]["generation"] is not None
    assert rows[0][METADATA_COLUMN]["raw_input_vision"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": local},
    }


def test_chat_generation_multi_turn_with_system_and_images(fake: FakeProviders, url: str) -> None:
    data_url = "data:image/jpeg;base64," + b64(image_bytes(4, 4, format="JPEG"))
    messages = [
        {"role": "system", "content": "You read documents."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": "What is this?"},
            ],
        },
        {"role": "assistant", "content": "A small square."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (3, 2))},
                {"type": "text", "text": "And this?"},
            ],
        },
    ]
    task = ChatGeneration(name="chat", llm=make_llm(url))
    with loaded(task):
        rows = next(task.process([{"messages": messages}]))
    (received,) = fake.received_on("chat")
    sent = received.payload["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0] == {"role": "system", "content": "You read documents."}
    # A PIL image is encoded as PNG, the JPEG data URL keeps its bytes and type.
    assert [(im.format, im.size) for im in received.images] == [("JPEG", (4, 4)), ("PNG", (3, 2))]
    assert rows[0]["generation"].startswith("[0] You read documents.")


def test_image_resize_and_unsupported_formats(fake: FakeProviders, url: str) -> None:
    big = image_bytes(200, 100, format="JPEG")
    bmp = image_bytes(6, 4, format="BMP")
    task = vision(url, image_resize=ResizePolicy(max_side=50))
    with loaded(task):
        next(task.process([{"instruction": "Small?", "image": [b64(big), b64(bmp)]}]))
    (received,) = fake.received_on("chat")
    # Shrunk (aspect kept); a BMP goes as PNG since the API takes no BMP.
    assert [(im.format, im.size) for im in received.images] == [("JPEG", (50, 25)), ("PNG", (6, 4))]


def test_generation_kwargs_are_sent(fake: FakeProviders, url: str) -> None:
    kwargs = {"max_tokens": 32, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"], "seed": 5}
    with loaded(vision(url, generation_kwargs=kwargs)) as task:
        next(task.process([{"instruction": "Go.", "image": b64(image_bytes())}]))
    payload = fake.received_on("chat")[0].payload
    assert {k: payload[k] for k in kwargs} == kwargs


def test_structured_output_json_schema(fake: FakeProviders, url: str) -> None:
    schema = {
        "title": "Image Caption",
        "type": "object",
        "properties": {
            "caption": {"type": "string"},
            "objects": {"type": "array", "items": {"type": "string"}},
            "count": {"type": "integer"},
        },
        "required": ["caption", "objects", "count"],
        "additionalProperties": False,
    }
    with loaded(vision(url, structured_output=schema)) as task:
        rows = next(task.process([{"instruction": "Caption.", "image": b64(image_bytes())}]))
    assert json.loads(rows[0]["generation"]) == {"caption": "text", "objects": ["text"], "count": 7}
    sent = fake.received_on("chat")[0].payload["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "Image_Caption", "schema": schema, "strict": True},
    }


def test_structured_output_json_object(fake: FakeProviders, url: str) -> None:
    with loaded(vision(url, structured_output={"type": "json_object"})) as task:
        rows = next(task.process([{"instruction": "JSON!", "image": b64(image_bytes())}]))
    assert json.loads(rows[0]["generation"]) == {"answer": "[0] JSON!"}
    assert fake.received_on("chat")[0].payload["response_format"] == {"type": "json_object"}


# ------------------------------------------------------------------ n


def test_native_n(fake: FakeProviders, url: str) -> None:
    with loaded(vision(url, num_generations=3)) as task:
        rows = next(task.process([{"instruction": "Three.", "image": b64(image_bytes())}]))
    assert [r["generation"][:3] for r in rows] == ["[0]", "[1]", "[2]"]
    (received,) = fake.received_on("chat")
    assert received.payload["n"] == 3
    stats = [r[METADATA_COLUMN]["statistics_vision"] for r in rows]
    assert all(s["input_tokens"] == 11 for s in stats)
    # The server reports one completion total; it is split so that the parts add up.
    assert [s["output_tokens"] for s in stats] == [6, 6, 6]  # "[k] Three. | images: PNG 16x12"


def test_fewer_choices_than_asked_fans_out_and_is_remembered(url: str) -> None:
    fake = FakeProviders(api_key=KEY, max_choices=1)
    with serve(fake.app()) as base, loaded(vision(base, num_generations=3)) as task:
        first = next(task.process([{"instruction": "One.", "image": b64(image_bytes())}]))
        second = next(task.process([{"instruction": "Two.", "image": b64(image_bytes())}]))
    assert [r["generation"] is not None for r in first + second] == [True] * 6
    ns = [r.payload.get("n") for r in fake.received_on("chat")]
    assert ns[0] == 3  # asked natively once, got one choice, topped up with singles
    assert ns[1:] == [None] * 5  # then single requests only


def test_n_fan_out_with_native_n_off_uses_distinct_seeds(fake: FakeProviders, url: str) -> None:
    task = vision(url, num_generations=3, native_n=False, generation_kwargs={"seed": 10})
    with loaded(task):
        rows = next(task.process([{"instruction": "Seeds.", "image": b64(image_bytes())}]))
    assert len(rows) == 3
    assert all(r["generation"] is not None for r in rows)
    assert sorted(r.payload["seed"] for r in fake.received_on("chat")) == [10, 11, 12]
    assert all("n" not in r.payload for r in fake.received_on("chat"))


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("marker", "attempts", "min_seconds"),
    [("[[429:2]]", 3, 0.0), ("[[429ra:1]]", 2, 0.3), ("[[500:2]]", 3, 0.0)],
    ids=["429", "429-retry-after", "500"],
)
def test_transient_failures_are_retried(
    fake: FakeProviders, url: str, marker: str, attempts: int, min_seconds: float
) -> None:
    text = f"Retry me {marker}"
    clock = ManualClock()  # Retry-After and backoffs are slept in virtual time
    with loaded(vision(url)) as task:
        task.llm.load_with(clock=clock)
        rows = next(task.process([{"instruction": text, "image": b64(image_bytes())}]))
        stats = task.llm.request_stats()
    assert rows[0]["generation"] is not None
    assert "error_vision" not in rows[0][METADATA_COLUMN]
    assert fake.attempts[text] == attempts
    assert max(clock.sleeps) >= min_seconds  # Retry-After: 0.3 was honoured
    assert stats is not None
    assert stats["retried"] == attempts - 1
    if marker.startswith("[[429"):
        assert stats["rate_limited"] == attempts - 1


def test_hung_request_times_out(fake: FakeProviders, url: str) -> None:
    with loaded_with_hangs(vision(url, timeout=0.3, max_retries=1)) as (task, transport):
        rows = next(task.process([{"instruction": "Wait [[hang]]", "image": b64(image_bytes())}]))
    assert rows[0]["generation"] is None
    error = rows[0][METADATA_COLUMN]["error_vision"]
    assert "RequestError: timeout after 2 attempts" in error
    assert transport.hung == 2


def test_malformed_json_body(url: str) -> None:
    with loaded(vision(url)) as task:
        rows = next(task.process([{"instruction": "[[badjson]]", "image": b64(image_bytes())}]))
    error = rows[0][METADATA_COLUMN]["error_vision"]
    assert rows[0]["generation"] is None
    assert "malformed JSON body" in error


def test_response_without_choices_is_a_clear_error(url: str) -> None:
    with loaded(vision(url)) as task:
        rows = next(task.process([{"instruction": "[[nochoices]]", "image": b64(image_bytes())}]))
    error = rows[0][METADATA_COLUMN]["error_vision"]
    assert error.startswith(
        "step 'vision': row 0: InvalidResponseError: OpenAILLM: the response has no choices"
    )


def test_connection_refused() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with loaded(vision(base, max_retries=6)) as task:
        with pytest.raises(ModelUnavailableError) as info:  # the step stops: nothing to retry
            next(task.process([{"instruction": "Anyone?", "image": b64(image_bytes())}] * 20))
        stats = task.llm.request_stats()
    assert stats is not None and stats["retried"] == 0
    assert str(info.value) == (
        f"step 'vision': model 'gpt-4o-mini' at {base}/v1/chat/completions is unavailable: "
        "connection error (connection refused); is the server running, and are the host and "
        "port right?"
    )


def test_wrong_path_is_named_with_a_hint(url: str) -> None:
    with (
        loaded(vision(url, base_url=url)) as task,
        pytest.raises(ModelUnavailableError) as info,
    ):  # base_url without /v1
        next(task.process([{"instruction": "Anyone?", "image": b64(image_bytes())}]))
    message = str(info.value)
    assert "HTTP 404" in message and "need /v1 in base_url" in message


def test_server_side_image_check_fails_only_that_row(fake: FakeProviders, url: str) -> None:
    rows_in = [
        {"instruction": "good", "image": b64(image_bytes())},
        {"instruction": "broken", "image": b64(truncated_png())},
    ]
    with loaded(vision(url, validate_images=False)) as task:
        rows = next(task.process(rows_in))
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    assert "HTTP 400" in rows[1][METADATA_COLUMN]["error_vision"]
    assert "unsupported image" in rows[1][METADATA_COLUMN]["error_vision"]


def test_batch_with_permanent_failures_keeps_order_and_isolates_them(
    fake: FakeProviders, url: str
) -> None:
    images = [b64(image_bytes(8 + k, 8, color=(k * 8, 0, 0))) for k in range(30)]
    rows_in = []
    for k in range(30):
        marker = {3: " [[status:400]]", 17: " [[500:99]]"}.get(k, "")
        rows_in.append({"instruction": f"row {k}{marker}", "image": images[k], "k": k})
    with loaded(vision(url, max_concurrent_requests=8, max_retries=2)) as task:
        rows = next(task.process(rows_in))
    assert len(rows) == 30
    assert [r["k"] for r in rows] == list(range(30))
    failed = [r["k"] for r in rows if r["generation"] is None]
    assert failed == [3, 17]
    assert "HTTP 400" in rows[3][METADATA_COLUMN]["error_vision"]
    assert "HTTP 500 after 3 attempts" in rows[17][METADATA_COLUMN]["error_vision"]
    for row in rows:
        if row["k"] not in (3, 17):
            assert row["generation"].startswith(f"[0] row {row['k']} |")
            assert f"PNG {8 + row['k']}x8" in row["generation"]
            assert "error_vision" not in row[METADATA_COLUMN]
    texts = [r.text for r in fake.received_on("chat")]
    assert sorted(texts) == sorted(f"row {k}" for k in range(30) if k not in (3, 17))
    assert fake.max_in_flight <= 8


# ------------------------------------------------------------------ configuration


def test_direct_agenerate_without_load(fake: FakeProviders, url: str) -> None:
    llm = make_llm(url)
    ref = ImageRef.from_value(image_bytes(3, 3))
    content = [{"type": "text", "text": "hi"}, {"type": "image", "image": ref}]
    message = [{"role": "user", "content": content}]

    async def main() -> Any:
        try:
            return await llm.agenerate(message, num_generations=2)
        finally:
            await llm.aclose()

    output = asyncio.run(main())
    assert output["generations"] == ["[0] hi | images: PNG 3x3", "[1] hi | images: PNG 3x3"]
    assert output["statistics"]["input_tokens"] == [11, 11]


def test_api_key_from_the_environment(
    fake: FakeProviders, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with loaded(vision(url, api_key=None)) as task:
        rows = next(task.process([{"instruction": "env", "image": b64(image_bytes())}]))
    assert rows[0]["generation"] is not None


def test_missing_key_for_openai_is_an_error_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = OpenAILLM(model="gpt-4o")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        llm.load()


def test_request_stats_before_load_is_none() -> None:
    assert OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1").request_stats() is None


def test_image_bytes_sent_are_the_original_bytes(fake: FakeProviders, url: str) -> None:
    """No resize asked, a supported format: the exact bytes go out (no re-encoding)."""
    jpeg = image_bytes(30, 20, format="JPEG")
    with loaded(vision(url)) as task:
        next(task.process([{"instruction": "same?", "image": b64(jpeg)}]))
    part = fake.received_on("chat")[0].payload["messages"][0]["content"][1]
    assert part["image_url"]["url"] == "data:image/jpeg;base64," + b64(jpeg)
    assert Image.open(io.BytesIO(jpeg)).size == (30, 20)


def test_engine_settings_and_token_estimate() -> None:
    llm = OpenAILLM(
        model="m",
        base_url="http://127.0.0.1:9/v1",
        max_concurrent_requests=7,
        timeout=3.0,
        max_retries=2,
        requests_per_minute=600,
        tokens_per_minute=90_000,
    )
    llm.load()
    try:
        assert llm.engine is not None
        config = llm.engine.config
        assert (config.max_concurrent_requests, config.timeout, config.max_retries) == (7, 3.0, 2)
        assert (config.requests_per_minute, config.tokens_per_minute) == (600, 90_000)
    finally:
        llm.unload()
    assert llm.request_stats() is None
    messages = [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": [{"type": "text", "text": "y" * 60}, {"type": "image"}]},
    ]
    # prompt characters / 4 + a rough 256 per image + max_tokens
    assert llm._estimate_tokens(messages, {"max_tokens": 100}) == 25 + 256 + 100


def test_a_used_model_can_be_copied_and_pickled(fake: FakeProviders, url: str) -> None:
    task = vision(url)
    with loaded(task):
        next(task.process([{"instruction": "first", "image": b64(image_bytes())}]))
        copied = task.model_copy(deep=True)
        restored = pickle.loads(pickle.dumps(task.llm))
    assert restored.model_dump() == task.llm.model_dump()
    assert restored.request_stats() is None
    with loaded(copied):
        rows = next(copied.process([{"instruction": "again", "image": b64(image_bytes())}]))
    assert rows[0]["generation"] is not None
    assert [r.text for r in fake.received_on("chat")] == ["first", "again"]
