"""The whole loop in one pipeline: generate -> judge -> regenerate -> CLIPScore -> dedup ->
gate -> kept / dropped leaves, on offline fakes and a tiny local CLIP."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_models import offline
from pixtill.pipeline.dag import Pipeline
from pixtill.steps.generators.data import LoadDataFromDicts
from pixtill.steps.quality import (
    CLIPScore,
    FilterRows,
    ImageDeduplication,
    JudgedImageGeneration,
    SelectRows,
    VisionJudge,
)
from quality_doubles import RubricJudgeLLM, SeededPainter

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline,)


def test_generate_judge_regenerate_score_dedup_filter(tmp_path: Path) -> None:
    from pixtill.tiny_models import ensure_tiny_clip

    clip_model = ensure_tiny_clip(tmp_path / "models")
    prompts = [
        "a grey card",  # 3 attempts: scores 2, 3, 4 -> passes at the third
        "an easy one",  # white at once: 5
        "another easy one",  # white too: a duplicate of the row above
        "fail",  # the painter fails every time
    ]
    with Pipeline(name="loop", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"prompt": p} for p in prompts])
        paint = JudgedImageGeneration(
            name="paint",
            image_generation_model=SeededPainter(generation_kwargs={"seed": 0}),
            judge=VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="image_quality"),
            threshold=4,
            max_attempts=3,
        )
        clip = CLIPScore(
            name="clip", model=str(clip_model), device="cpu", input_mappings={"text": "prompt"}
        )
        dedup = ImageDeduplication(name="dedup", drop_duplicates=False)
        gate = FilterRows(
            name="gate", conditions=["not failed", "not is_duplicate", "judge_score >= 4"]
        )
        load >> paint >> clip >> dedup >> gate
        gate >> [
            SelectRows(name="good", where="kept"),
            SelectRows(name="dropped", where="not kept"),
        ]
    distiset = pipeline.run(output_dir=tmp_path / "out")
    good, dropped = distiset["good"], distiset["dropped"]
    assert good["prompt"] == ["a grey card", "an easy one"]
    assert good["judge_score"] == [4.0, 5.0] and good["attempts"] == [3, 1]
    assert all(0 <= s <= 100 for s in good["clip_score"])
    reasons = dict(zip(dropped["prompt"], dropped["drop_reason"]))
    assert reasons == {
        "another easy one": "gate: not is_duplicate (is_duplicate=True)",
        "fail": "gate: not failed (failed=True)",
    }
    assert dropped["dedup_cluster"][dropped["prompt"].index("another easy one")] == 1
