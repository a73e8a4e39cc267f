"""Rows failed by a quality step record their failure's kind next to the message (as tasks
do), so the run summary groups them under ``input`` (the row's own value could not be used)
or ``model`` (the step's local model failed), never under ``unknown``."""

from __future__ import annotations

from typing import Any

import pytest

from local_models import offline
from pixtill.run_report import summarize_failures
from pixtill.steps.quality import OCR, FilterRows
from quality_doubles import png

META = "pixtill_metadata"
_FIXTURES = (offline,)


@pytest.mark.usefixtures("offline")
def test_ocr_bad_images_are_input_failures_in_the_summary() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    step = OCR(name="ocr")
    step.load()
    (rows,) = step.process(
        [{"image": b"not an image"}, {"image": png("red")}, {"image": png("red"), META: "junk"}]
    )
    step.unload()
    assert [(row.get(META) or {}).get("failure_ocr") for row in rows] == [
        {"kind": "input", "status": None},
        None,
        {"kind": "input", "status": None},
    ]
    summary = summarize_failures(rows)
    assert summary.by_kind == {"input": 2}
    assert "  input: 2 rows" in summary.format().splitlines()


def test_an_ocr_engine_error_is_a_model_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_read(self: Any, image: Any) -> tuple[str, float | None]:
        raise ValueError("onnxruntime: invalid input shape")

    monkeypatch.setattr(OCR, "read", broken_read)
    (rows,) = OCR(name="ocr").process([{"image": png("red")}])
    assert rows[0]["ocr_text"] is None
    assert "onnxruntime: invalid input shape" in rows[0][META]["error_ocr"]
    assert rows[0][META]["failure_ocr"] == {"kind": "model", "status": None}
    assert summarize_failures(rows).by_kind == {"model": 1}


def test_a_gate_that_meets_unusable_metadata_fails_the_row_as_input() -> None:
    gate = FilterRows(name="gate", conditions=["not failed"])
    (rows,) = gate.process([{"n": 0, META: [1, 2]}, {"n": 1}])
    assert rows[0][META]["failure_gate"] == {"kind": "input", "status": None}
    summary = summarize_failures(rows)
    assert summary.by_kind == {"input": 1}
    assert "unknown" not in summary.format()
