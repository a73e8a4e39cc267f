"""A run whose rows failed says so: rate-limited per-row warnings, a summary grouped by cause
(`Distiset.failures`, a warning from `Pipeline.run`), and a non-zero exit from ``pixtill run``
unless ``--max-failure-rate`` accepts the share."""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path
from typing import Any

import datasets
import pytest

from doubles import DescribingLLM
from pixtill.cli import main
from pixtill.errors import locate, split_location
from pixtill.pipeline import Pipeline
from pixtill.run_report import FailureWarnings, cause_of, summarize_failures
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import METADATA_COLUMN, TextGeneration

ALLOW = ["--allow", "doubles.DescribingLLM"]


def failed_row(step: str, row: int, message: str, column: str | None = None) -> dict[str, Any]:
    return {METADATA_COLUMN: {f"error_{step}": locate(message, step=step, row=row, column=column)}}


def test_causes_group_across_rows_whatever_varies() -> None:
    rows = [
        failed_row("v", 3, "RequestError: HTTP 500 after 7 attempts (POST http://h:1/v1/chat)"),
        failed_row("v", 9, "RequestError: HTTP 500 after 2 attempts (POST http://h:1/v1/chat)"),
        failed_row("v", 4, "expected text, got None (a missing value)", column="instruction"),
        {METADATA_COLUMN: {"raw_output_v": "fine"}},
        {"no metadata": 1},
    ]
    summary = summarize_failures(rows)
    assert (summary.rows, summary.failed) == (5, 3)
    assert summary.failure_rate == pytest.approx(0.6)
    assert [(g.step, g.count) for g in summary.groups] == [("v", 2), ("v", 1)]
    assert summary.groups[0].cause == "RequestError: HTTP 500 after retries (POST <url>)"
    text = summary.format()
    assert text.startswith("3 of 5 rows failed (60.0%):")
    assert "2 x step 'v': RequestError: HTTP 500" in text


def test_a_row_counts_once_under_its_first_failing_step() -> None:
    meta = {"error_a": "step 'a': row 0: boom", "error_b": "step 'b': row 0: consequence"}
    summary = summarize_failures([{METADATA_COLUMN: meta}])
    assert summary.failed == 1 and summary.by_step == {"a": 1}


def test_grouped_generations_and_datasets_are_read_too() -> None:
    grouped = {METADATA_COLUMN: {"error_v": [None, "step 'v': row 0: second failed"]}}
    assert summarize_failures([grouped]).failed == 1
    dataset = datasets.Dataset.from_list(
        [
            {"x": 1, METADATA_COLUMN: {"raw_output_v": "a", "error_v": None}},
            {"x": 2, METADATA_COLUMN: {"raw_output_v": None, "error_v": "step 'v': row 1: bad"}},
        ]
    )
    summary = summarize_failures({"leaf": dataset})
    assert (summary.rows, summary.failed) == (2, 1)
    assert summary.groups[0].example == "step 'v': row 1: bad"


def test_locate_and_split_location_are_inverse() -> None:
    for step, row, column in [("v", 2, "image"), ("s-1", None, None), (None, 4, "it's")]:
        message = locate("Cause: detail: more", step=step, row=row, column=column)
        where = split_location(message)
        assert (where.step, where.row, where.column, where.cause) == (
            step,
            row,
            column,
            "Cause: detail: more",
        )
    assert cause_of("no location here") == "no location here"


def test_row_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pixtill.test.faults")
    warnings = FailureWarnings(logger, "vision", first=3)
    with caplog.at_level(logging.WARNING, logger="pixtill.test.faults"):
        for row in range(50):
            warnings.warn(f"step 'vision': row {row}: boom")
    lines = caplog.messages
    assert lines[:3] == [f"step 'vision': row {row}: boom" for row in range(3)]
    assert len(lines) == 4 and "not logged one by one" in lines[3]
    assert warnings.count == 50
    assert copy.deepcopy(warnings) is warnings  # replicas of a step share the count
    assert pickle.loads(pickle.dumps(warnings)).count == 0


def failing_pipeline(tmp_path: Path, n: int = 10, failing: int = 3) -> Pipeline:
    data = [{"instruction": f"q{i}{'!' if i < failing else ''}"} for i in range(n)]
    with Pipeline(name="flaky", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=4)
        load >> TextGeneration(name="t", llm=DescribingLLM(fail_when="!"))
    return pipeline


def test_pipeline_run_warns_with_the_summary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = failing_pipeline(tmp_path, n=20, failing=12)
    with caplog.at_level(logging.WARNING, logger="pixtill"):
        distiset = pipeline.run(use_cache=False)
    failures = distiset.failures
    assert (failures.rows, failures.failed) == (20, 12)
    assert failures.groups[0].cause == "RuntimeError: server refused: !"
    per_row = [m for m in caplog.messages if m.startswith("step 't': row ")]
    assert len(per_row) == 5  # the first few, then one line with a count
    assert any("not logged one by one" in m for m in caplog.messages)
    assert any(m.startswith("pipeline 'flaky': 12 of 20 rows failed") for m in caplog.messages)


def test_a_clean_run_has_an_empty_summary(tmp_path: Path) -> None:
    distiset = failing_pipeline(tmp_path, failing=0).run(use_cache=False)
    assert not distiset.failures
    assert str(distiset.failures) == "All 10 rows succeeded."


def test_cli_exits_1_with_the_grouped_causes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = failing_pipeline(tmp_path).dump(tmp_path / "p.yaml")
    args = ["run", "-c", str(config), *ALLOW, "--no-progress", "-o", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "3 of 10 rows failed (30.0%)" in err
    assert "3 x step 't': RuntimeError: server refused: !" in err
    assert "--max-failure-rate" in err
    assert (tmp_path / "out").exists()  # what was produced is kept

    assert main([*args, "--no-cache", "--max-failure-rate", "0.3"]) == 0
    assert "accepted" in capsys.readouterr().err
    assert main([*args, "--no-cache", "--max-failure-rate", "0.29"]) == 1


def test_cli_max_failure_rate_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-c", "x.yaml", "--max-failure-rate", "5"]) == 2
    assert "from 0 to 1" in capsys.readouterr().err


def test_cli_prints_the_summary_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI prints the grouped causes itself; the pipeline's warning (which reaches stderr
    too when logging is not configured) would say it a second time."""
    config = failing_pipeline(tmp_path).dump(tmp_path / "p.yaml")
    args = ["run", "-c", str(config), *ALLOW, "--no-progress", "-o", str(tmp_path / "out")]
    with caplog.at_level(logging.WARNING, logger="pixtill"):
        assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("3 of 10 rows failed (30.0%):") == 1
    assert not [m for m in caplog.messages if "rows failed" in m]
    assert [m for m in caplog.messages if m.startswith("step 't': row ")]  # per-row: still logged


def test_pipeline_run_can_leave_the_summary_to_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pixtill"):
        distiset = failing_pipeline(tmp_path).run(use_cache=False, log_failures=False)
    assert distiset.failures.failed == 3  # still there for the caller to show
    assert not [m for m in caplog.messages if "rows failed" in m]
