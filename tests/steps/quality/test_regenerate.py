"""`JudgedImageGeneration`: regenerate below a threshold, keep the best, cache what finished."""

from __future__ import annotations

from pathlib import Path

from pixtill.pipeline.dag import Pipeline
from pixtill.steps.quality import JudgedImageEditing, JudgedImageGeneration, VisionJudge
from pixtill.steps.tasks.base import METADATA_COLUMN
from quality_doubles import RubricJudgeLLM, SeededEditor, SeededPainter, png

# The painter's grey levels by seed: 40, 120, 200 -> image_quality scores 2, 3, 4.


def make_step(max_attempts: int = 3, threshold: float = 4) -> JudgedImageGeneration:
    return JudgedImageGeneration(
        name="paint",
        image_generation_model=SeededPainter(generation_kwargs={"seed": 0}),
        judge=VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="image_quality"),
        threshold=threshold,
        max_attempts=max_attempts,
    )


def test_regenerates_until_the_threshold_and_keeps_every_score() -> None:
    step = make_step()
    step.load()
    rows = step.process_batch([{"prompt": "a grey card"}, {"prompt": "an easy one"}])
    step.unload()
    hard, easy = rows
    assert hard["judge_score"] == 4.0 and hard["attempts"] == 3
    assert [a["score"] for a in hard[METADATA_COLUMN]["attempts_paint"]] == [2.0, 3.0, 4.0]
    assert [a["seed"] for a in hard[METADATA_COLUMN]["attempts_paint"]] == [0, 1, 2]
    assert easy["judge_score"] == 5.0 and easy["attempts"] == 1
    assert easy["judge_rationale"] == "bright" and easy["judge_scores"]["artefacts"] == 5
    assert easy["model_name"] == "test/seeded-painter"
    assert step.image_generation_model.calls == [
        ("a grey card", 0),
        ("an easy one", 0),
        ("a grey card", 1),
        ("a grey card", 2),
    ]


def test_out_of_attempts_keeps_the_best_and_failures_are_recorded() -> None:
    step = make_step(max_attempts=2, threshold=5)
    step.load()
    best, failed = step.process_batch([{"prompt": "a grey card"}, {"prompt": "fail"}])
    step.unload()
    assert best["judge_score"] == 3.0 and best["attempts"] == 2
    assert failed["image"] is None and failed["judge_score"] is None
    assert failed["attempts"] == 2
    history = failed[METADATA_COLUMN]["attempts_paint"]
    assert [a["score"] for a in history] == [None, None]
    assert all("painter broke" in a["error"] for a in history)
    assert step.judge.llm.calls == 2  # the failed row was never sent to the judge


def test_in_a_pipeline_a_rerun_regenerates_nothing(tmp_path: Path) -> None:
    def run() -> tuple[list[float], JudgedImageGeneration]:
        with Pipeline(name="regen", cache_dir=tmp_path / "cache") as pipeline:
            step = make_step()
        assert list(pipeline.steps) == ["paint"]  # the judge is not a node of the graph
        rows = [{"prompt": "a grey card"}, {"prompt": "an easy one"}]
        result = pipeline.run(dataset=rows, output_dir=tmp_path / "out")["paint"]
        assert result["attempts"] == [3, 1]
        return result["judge_score"], step

    scores, first = run()
    assert scores == [4.0, 5.0]
    assert len(first.image_generation_model.calls) == 4
    again, second = run()
    assert again == [4.0, 5.0]
    assert second.image_generation_model.calls == []
    assert second.judge.llm.calls == 0


def test_written_to_yaml_and_back(tmp_path: Path) -> None:
    from pixtill.pipeline.serialization import dump_pipeline, load_pipeline

    with Pipeline(name="regen", cache_dir=tmp_path / "cache") as pipeline:
        make_step()
    path = dump_pipeline(pipeline, tmp_path / "regen.yaml")
    loaded = load_pipeline(
        path, allow=["quality_doubles.SeededPainter", "quality_doubles.RubricJudgeLLM"]
    )
    assert list(loaded.steps) == ["paint"]
    step = loaded.steps["paint"]
    assert isinstance(step, JudgedImageGeneration)
    assert isinstance(step.judge, VisionJudge) and step.judge.rubric.name == "image_quality"
    assert (step.threshold, step.max_attempts) == (4, 3)


def test_edits_are_judged_and_redone_too() -> None:
    step = JudgedImageEditing(
        name="edit",
        image_editing_model=SeededEditor(generation_kwargs={"seed": 0}),
        judge=VisionJudge(
            name="judge",
            llm=RubricJudgeLLM(),
            rubric="image_quality",
            input_mappings={"image": "edited_image"},
        ),
        threshold=3,
        max_attempts=3,
    )
    step.load()
    (row,) = step.process_batch([{"image": png("black"), "prompt": "make it lighter"}])
    step.unload()
    assert row["judge_score"] == 3.0 and row["attempts"] == 2
    assert row["image"] == png("black")  # the source stays as it was
    assert row["edited_image"] is not None and row["model_name"] == "test/seeded-editor"
    assert [a["score"] for a in row[METADATA_COLUMN]["attempts_edit"]] == [2.0, 3.0]
    assert step.image_editing_model.calls == [("make it lighter", 0), ("make it lighter", 1)]
