"""`JudgedImageGeneration` / `JudgedImageEditing` send canonical requests like every image task:
a dead server stops the step and the run with one clear message (it is not a row failure)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from models.fake_providers import free_port, loaded
from pixtill.errors import ModelUnavailableError
from pixtill.models.image_editing import OpenAIImageEditing
from pixtill.models.image_generation import OpenAIImageGeneration
from pixtill.pipeline.dag import Pipeline
from pixtill.steps.quality import JudgedImageEditing, JudgedImageGeneration, VisionJudge
from quality_doubles import RubricJudgeLLM, png

NO_RETRIES: dict[str, Any] = {"max_retries": 0, "backoff_base": 0.01, "backoff_max": 0.05}


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused


def judge() -> VisionJudge:
    return VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="image_quality")


def dead_painter(**settings: Any) -> JudgedImageGeneration:
    model = OpenAIImageGeneration(
        model="dall-e-2", base_url=dead_url(), api_key="k", **(settings or NO_RETRIES)
    )
    return JudgedImageGeneration(
        name="paint", image_generation_model=model, judge=judge(), threshold=4
    )


def dead_editor() -> JudgedImageEditing:
    model = OpenAIImageEditing(model="dall-e-2", base_url=dead_url(), api_key="k", **NO_RETRIES)
    return JudgedImageEditing(
        name="edit",
        image_editing_model=model,
        judge=judge(),
        threshold=4,
        input_mappings={"prompt": "edit_prompt"},
    )


def assert_names_the_dead_server(error: ModelUnavailableError, step: str) -> None:
    message = str(error)
    assert message.startswith(f"step {step!r}: model 'dall-e-2' at http://127.0.0.1:"), message
    assert "connection refused" in message and "is the server running" in message


def test_judged_generation_with_a_dead_server_stops_the_step() -> None:
    step = dead_painter()
    with loaded(step), pytest.raises(ModelUnavailableError) as info:
        step.process_batch([{"prompt": "a cat"}, {"prompt": "a dog"}])
    assert_names_the_dead_server(info.value, "paint")
    assert step.judge.llm.calls == 0  # nothing was judged: no row "failed" silently


def test_judged_editing_with_a_dead_server_stops_the_step() -> None:
    step = dead_editor()
    image = base64.b64encode(png("red")).decode()
    with loaded(step), pytest.raises(ModelUnavailableError) as info:
        step.process_batch([{"image": image, "prompt": "a card", "edit_prompt": "make it blue"}])
    assert_names_the_dead_server(info.value, "edit")
    assert step.judge.llm.calls == 0


def test_a_pipeline_with_a_dead_judged_generator_stops_with_one_message(tmp_path: Path) -> None:
    with Pipeline(name="dead-regen", cache_dir=tmp_path / "cache") as pipeline:
        step = dead_painter(max_retries=6)  # retries would not help: fail fast anyway
    rows = [{"prompt": f"picture {i}"} for i in range(6)]
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        pipeline.run(dataset=rows, use_cache=False)
    assert time.monotonic() - start < 30  # seconds, not the minutes of retrying every row
    assert_names_the_dead_server(info.value, "paint")
    assert step.judge.llm.calls == 0
