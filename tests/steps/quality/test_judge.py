"""`VisionJudge`: rubric -> schema -> structured reply -> score columns, or a failed row."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pixtill.pipeline.dag import Pipeline
from pixtill.steps.quality import DEFAULT_RUBRICS, Criterion, Rubric, VisionJudge, verdict_schema
from pixtill.steps.tasks.base import METADATA_COLUMN
from quality_doubles import RubricJudgeLLM, png

WHITE, BLACK = png("white"), png("black")


def test_scores_come_from_the_structured_reply() -> None:
    llm = RubricJudgeLLM()
    judge = VisionJudge(name="judge", llm=llm, rubric="prompt_adherence")
    judge.load()
    rows = judge.process_batch(
        [{"image": WHITE, "prompt": "a white wall"}, {"image": BLACK, "prompt": "a dark night"}]
    )
    judge.unload()
    assert [r["judge_scores"] for r in rows] == [
        {"adherence": 5, "text_rendering": 5, "quality": 5},
        {"adherence": 1, "text_rendering": 1, "quality": 1},
    ]
    assert [r["judge_score"] for r in rows] == [5.0, 1.0]
    assert [r["judge_rationale"] for r in rows] == ["bright", "dark"]
    assert rows[0]["model_name"] == "test/judge"
    # The model was asked for exactly the rubric's schema.
    assert llm.schemas == [verdict_schema(DEFAULT_RUBRICS["prompt_adherence"])] * 2
    sent = rows[0][METADATA_COLUMN]["raw_input_judge"]
    assert "Prompt: a white wall" in sent[-1]["content"][-1]["text"]


def test_weighted_overall_score() -> None:
    rubric = Rubric(
        name="r",
        instructions="rate",
        criteria=[
            Criterion(name="a", description="a", weight=3),
            Criterion(name="b", description="b"),
        ],
    )
    assert rubric.overall({"a": 5, "b": 1}) == 4.0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("this image is great", "reply is not JSON"),
        ('{"artefacts": 4, "rationale": "ok"}', "'aesthetics' is a required property"),
        ('{"artefacts": 9, "aesthetics": 4, "rationale": "ok"}', "9 is greater than the maximum"),
        ('{"artefacts": 4, "aesthetics": 4}', "'rationale' is a required property"),
    ],
)
def test_a_reply_that_does_not_fit_fails_its_row_with_the_reason(reply: str, reason: str) -> None:
    judge = VisionJudge(name="judge", llm=RubricJudgeLLM(reply=reply), rubric="image_quality")
    judge.load()
    (row,) = judge.process_batch([{"image": WHITE}])
    judge.unload()
    assert row["judge_scores"] is None and row["judge_score"] is None
    assert row["judge_rationale"] is None
    assert reason in row[METADATA_COLUMN]["error_judge"]


def test_one_bad_reply_leaves_its_neighbours_alone() -> None:
    judge = VisionJudge(
        name="judge", llm=RubricJudgeLLM(bad_when="broken"), rubric="caption_faithfulness"
    )
    judge.load()
    rows = judge.process_batch(
        [{"image": WHITE, "caption": "fine"}, {"image": WHITE, "caption": "broken"}]
    )
    judge.unload()
    assert rows[0]["judge_score"] == 5.0
    assert rows[1]["judge_score"] is None
    assert "greater than the maximum" in rows[1][METADATA_COLUMN]["error_judge"]


def test_a_row_without_an_image_fails_alone_naming_the_column() -> None:
    judge = VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="image_quality")
    judge.load()
    rows = judge.process_batch([{"image": None}, {"image": WHITE}])
    judge.unload()
    assert rows[0]["judge_score"] is None
    error = rows[0][METADATA_COLUMN]["error_judge"]
    assert "step 'judge'" in error and "column 'image'" in error
    assert rows[1]["judge_score"] == 5.0


def test_rubrics_from_names_dicts_and_errors() -> None:
    assert VisionJudge(llm=RubricJudgeLLM(), rubric="vqa_correctness").inputs == {
        "image": True,
        "question": True,
        "answer": True,
    }
    custom = {
        "name": "logo",
        "instructions": "Rate the logo.",
        "template": "Brand: {{ brand }}",
        "columns": ["brand"],
        "criteria": [{"name": "legible", "description": "the brand name can be read"}],
        "scale": [0, 10],
    }
    judge = VisionJudge(llm=RubricJudgeLLM(), rubric=custom)
    assert judge.rubric.scale == (0, 10)
    schema = verdict_schema(judge.rubric)
    assert schema["properties"]["legible"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10,
        "description": "the brand name can be read",
    }
    assert schema["required"] == ["legible", "rationale"]
    with pytest.raises(ValueError, match="unknown rubric 'nope'"):
        VisionJudge(llm=RubricJudgeLLM(), rubric="nope")
    with pytest.raises(ValueError, match="must be an identifier"):
        Criterion(name="two words", description="x")
    with pytest.raises(ValueError, match="other than 'rationale'"):
        Criterion(name="rationale", description="x")
    with pytest.raises(ValueError, match="scale must go from low to high"):
        Rubric(
            name="r",
            instructions="i",
            criteria=[Criterion(name="a", description="a")],
            scale=(5, 1),
        )


def test_a_template_column_missing_from_the_rubric_is_refused_at_load() -> None:
    rubric = Rubric(
        name="r",
        instructions="i",
        template="{{ caption }}",
        criteria=[Criterion(name="a", description="a")],
    )
    judge = VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric=rubric)
    with pytest.raises(Exception, match="caption"):
        judge.load()


def test_judge_in_a_pipeline_and_from_yaml(tmp_path: Path) -> None:
    with Pipeline(name="judged", cache_dir=tmp_path / "cache") as pipeline:
        VisionJudge(
            name="judge",
            llm=RubricJudgeLLM(),
            rubric="caption_faithfulness",
            input_mappings={"caption": "text"},
        )
    from pixtill.pipeline.serialization import dump_pipeline, load_pipeline

    path = dump_pipeline(pipeline, tmp_path / "pipeline.yaml")
    spec = yaml.safe_load(path.read_text())
    assert "caption_faithfulness" in str(spec)
    loaded = load_pipeline(path, allow=["quality_doubles.RubricJudgeLLM"])
    step = loaded.steps["judge"]
    assert isinstance(step, VisionJudge)
    assert step.rubric == DEFAULT_RUBRICS["caption_faithfulness"]

    rows = [{"image": WHITE, "text": "white"}, {"image": BLACK, "text": "black"}]
    result = loaded.run(dataset=rows, output_dir=tmp_path / "out", use_cache=False)["judge"]
    assert result["judge_score"] == [5.0, 1.0]
    assert result["judge_scores"][0] == {"faithfulness": 5, "coverage": 5}
    assert result["judge_rationale"] == ["bright", "dark"]


def test_each_reply_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import pixtill.models.structured as structured

    original = structured.parse_structured
    calls: list[object] = []

    def counting(text: object, spec: object) -> object:
        calls.append(text)
        return original(text, spec)  # type: ignore[arg-type]

    # Every module that holds the function, wherever it imported it from.
    for module in [m for name, m in sys.modules.items() if name.startswith("pixtill")]:
        if getattr(module, "parse_structured", None) is original:
            monkeypatch.setattr(module, "parse_structured", counting)
    judge = VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="prompt_adherence")
    judge.load()
    rows = judge.process_batch([{"image": WHITE, "prompt": f"wall {i}"} for i in range(4)])
    judge.unload()
    assert [r["judge_score"] for r in rows] == [5.0] * 4
    assert len(calls) == 4  # once per reply, not again in format_output
    # Called on its own (distilabel's API), format_output still parses the text itself.
    reply = '{"adherence": 4, "text_rendering": 4, "quality": 2, "rationale": "ok"}'
    assert judge.format_output(reply)["judge_scores"]["quality"] == 2
