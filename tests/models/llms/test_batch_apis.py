"""OpenAIBatchLLM and AnthropicBatchLLM against a fake batch server on 127.0.0.1: the JSONL and
its images are validated by the server; a run killed while the provider works is resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from http_servers import serve
from models.fake_providers import free_port, loaded
from models.llms.batch_job import KEY, build
from models.llms.fake_batches import FakeBatches
from pixtill.errors import ModelUnavailableError
from pixtill.models.http import ManualClock
from pixtill.models.llms import AnthropicBatchLLM, OpenAIBatchLLM
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from sample_images import image_bytes, truncated_png

HERE = Path(__file__).parent


@pytest.fixture
def fake() -> FakeBatches:
    return FakeBatches(api_key=KEY)


@pytest.fixture
def url(fake: FakeBatches) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def openai_llm(url: str, tmp_path: Path, **overrides: Any) -> OpenAIBatchLLM:
    values: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "base_url": f"{url}/v1",
        "api_key": KEY,
        "state_dir": tmp_path / "batches",
        "poll_interval": 0.0,
        "max_retries": 1,
        "backoff_base": 0.01,
        **overrides,
    }
    return OpenAIBatchLLM(**values)


def anthropic_llm(url: str, tmp_path: Path, **overrides: Any) -> AnthropicBatchLLM:
    values: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "base_url": url,
        "api_key": KEY,
        "state_dir": tmp_path / "batches",
        "poll_interval": 0.0,
        "max_retries": 1,
        "backoff_base": 0.01,
        **overrides,
    }
    return AnthropicBatchLLM(**values)


def _rows() -> list[dict[str, Any]]:
    return [
        {"instruction": "first", "image": image_bytes(10, 8)},
        {"instruction": "second", "image": image_bytes(12, 9, format="JPEG")},
        {"instruction": "bad image", "image": truncated_png()},
        {"instruction": "this one [[fail]]s", "image": image_bytes(7, 7)},
        {"instruction": "fifth", "image": [image_bytes(5, 5), image_bytes(6, 6, format="GIF")]},
    ]


def test_openai_batch_splits_files_and_maps_results_back(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    fake.max_lines = 2  # the provider's limit, here tiny: 4 requests need 2 files
    task = TextGenerationWithImage(
        name="caption",
        llm=openai_llm(url, tmp_path, max_requests_per_file=2),
        num_generations=2,
        validate_images=False,  # let the bad image reach the backend: it fails there, alone
    )
    with loaded(task):
        rows = task.process_batch(_rows())
    assert fake.rejected == []
    assert fake.uploads == 2 and len(fake.batches) == 2
    assert [len(b.lines) for b in fake.batches.values()] == [2, 2]
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_instruction.setdefault(row["instruction"], []).append(row)
    first = by_instruction["first"]
    assert [r["generation"] for r in first] == ["first | PNG 10x8 | #0", "first | PNG 10x8 | #1"]
    assert first[0][METADATA_COLUMN]["statistics_caption"] == {
        "input_tokens": 100,
        "output_tokens": 10,
    }
    assert by_instruction["second"][1]["generation"] == "second | JPEG 12x9 | #1"
    # Several images per request, in order, each with its own media type.
    assert by_instruction["fifth"][0]["generation"] == "fifth | PNG 5x5, GIF 6x6 | #0"
    for name in ("bad image", "this one [[fail]]s"):
        assert [r["generation"] for r in by_instruction[name]] == [None, None]
    assert (
        "scripted failure"
        in by_instruction["this one [[fail]]s"][0][METADATA_COLUMN]["error_caption"]
    )
    assert "bad image" not in str([b.lines for b in fake.batches.values()])  # never sent
    assert KEY not in repr(rows)


def test_openai_batch_splits_by_bytes(fake: FakeBatches, url: str, tmp_path: Path) -> None:
    llm = openai_llm(url, tmp_path, max_file_bytes=1500)
    fake.max_bytes = 1500
    inputs = [
        [{"role": "user", "content": [{"type": "text", "text": f"q{i} " * 300}]}] for i in range(4)
    ]
    with loaded(llm):
        outputs = llm.generate(inputs)
    assert fake.rejected == []
    # About 1 KB a request and 1.5 KB a file: one request per file.
    assert [len(b.lines) for b in fake.batches.values()] == [1, 1, 1, 1]
    assert [o["generations"][0].split()[0] for o in outputs] == ["q0", "q1", "q2", "q3"]


def test_a_second_run_collects_instead_of_submitting(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    inputs = [
        [{"role": "user", "content": "hello"}],
        [{"role": "user", "content": "there"}],
        [{"role": "user", "content": "[[fail]]"}],
    ]
    llm = openai_llm(url, tmp_path)
    with loaded(llm):
        first = llm.generate(inputs)
    assert first[2]["generations"] == [None]  # a failed request does not void the batch
    (state,) = (tmp_path / "batches").iterdir()
    assert state.name.startswith("openai-")
    assert KEY not in state.read_text()
    again = openai_llm(url, tmp_path)
    with loaded(again):
        second = again.generate(inputs)
    assert second == first
    assert fake.uploads == 1 and len(fake.batches) == 1
    other = openai_llm(url, tmp_path)  # different requests: a new batch
    with loaded(other):
        other.generate([[{"role": "user", "content": "else"}]])
    assert len(fake.batches) == 2


def test_expired_batch_fails_its_rows_and_is_submitted_again_next_time(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    fake.expire = True
    inputs = [[{"role": "user", "content": "hello"}]]
    llm = openai_llm(url, tmp_path)
    with loaded(llm):
        (output,) = llm.generate(inputs)
    assert output["generations"] == [None]
    assert "expired" in (output.get("error") or "")
    assert list((tmp_path / "batches").iterdir()) == []
    fake.expire = False
    with loaded(openai_llm(url, tmp_path)) as again:
        (output,) = again.generate(inputs)
    assert output["generations"] == ["hello |  | #0"]
    assert len(fake.batches) == 2


def test_max_wait_leaves_the_batch_running_for_a_later_run(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    fake.hold = True
    inputs = [[{"role": "user", "content": "slow"}]]
    llm = openai_llm(url, tmp_path, max_wait=3600, poll_interval=60)
    clock = ManualClock()  # an hour of polling every minute, in virtual time
    with loaded(llm):
        llm.load_with(clock=clock)
        with pytest.raises(TimeoutError, match="run again to collect it"):
            llm.generate(inputs)
    assert clock.sleeps == [60] * 60
    assert clock.now == 3600
    fake.hold = False
    with loaded(openai_llm(url, tmp_path)) as again:
        (output,) = again.generate(inputs)
    assert output["generations"] == ["slow |  | #0"]
    assert len(fake.batches) == 1


def test_anthropic_batch_one_request_per_generation(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    task = TextGenerationWithImage(
        name="caption",
        llm=anthropic_llm(url, tmp_path, generation_kwargs={"max_tokens": 64, "seed": 3}),
        num_generations=2,
        validate_images=False,
    )
    with loaded(task):
        rows = task.process_batch(_rows())
    assert fake.rejected == []
    (batch,) = fake.batches.values()
    assert [item["custom_id"] for item in batch.lines] == [
        "r0-g0",
        "r0-g1",
        "r1-g0",
        "r1-g1",
        "r3-g0",
        "r3-g1",
        "r4-g0",
        "r4-g1",
    ]
    assert all(item["params"]["max_tokens"] == 64 for item in batch.lines)
    assert [r["generation"] for r in rows[:2]] == [
        "first | PNG 10x8 | r0-g0",
        "first | PNG 10x8 | r0-g1",
    ]
    assert rows[2]["generation"] == "second | JPEG 12x9 | r1-g0"
    assert rows[0][METADATA_COLUMN]["statistics_caption"] == {
        "input_tokens": 50,
        "output_tokens": 7,
    }
    assert rows[4]["generation"] is None  # the bad image
    assert "errored" in rows[6][METADATA_COLUMN]["error_caption"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_refused_key_is_never_shown(
    provider: str, fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    fake.api_key = "the-right-key"  # the server refuses KEY and echoes it back
    llm = openai_llm(url, tmp_path) if provider == "openai" else anthropic_llm(url, tmp_path)
    with loaded(llm), pytest.raises(Exception, match="401") as raised:
        llm.generate([[{"role": "user", "content": "hello"}]])
    assert "***" in str(raised.value)  # the echoed key was there, and was scrubbed
    assert KEY not in str(raised.value)
    assert KEY[:12] not in str(raised.value)
    assert not (tmp_path / "batches").exists() or not any((tmp_path / "batches").iterdir())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_dead_batch_server_is_named(provider: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    llm = openai_llm(dead, tmp_path) if provider == "openai" else anthropic_llm(dead, tmp_path)
    with loaded(llm), pytest.raises(ModelUnavailableError, match="connection refused") as info:
        llm.generate([[{"role": "user", "content": "hello"}]])
    assert llm.model_name in str(info.value)


class _Fields(TextGenerationWithImage):
    def get_structured_output(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"caption": {"type": "string"}, "colour": {"type": "string"}},
            "required": ["caption", "colour"],
            "additionalProperties": False,
        }


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_structured_output_in_batches(
    provider: str, fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    llm = openai_llm(url, tmp_path) if provider == "openai" else anthropic_llm(url, tmp_path)
    task = _Fields(name="fields", llm=llm)
    with loaded(task):
        rows = task.process_batch([{"instruction": "x", "image": image_bytes()}])
    assert fake.rejected == []
    assert json.loads(rows[0]["generation"]) == {"caption": "x", "colour": "x"}
    assert "error_fields" not in rows[0][METADATA_COLUMN]
    (batch,) = fake.batches.values()
    line = batch.lines[0]
    if provider == "openai":
        assert line["body"]["response_format"]["json_schema"]["strict"] is True
    else:
        assert line["params"]["tool_choice"] == {"type": "tool", "name": "output"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_pipeline_killed_while_the_provider_works_resumes_without_resubmitting(
    provider: str, fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    fake.hold = True  # the provider is still working when the process dies
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE)])}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "batch_job.py"), provider, url, str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # A watcher wakes the wait below if the child dies; the fake server wakes it when the
    # child polls a batch, which it does only after saving that batch's id. No clock involved
    # (the timeout is a safety net against a stuck child, not the condition).
    watcher = threading.Thread(target=lambda: (child.wait(), fake.wake()), daemon=True)
    watcher.start()
    try:
        submitted = fake.wait_for_polls(2, timeout=600, stop=lambda: child.poll() is not None)
        if not submitted:
            if child.poll() is not None:
                raise AssertionError(child.stderr.read().decode() if child.stderr else "")
            raise AssertionError("the child never submitted a batch")
        states = tmp_path / "batches"
        assert len(fake.batches) == 2 and len(list(states.iterdir())) == 2
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert len(fake.batches) == 2
    fake.hold = False  # the provider finishes while nobody watches
    dataset = build(provider, url, tmp_path).run()["caption"]
    assert len(fake.batches) == 2  # collected, not submitted again
    assert fake.uploads == (2 if provider == "openai" else 0)
    assert fake.rejected == []
    assert sorted(dataset["instruction"]) == [f"caption picture {i}" for i in range(6)]
    for row in dataset:
        number = int(row["instruction"].rsplit(" ", 1)[1])
        assert row["generation"].startswith(f"caption picture {number} | PNG {8 + number}x6")
    # The results are in the cache now: the batch ids that made the resume work are gone.
    assert list(states.iterdir()) == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_state_files_are_removed_once_the_results_are_cached(
    provider: str, fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    states = tmp_path / "batches"
    dataset = build(provider, url, tmp_path).run(show_progress=False)["caption"]
    assert len(dataset) == 6 and all(dataset["generation"])
    assert len(fake.batches) == 2
    assert list(states.iterdir()) == []  # nothing left to collect: the cache answers now
    again = build(provider, url, tmp_path).run(show_progress=False)["caption"]
    assert again["generation"] == dataset["generation"]
    assert len(fake.batches) == 2  # from the cache, no new batch


def test_without_a_cache_the_state_stays_for_the_next_run(
    fake: FakeBatches, url: str, tmp_path: Path
) -> None:
    build("openai", url, tmp_path).run(show_progress=False, use_cache=False)
    assert len(list((tmp_path / "batches").iterdir())) == 2
    build("openai", url, tmp_path).run(show_progress=False, use_cache=False)
    assert len(fake.batches) == 2  # collected again, not paid twice
