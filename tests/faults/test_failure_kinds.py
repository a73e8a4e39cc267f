"""A failed row records its failure as data next to the message: ``failure_<step>`` in
``pixtill_metadata`` holds the kind (rate-limited, timeout, connection, bad request, auth,
server, invalid response; input, output, model) and the HTTP status where there was one,
through the task API, a pipeline and a saved dataset, for direct requests and batch APIs; the
run summary groups the causes by kind. ``error_<step>`` stays the message it always was."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest

from faults.fault_servers import FaultyOpenAI, png, raw_server
from http_servers import serve
from models.fake_providers import FAST, loaded, loaded_with_hangs
from models.llms.batch_job import KEY
from models.llms.fake_batches import FakeBatches
from pixtill.models.image_generation import OpenAIImageGeneration
from pixtill.models.llms import AnthropicBatchLLM, OpenAIBatchLLM, OpenAILLM
from pixtill.pipeline import Pipeline
from pixtill.run_report import failure_record, summarize_failures
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import (
    METADATA_COLUMN,
    ImageGeneration,
    TextGeneration,
    TextGenerationWithImage,
)


@pytest.fixture
def server() -> Iterator[FaultyOpenAI]:
    fake = FaultyOpenAI()
    with serve(fake.app()) as base:
        fake.base = base
        yield fake


def llm(base: str, **overrides: Any) -> OpenAILLM:
    settings = {**FAST, "max_retries": 1, **overrides}
    return OpenAILLM(model="m", base_url=f"{base}/v1", api_key="k", **settings)


def data_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png()).decode()


def failure(row: dict[str, Any], step: str) -> Any:
    return row[METADATA_COLUMN].get(f"failure_{step}")


@pytest.mark.parametrize(
    ("marker", "kind", "status"),
    [
        ("[[status:429]]", "rate_limited", 429),
        ("[[status:500]]", "server", 500),
        ("[[status:503]]", "server", 503),
        ("[[status:422]]", "bad_request", 422),
        ("[[status:408]]", "timeout", 408),
        ("[[image400]]", "bad_request", 400),
        ("[[nochoices]]", "invalid_response", None),
        ("[[nullcontent]]", "invalid_response", None),
        ("[[badjson]]", "invalid_response", 200),  # the status the bad body came with
        ("[[html]]", "invalid_response", 200),
        ("[[hang]]", "timeout", None),
    ],
)
def test_a_failed_request_records_its_kind_and_status(
    server: FaultyOpenAI, marker: str, kind: str, status: int | None
) -> None:
    task = TextGenerationWithImage(name="vision", llm=llm(server.base, timeout=0.3))
    rows = [
        {"instruction": "fine", "image": data_url()},
        {"instruction": f"describe {marker}", "image": data_url()},
    ]
    with loaded_with_hangs(task) as (task, _):
        fine, failed = next(task.process(rows))
    assert failure(fine, "vision") is None and "error_vision" not in fine[METADATA_COLUMN]
    assert failure(failed, "vision") == {"kind": kind, "status": status}
    # The message is where it always was, for distilabel-compatible readers.
    assert failed[METADATA_COLUMN]["error_vision"].startswith("step 'vision': row 1")


@pytest.mark.parametrize("mode", ["reset", "short"])
def test_resets_and_cut_bodies_are_connection_failures(mode: str) -> None:
    with raw_server(mode) as base:
        task = TextGenerationWithImage(name="vision", llm=llm(base, max_retries=0))
        with loaded(task):
            [row] = next(task.process([{"instruction": "hi", "image": data_url()}]))
    assert failure(row, "vision") == {"kind": "connection", "status": None}


class Picky(TextGeneration):
    """Cannot use an answer that mentions a giraffe (its ``format_output`` raises)."""

    def format_output(self, output: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        if "giraffe" in str(output):
            raise ValueError("no giraffes")
        return super().format_output(output, input)


def test_input_and_output_failures_have_their_own_kinds(server: FaultyOpenAI) -> None:
    task = Picky(name="t", llm=llm(server.base))
    rows = [{"instruction": "a cat"}, {"instruction": None}, {"instruction": "a giraffe"}]
    with loaded(task):
        ok, bad_input, bad_output = next(task.process(rows))
    assert failure(ok, "t") is None
    assert failure(bad_input, "t") == {"kind": "input", "status": None}
    assert "column 'instruction'" in bad_input[METADATA_COLUMN]["error_t"]
    assert failure(bad_output, "t") == {"kind": "output", "status": None}
    assert "format_output failed" in bad_output[METADATA_COLUMN]["error_t"]


def test_image_generation_failures_record_their_kind(server: FaultyOpenAI) -> None:
    model = OpenAIImageGeneration(
        model="dall-e-2",
        base_url=f"{server.base}/v1",
        api_key="k",
        generation_kwargs={"response_format": "url"},
        **{**FAST, "max_retries": 0},
    )
    task = ImageGeneration(name="paint", image_generation_model=model)
    prompts = [{"prompt": "a cat"}, {"prompt": "x [[notimage]]"}, {"prompt": "y [[url404]]"}]
    with loaded(task):
        ok, not_image, missing = next(task.process(prompts))
    assert failure(ok, "paint") is None
    assert failure(not_image, "paint") == {"kind": "invalid_response", "status": None}
    assert failure(missing, "paint") == {"kind": "bad_request", "status": 404}


def test_a_pipeline_keeps_the_kinds_and_its_summary_groups_by_kind(
    server: FaultyOpenAI, tmp_path: Path
) -> None:
    markers = ["[[status:429]]", "[[status:500]]", "[[status:503]]", "[[status:500]]"]
    markers += ["[[nochoices]]", "[[status:422]]"]
    data = [{"instruction": "fine", "image": data_url()}]
    data += [{"instruction": f"q{i} {m}", "image": data_url()} for i, m in enumerate(markers)]
    with Pipeline(name="kinds", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=3)
        load >> TextGenerationWithImage(name="vision", llm=llm(server.base))
    distiset = pipeline.run(use_cache=False)
    metas = distiset["vision"][METADATA_COLUMN]
    assert [m.get("failure_vision") for m in metas] == [
        None,
        {"kind": "rate_limited", "status": 429},
        {"kind": "server", "status": 500},
        {"kind": "server", "status": 503},
        {"kind": "server", "status": 500},
        {"kind": "invalid_response", "status": None},
        {"kind": "bad_request", "status": 422},
    ]
    failures = distiset.failures
    assert failures.by_kind == {
        "server": 3,
        "rate_limited": 1,
        "invalid_response": 1,
        "bad_request": 1,
    }
    assert [(g.kind, g.status, g.count) for g in failures.groups[:2]] == [
        ("server", 500, 2),
        ("server", 503, 1),
    ]
    lines = failures.format().splitlines()
    assert lines[0] == "6 of 7 rows failed (85.7%):"
    assert lines[1] == "  server (HTTP 500, 503): 3 rows"
    assert lines[2].startswith("    2 x step 'vision': RequestError: HTTP 500")
    assert "  rate_limited (HTTP 429): 1 row" in lines


def test_the_summary_reads_kinds_from_rows_datasets_and_grouped_generations() -> None:
    def failed(step: str, message: str, record: Any) -> dict[str, Any]:
        meta = {f"error_{step}": f"step '{step}': row 0: {message}", f"failure_{step}": record}
        return {METADATA_COLUMN: meta}

    rows = [
        failed("v", "RequestError: timeout after 2 attempts", failure_record("timeout")),
        failed("v", "RequestError: HTTP 401", failure_record("auth", 401)),
        failed("v", "boom", [None, failure_record("model")]),  # grouped generations
        {METADATA_COLUMN: {"error_v": "step 'v': row 3: from an older run"}},
        {METADATA_COLUMN: {"raw_output_v": "fine"}},
    ]
    summary = summarize_failures(rows)
    assert (summary.rows, summary.failed) == (5, 4)
    assert summary.by_kind == {"timeout": 1, "auth": 1, "model": 1, "unknown": 1}
    as_dataset = datasets.Dataset.from_list(
        [r for r in rows if not isinstance(r[METADATA_COLUMN].get("failure_v"), list)]
    )
    read = summarize_failures({"leaf": as_dataset})
    assert read.by_kind == {"timeout": 1, "auth": 1, "unknown": 1}
    assert [g.status for g in read.groups if g.kind == "auth"] == [401]


# -- batch APIs: a failed line maps to the kind a direct request would have had ----------------


@pytest.fixture
def batches() -> Iterator[str]:
    with serve(FakeBatches(api_key=KEY).app()) as base:
        yield base


BATCH_CASES = [
    ("[[fail]]", "bad_request", 400),
    ("[[fail:401]]", "auth", 401),
    ("[[fail:429]]", "rate_limited", 429),
    ("[[fail:500]]", "server", 500),
]


def batch_task(llm: Any) -> TextGeneration:
    return TextGeneration(name="batch", llm=llm)


def openai_batches(base: str, tmp_path: Path) -> OpenAIBatchLLM:
    return OpenAIBatchLLM(
        model="gpt-4o-mini",
        base_url=f"{base}/v1",
        api_key=KEY,
        state_dir=tmp_path / "state",
        poll_interval=0.0,
        **{**FAST, "max_retries": 1},
    )


def test_openai_batch_lines_map_to_kinds(batches: str, tmp_path: Path) -> None:
    model = openai_batches(batches, tmp_path)
    rows = [{"instruction": "fine"}, *({"instruction": f"q {m}"} for m, _, _ in BATCH_CASES)]
    with loaded(batch_task(model)) as task:
        out = task.process_batch(rows)
    assert failure(out[0], "batch") is None
    for row, (_, kind, status) in zip(out[1:], BATCH_CASES):
        assert failure(row, "batch") == {"kind": kind, "status": status}
        assert row[METADATA_COLUMN]["error_batch"].startswith("step 'batch': row ")


def test_anthropic_batch_results_map_to_kinds(batches: str, tmp_path: Path) -> None:
    model = AnthropicBatchLLM(
        model="claude-haiku-4-5",
        base_url=batches,
        api_key=KEY,
        state_dir=tmp_path / "state",
        poll_interval=0.0,
        generation_kwargs={"max_tokens": 16},
        **{**FAST, "max_retries": 1},
    )
    rows = [{"instruction": "fine"}, *({"instruction": f"q {m}"} for m, _, _ in BATCH_CASES)]
    with loaded(batch_task(model)) as task:
        out = task.process_batch(rows)
    assert failure(out[0], "batch") is None
    for row, (_, kind, status) in zip(out[1:], BATCH_CASES):
        assert failure(row, "batch") == {"kind": kind, "status": status}


def test_an_expired_batch_fails_its_rows_as_timeouts(tmp_path: Path) -> None:
    fake = FakeBatches(api_key=KEY)
    fake.expire = True
    with serve(fake.app()) as base, loaded(batch_task(openai_batches(base, tmp_path))) as task:
        [row] = task.process_batch([{"instruction": "too late"}])
    assert failure(row, "batch") == {"kind": "timeout", "status": None}
    assert "expired" in row[METADATA_COLUMN]["error_batch"]
