"""Conditions (parsed, never evaluated), the `FilterRows` gate and `SelectRows` routing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pixtill.errors import MissingColumnError
from pixtill.pipeline.dag import Pipeline
from pixtill.steps.quality import Condition, ConditionError, FilterRows, SelectRows
from quality_doubles import png

ROW: dict[str, Any] = {
    "judge_score": 4.5,
    "width": 640,
    "label": "cat",
    "scores": {"adherence": 2},
    "image": png("red", (20, 10)),
    "tags": ["a", "b"],
    "pixtill_metadata": {},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("judge_score >= 4", True),
        ("judge_score > 4.5", False),
        ("width >= 512 and label == 'cat'", True),
        ('label != "cat" or width < 100', False),
        ("not (label == 'dog')", True),
        ("label in ['cat', 'dog']", True),
        ("label not in ['cat', 'dog']", False),
        ("'a' in tags", True),
        ("scores.adherence >= 3", False),
        ("scores.missing >= 3", False),
        ("width(image) == 20 and height(image) == 10", True),
        ("len(tags) == 2", True),
        ("not failed", True),
        ("judge_score", True),
        ("missing == null", True),
        ("judge_score >= -1e3 AND true", True),
    ],
)
def test_conditions(text: str, expected: bool) -> None:
    assert Condition(text).holds(ROW) is expected


def test_none_compares_false_and_failed_reads_the_metadata() -> None:
    failed = {"judge_score": None, "pixtill_metadata": {"error_judge": "bad reply"}}
    assert not Condition("judge_score >= 4").holds(failed)
    assert not Condition("judge_score < 4").holds(failed)
    assert Condition("failed").holds(failed)
    assert not Condition("failed").holds({"pixtill_metadata": {"error_judge": None}})
    assert Condition("failed").holds({"failed": True})  # a real column wins


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("judge_score >=", "expected a column, a number"),
        ("__import__('os').system('true')", "expected 'and', 'or' or the end"),
        ("score >= 4 ;", "cannot read ';'"),
        ("(score >= 4", "expected ')'"),
        ("", "non-empty"),
    ],
)
def test_anything_outside_the_grammar_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=re.escape(message)):
        Condition(text)


def test_the_gate_marks_rows_with_the_first_failed_condition() -> None:
    gate = FilterRows(name="gate", conditions=["not failed", "judge_score >= 4"])
    (rows,) = gate.process_applying_mappings(
        [
            {"judge_score": 5, "pixtill_metadata": {}},
            {"judge_score": 2.5, "pixtill_metadata": {}},
            {"judge_score": None, "pixtill_metadata": {"error_judge": "timeout"}},
        ]
    )
    assert [r["kept"] for r in rows] == [True, False, False]
    assert rows[0]["drop_reason"] is None
    assert rows[1]["drop_reason"] == "gate: judge_score >= 4 (judge_score=2.5)"
    assert rows[2]["drop_reason"] == "gate: not failed (failed=True)"


def test_gates_chain_and_keep_the_first_reason() -> None:
    first = FilterRows(name="first", conditions="a > 1")
    second = FilterRows(name="second", conditions="b > 1")
    (rows,) = first.process_applying_mappings([{"a": 0, "b": 0}, {"a": 2, "b": 0}])
    (rows,) = second.process_applying_mappings(rows)
    assert [r["drop_reason"] for r in rows] == ["first: a > 1 (a=0)", "second: b > 1 (b=0)"]


def test_a_missing_column_names_the_step_and_the_column() -> None:
    gate = FilterRows(name="gate", conditions="score >= 4")
    with pytest.raises(MissingColumnError, match=r"step 'gate'.*column 'score'"):
        list(gate.process_applying_mappings([{"other": 1}]))


def test_kept_and_dropped_rows_both_reach_a_dataset(tmp_path: Path) -> None:
    with Pipeline(name="gated", cache_dir=tmp_path / "cache") as pipeline:
        gate = FilterRows(name="gate", conditions=["score >= 4", "width >= 512"])
        good = SelectRows(name="good", where="kept")
        dropped = SelectRows(name="dropped", where="not kept")
        gate >> [good, dropped]
    rows = [
        {"id": 0, "score": 5, "width": 1024},
        {"id": 1, "score": 3, "width": 1024},
        {"id": 2, "score": 5, "width": 256},
        {"id": 3, "score": 4, "width": 512},
    ]
    distiset = pipeline.run(dataset=rows, output_dir=tmp_path / "out", use_cache=False)
    assert distiset["good"]["id"] == [0, 3]
    assert distiset["dropped"]["id"] == [1, 2]
    assert distiset["dropped"]["drop_reason"] == [
        "gate: score >= 4 (score=3)",
        "gate: width >= 512 (width=256)",
    ]

    from pixtill.pipeline.serialization import dump_pipeline, load_pipeline

    loaded = load_pipeline(dump_pipeline(pipeline, tmp_path / "gated.yaml"))
    gate_step = loaded.steps["gate"]
    assert isinstance(gate_step, FilterRows)
    assert gate_step.conditions == ["score >= 4", "width >= 512"]
