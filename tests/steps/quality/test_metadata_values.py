"""Quality steps meet a ``pixtill_metadata`` value that is not a dict (``"junk"``, a list, a
number): that row fails alone with an error naming step, row and column; a JSON string of a
dict (as a CSV file stores it) is read; neighbours are untouched."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from local_models import offline
from pixtill.steps.quality import OCR, FilterRows, JudgedImageGeneration, SelectRows, VisionJudge
from quality_doubles import RubricJudgeLLM, SeededPainter

META = "pixtill_metadata"
_FIXTURES = (offline,)

# Rows 0, 2 and 4 carry unusable metadata; row 1 a JSON string of a dict; row 3 none.
BAD = {0: "junk", 2: [1, 2], 4: 7}


def _with_metadata(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    values: dict[int, Any] = {**BAD, 1: '{"source": "csv", "error_loader": null}'}
    return [{**row, META: values[i]} if i in values else row for i, row in enumerate(rows)]


def _assert_bad_rows_failed(rows: list[dict[str, Any]], step: str) -> None:
    for index, value in BAD.items():
        error = rows[index][META][f"error_{step}"]
        assert error.startswith(f"step {step!r}: row {index}, column '{META}': must be a dict")
        assert type(value).__name__ in error


def sign(text: str) -> bytes:
    image = Image.new("RGB", (300, 90), "white")
    ImageDraw.Draw(image).text((20, 25), text, fill="black", font=ImageFont.load_default(size=36))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.usefixtures("offline")
def test_ocr_fails_only_the_rows_with_unusable_metadata() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    step = OCR(name="ocr")
    step.load()
    image = sign("OPEN")
    (rows,) = step.process(_with_metadata([{"image": image} for _ in range(5)]))
    step.unload()
    _assert_bad_rows_failed(rows, "ocr")
    for index in BAD:
        assert rows[index]["ocr_text"] is None and rows[index]["ocr_confidence"] is None
        assert rows[index]["image"] == image  # the input is kept
    for index in (1, 3):
        assert "OPEN" in rows[index]["ocr_text"].upper()


def test_a_gate_that_reads_failed_drops_the_row_and_says_why() -> None:
    gate = FilterRows(name="gate", conditions=["not failed", "score >= 3"])
    (rows,) = gate.process(_with_metadata([{"score": 4} for _ in range(5)]))
    _assert_bad_rows_failed(rows, "gate")
    for index in BAD:
        assert rows[index]["kept"] is False
        assert rows[index]["drop_reason"].startswith(f"step 'gate': row {index}, column '{META}'")
    assert [rows[i]["kept"] for i in (1, 3)] == [True, True]
    assert rows[1][META] == '{"source": "csv", "error_loader": null}'  # read, left as it was


def test_a_gate_that_never_reads_metadata_leaves_it_alone() -> None:
    gate = FilterRows(name="gate", conditions="score >= 3")
    (rows,) = gate.process(_with_metadata([{"score": 4} for _ in range(5)]))
    assert all(row["kept"] for row in rows)
    assert [rows[i][META] for i in BAD] == list(BAD.values())


def test_a_router_sends_rows_with_unusable_metadata_to_the_failed_side() -> None:
    rows = _with_metadata([{"n": i} for i in range(5)])
    (failed,) = SelectRows(name="failed_rows", where="failed").process(rows)
    (good,) = SelectRows(name="good_rows", where="not failed").process(rows)
    assert [r["n"] for r in failed] == [0, 2, 4] and [r["n"] for r in good] == [1, 3]


def test_judged_generation_fails_those_rows_alone() -> None:
    step = JudgedImageGeneration(
        name="paint",
        image_generation_model=SeededPainter(generation_kwargs={"seed": 0}),
        judge=VisionJudge(name="judge", llm=RubricJudgeLLM(), rubric="image_quality"),
        threshold=1,
        max_attempts=2,
    )
    step.load()
    rows = step.process_batch(_with_metadata([{"prompt": "an easy one"} for _ in range(5)]))
    step.unload()
    _assert_bad_rows_failed(rows, "paint")
    for index in BAD:
        assert rows[index]["image"] is None and rows[index]["judge_score"] is None
    assert rows[1]["judge_score"] == 5.0 and rows[1][META]["source"] == "csv"
    assert rows[3]["judge_score"] == 5.0
