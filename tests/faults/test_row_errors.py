"""Every request or response failure stored in ``error_<step>`` says where: the step, the row
and, when an input value caused it, the column; through the task API and through a pipeline."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from faults.fault_servers import FaultyOpenAI, png, raw_server
from http_servers import serve
from models.fake_providers import FAST, HangingTransport, loaded, loaded_with_hangs
from pixtill.models.http import ManualClock
from pixtill.models.image_generation import OpenAIImageGeneration
from pixtill.models.llms import OpenAILLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import (
    METADATA_COLUMN,
    ChatGeneration,
    ImageGeneration,
    TextGenerationWithImage,
)


@pytest.fixture
def server() -> Iterator[FaultyOpenAI]:
    fake = FaultyOpenAI()
    with serve(fake.app()) as base:
        fake.base = base
        yield fake


def llm(base: str, **overrides: Any) -> OpenAILLM:
    return OpenAILLM(
        model="m", base_url=f"{base}/v1", api_key="k", **{**FAST, "max_retries": 1, **overrides}
    )


def vision(base: str, **overrides: Any) -> TextGenerationWithImage:
    return TextGenerationWithImage(name="vision", llm=llm(base, **overrides))


def data_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png()).decode()


def rows_with(marker: str, image: str | None = None) -> list[dict[str, Any]]:
    """Three rows; only row 2 carries the fault."""
    return [
        {"instruction": "fine", "image": data_url()},
        {"instruction": "fine too", "image": data_url()},
        {"instruction": f"describe {marker}", "image": image or data_url()},
    ]


def error_of(rows: list[dict[str, Any]], index: int, step: str = "vision") -> str | None:
    value = rows[index][METADATA_COLUMN].get(f"error_{step}")
    return None if value is None else str(value)


@pytest.fixture
def hanging_models(monkeypatch: pytest.MonkeyPatch) -> list[HangingTransport]:
    """Every `OpenAILLM` loaded during the test (by a pipeline too) sends through a
    `HangingTransport` on a virtual clock: a ``[[hang]]`` request times out without waiting on
    the wall clock, and the healthy ones get a generous real timeout."""
    transports: list[HangingTransport] = []

    def load(self: OpenAILLM) -> None:
        transport = HangingTransport(ManualClock())
        transports.append(transport)
        self.load_with(transport=transport, clock=transport.clock)

    monkeypatch.setattr(OpenAILLM, "load", load)
    return transports


def task_errors(task: TextGenerationWithImage, rows: list[dict[str, Any]]) -> list[Any]:
    with loaded(task):
        out = next(task.process(rows))
    assert [error_of(out, i) for i in (0, 1)] == [None, None]  # neighbours untouched
    assert out[2]["generation"] is None
    return out


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ("[[status:500]]", "HTTP 500"),
        ("[[status:503]]", "HTTP 503"),
        ("[[status:422]]", "HTTP 422"),
        ("[[nochoices]]", "no choices"),
        ("[[nullcontent]]", "no text content"),
        ("[[badjson]]", "JSON"),
        ("[[html]]", "502 Bad Gateway"),
    ],
)
def test_response_failures_name_step_and_row(server: FaultyOpenAI, marker: str, says: str) -> None:
    out = task_errors(vision(server.base), rows_with(marker))
    error = error_of(out, 2)
    assert error is not None
    assert error.startswith("step 'vision': row 2: "), error
    assert says in error
    assert "column" not in error.split(": ")[1]  # not an input value's fault


def test_content_null_names_the_backend_once(server: FaultyOpenAI) -> None:
    error = error_of(task_errors(vision(server.base), rows_with("[[nullcontent]]")), 2)
    assert error is not None
    assert error.count("OpenAILLM") == 1, error
    assert "finish_reason='length'" in error


def test_an_image_the_server_could_not_fetch_names_the_column(server: FaultyOpenAI) -> None:
    image = "http://images.invalid/cat.png"
    error = error_of(task_errors(vision(server.base), rows_with("[[image400]]", image)), 2)
    assert error is not None
    assert error.startswith("step 'vision': row 2, column 'image': "), error
    assert "HTTP 400" in error and "cat.png" in error


def test_an_image_400_about_an_inline_image_names_the_column_too(server: FaultyOpenAI) -> None:
    error = error_of(task_errors(vision(server.base), rows_with("[[image400]]")), 2)
    assert error is not None and error.startswith("step 'vision': row 2, column 'image': ")


def test_timeouts_name_step_and_row(
    server: FaultyOpenAI, hanging_models: list[HangingTransport]
) -> None:
    task = vision(server.base, timeout=0.3, max_retries=0)
    error = error_of(task_errors(task, rows_with("[[hang]]")), 2)
    assert [t.hung for t in hanging_models] == [1]  # the hang was scripted, not waited for
    assert error is not None
    assert error.startswith("step 'vision': row 2: ") and "timeout" in error.lower(), error


@pytest.mark.parametrize("mode", ["reset", "short"])
def test_resets_and_cut_bodies_name_step_and_row(mode: str) -> None:
    with raw_server(mode) as base:
        task = vision(base, max_retries=0)
        with loaded(task):
            out = next(task.process([{"instruction": "hi", "image": data_url()}]))
    error = error_of(out, 0)
    assert error is not None
    assert error.startswith("step 'vision': row 0: "), error
    assert out[0]["generation"] is None


def test_the_row_number_is_the_dataset_position_in_a_pipeline(
    server: FaultyOpenAI, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = [{"instruction": f"q{i}", "image": data_url()} for i in range(5)]
    data[3]["instruction"] = "q3 [[status:500]]"
    data[4]["instruction"] = "q4 [[image400]]"
    data[4]["image"] = "http://images.invalid/dog.png"
    with Pipeline(name="errors", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=2)
        load >> TextGenerationWithImage(name="vision", llm=llm(server.base), input_batch_size=2)
    with caplog.at_level(logging.WARNING, logger="pixtill"):
        distiset = pipeline.run(use_cache=False)
    rows = [{METADATA_COLUMN: meta} for meta in distiset["vision"][METADATA_COLUMN]]
    assert [error_of(rows, i) is None for i in range(5)] == [True, True, True, False, False]
    assert str(error_of(rows, 3)).startswith("step 'vision': row 3: ")
    assert str(error_of(rows, 4)).startswith("step 'vision': row 4, column 'image': ")
    # Failed requests log a warning naming step and row, and the run ends with the summary.
    assert "step 'vision': row 3: " in caplog.text
    assert "2 of 5 rows failed" in caplog.text
    assert distiset.failures.failed == 2


# -- image generation: result URLs and what comes back ------------------------------------------


def painter(base: str, **overrides: Any) -> ImageGeneration:
    model = OpenAIImageGeneration(
        model="dall-e-2",
        base_url=f"{base}/v1",
        api_key="k",
        generation_kwargs={"response_format": "url"},
        **{**FAST, "max_retries": 0, **overrides},
    )
    return ImageGeneration(name="paint", image_generation_model=model)


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ("[[url404]]", "404"),
        ("[[urlhang]]", "time"),
        ("[[urlbig]]", "too large"),
        ("[[notimage]]", "not a decodable image"),
        ("[[cutpng]]", ""),
    ],
)
def test_image_generation_failures_name_step_and_row(
    server: FaultyOpenAI, marker: str, says: str
) -> None:
    task = painter(server.base, fetch_timeout=0.3, max_image_bytes=100_000)
    prompts = [{"prompt": "a cat"}, {"prompt": f"a dog {marker}"}]
    # The hung image download times out on a virtual clock: no wall-clock race.
    with loaded_with_hangs(task, hang_urls=("/files/hang.png",)) as (task, hangs):
        out = next(task.process(prompts))
    assert hangs.hung == (1 if marker == "[[urlhang]]" else 0)
    assert error_of(out, 0, "paint") is None and out[0]["image"] is not None
    error = error_of(out, 1, "paint")
    assert error is not None
    assert error.startswith("step 'paint': row 1: "), error
    assert says.lower() in error.lower(), error
    assert out[1]["image"] is None  # never stored as a success


def test_every_response_fault_in_one_pipeline_run(
    server: FaultyOpenAI, tmp_path: Any, hanging_models: list[HangingTransport]
) -> None:
    markers = ["[[status:500]]", "[[nochoices]]", "[[nullcontent]]", "[[badjson]]", "[[html]]"]
    markers += ["[[hang]]", "[[image400]]"]
    data = [{"instruction": "fine", "image": data_url()}]
    data += [{"instruction": f"q {marker}", "image": data_url()} for marker in markers]
    with Pipeline(name="all-faults", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=3)
        task = TextGenerationWithImage(name="vision", llm=llm(server.base, timeout=0.5))
        load >> task
    distiset = pipeline.run(use_cache=False)
    assert sum(t.hung for t in hanging_models) == 2  # the [[hang]] row and its one retry
    metas = distiset["vision"][METADATA_COLUMN]
    assert metas[0].get("error_vision") is None
    for row in range(1, len(data)):
        error = str(metas[row]["error_vision"])
        column = ", column 'image'" if "image400" in data[row]["instruction"] else ""
        assert error.startswith(f"step 'vision': row {row}{column}: "), error
    failures = distiset.failures
    assert (failures.rows, failures.failed) == (len(data), len(markers))
    assert failures.by_step == {"vision": len(markers)}


def test_image_generation_faults_in_a_pipeline(server: FaultyOpenAI, tmp_path: Any) -> None:
    data = [{"prompt": p} for p in ("a cat", "x [[url404]]", "y [[notimage]]", "z [[urlbig]]")]
    with Pipeline(name="paint-faults", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(name="load", data=data)
        load >> painter(server.base, max_image_bytes=100_000)
    distiset = pipeline.run(use_cache=False)
    metas = distiset["paint"][METADATA_COLUMN]
    assert metas[0].get("error_paint") is None
    for row in (1, 2, 3):
        assert str(metas[row]["error_paint"]).startswith(f"step 'paint': row {row}: ")
    assert distiset.failures.failed == 3


def test_an_image_400_in_a_chat_names_the_messages_column(server: FaultyOpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "http://images.invalid/c.png"}}
    chat = [{"role": "user", "content": [{"type": "text", "text": "[[image400]]"}, image]}]
    plain = [{"role": "user", "content": "no image here [[status:400]]"}]
    task = ChatGeneration(name="chat", llm=llm(server.base))
    with loaded(task):
        out = next(task.process([{"messages": chat}, {"messages": plain}]))
    assert str(error_of(out, 0, "chat")).startswith("step 'chat': row 0, column 'messages': ")
    assert str(error_of(out, 1, "chat")).startswith("step 'chat': row 1: ")


def test_malformed_exif_with_image_resize_is_sent(server: FaultyOpenAI) -> None:
    from PIL import Image

    from pixtill.images import ResizePolicy

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (9, 90, 200)).save(
        buffer, format="JPEG", exif=b"Exif\x00\x00not a TIFF header"
    )
    task = vision(server.base, image_resize=ResizePolicy(max_side=10))
    with loaded(task):
        out = next(task.process([{"instruction": "describe", "image": buffer.getvalue()}]))
    assert error_of(out, 0) is None
    assert out[0]["generation"] == "ok: describe"
