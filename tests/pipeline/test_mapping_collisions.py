"""Mappings that would read the wrong column or lose data, and rows whose metadata column is
not a dict: both the pipeline (streaming and batch paths) and the task API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doubles import DescribingLLM
from pixtill.errors import MissingColumnError, RowError
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration
from pixtill.steps.typing import Row

META = "pixtill_metadata"


def _run(tmp_path: Path, data: list[Row], streaming: bool, **kwargs: Any) -> list[Row]:
    with Pipeline(name="mapped", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=data)
        load >> TextGeneration(
            name="ask", llm=DescribingLLM(), replicas=1 if streaming else 2, **kwargs
        )
    return list(pipeline.run(show_progress=False)["ask"])


def _task(**kwargs: Any) -> TextGeneration:
    task = TextGeneration(name="ask", llm=DescribingLLM(), **kwargs)
    task.load()
    return task


def _task_rows(task: TextGeneration, data: list[Row]) -> list[Row]:
    return [row for batch in task.process_applying_mappings(data) for row in batch]


# -- a mapped column the row lacks -----------------------------------------------------------


@pytest.mark.parametrize("streaming", [True, False])
def test_a_missing_mapped_column_fails_its_row_in_a_pipeline(
    tmp_path: Path, streaming: bool
) -> None:
    data = [{"instruction": "I"}, {"instruction": "other", "question": "Q"}]
    rows = _run(tmp_path, data, streaming, input_mappings={"instruction": "question"})
    failed, fine = rows
    error = failed[META]["error_ask"]
    assert "step 'ask'" in error and "row 0" in error and "column 'question'" in error
    assert failed["generation"] is None
    assert failed["instruction"] == "I"
    assert failed.get("question") is None  # nothing invented from 'instruction'
    assert "user: Q" in fine["generation"] and fine["instruction"] == "other"


def test_a_missing_mapped_column_fails_its_row_in_the_task_api() -> None:
    task = _task(input_mappings={"instruction": "question"})
    failed, fine = _task_rows(task, [{"instruction": "I"}, {"question": "Q"}])
    assert "column 'question'" in failed[META]["error_ask"]
    assert "question" not in failed and failed["instruction"] == "I"
    assert "user: Q" in fine["generation"]
    assert [c for c in task.llm.calls] == [[{"role": "user", "content": "Q"}]]  # type: ignore[attr-defined]


def test_a_missing_mapped_column_raises_missing_column_error_from_check() -> None:
    task = _task(input_mappings={"instruction": "question"})
    renamed = task._rename_inputs([{"instruction": "I"}])
    with pytest.raises(MissingColumnError) as caught:
        task.prepare_row(renamed[0], 0)
    assert caught.value.column == "question"


# -- output mappings that would lose data ----------------------------------------------------


@pytest.mark.parametrize(
    ("mappings", "target"),
    [
        ({"generation": "model_name"}, "model_name"),
        ({"model_name": "generation"}, "generation"),
        ({"generation": META}, META),
        ({"model_name": META}, META),
    ],
)
def test_an_output_mapping_onto_metadata_or_another_output_is_refused(
    mappings: dict[str, str], target: str
) -> None:
    with pytest.raises(ValueError, match=f"step 'ask'.*{target}"):
        TextGeneration(name="ask", llm=DescribingLLM(), output_mappings=mappings)


def test_swapping_two_outputs_is_allowed() -> None:
    task = _task(output_mappings={"generation": "model_name", "model_name": "generation"})
    (row,) = next(task.process([{"instruction": "I"}]))
    assert "user: I" in row["model_name"] and row["generation"] == "test/describing-vlm"


@pytest.mark.parametrize("streaming", [True, False])
def test_an_output_mapped_onto_the_mapped_input_replaces_it(
    tmp_path: Path, streaming: bool
) -> None:
    kwargs: dict[str, Any] = {
        "input_mappings": {"instruction": "question"},
        "output_mappings": {"generation": "question"},
    }
    (row,) = _run(tmp_path, [{"question": "Q"}], streaming, **kwargs)
    assert "user: Q" in row["question"]
    assert "instruction" not in row and "generation" not in row
    (api,) = _task_rows(_task(**kwargs), [{"question": "Q"}])
    assert "user: Q" in api["question"] and "instruction" not in api


@pytest.mark.parametrize("streaming", [True, False])
def test_an_output_mapped_onto_an_input_column_replaces_it(tmp_path: Path, streaming: bool) -> None:
    (row,) = _run(
        tmp_path, [{"instruction": "I"}], streaming, output_mappings={"generation": "instruction"}
    )
    assert "user: I" in row["instruction"] and "generation" not in row
    (api,) = next(
        _task(output_mappings={"generation": "instruction"}).process([{"instruction": "I"}])
    )
    assert "user: I" in api["instruction"] and "generation" not in api


# -- a metadata column that is not a dict ----------------------------------------------------

_BAD_META = [
    {"instruction": "A", META: "junk"},
    {"instruction": "B", META: '{"source": "csv"}'},
    {"instruction": "C", META: [1, 2]},
    {"instruction": "D"},
]


def _check_bad_meta(rows: list[Row]) -> None:
    junk, decoded, listed, plain = rows
    for failed, number in ((junk, 0), (listed, 2)):
        error = failed[META]["error_ask"]
        assert f"row {number}" in error and f"column '{META}'" in error
        assert failed["generation"] is None
    assert decoded[META]["source"] == "csv" and "user: B" in decoded["generation"]
    assert "user: D" in plain["generation"]


@pytest.mark.parametrize("streaming", [True, False])
def test_a_row_with_unusable_metadata_fails_alone_in_a_pipeline(
    tmp_path: Path, streaming: bool
) -> None:
    _check_bad_meta(_run(tmp_path, _BAD_META, streaming))


def test_a_row_with_unusable_metadata_fails_alone_in_the_task_api() -> None:
    _check_bad_meta(next(_task().process(_BAD_META)))
    _check_bad_meta(_task_rows(_task(), _BAD_META))


def test_unusable_metadata_raises_a_row_error_naming_the_column() -> None:
    with pytest.raises(RowError) as caught:
        _task().prepare_row({"instruction": "A", META: "junk"}, 3)
    assert caught.value.column == META and caught.value.row == 3
