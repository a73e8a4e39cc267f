"""`OCR` with the RapidOCR models shipped inside `rapidocr_onnxruntime` (offline), and the
text-fidelity score."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from local_models import offline
from pixtill.steps.quality import OCR, quoted_text, text_fidelity
from pixtill.steps.quality.ocr import text_similarity

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline,)


def sign(text: str, size: tuple[int, int] = (420, 110)) -> bytes:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 30), text, fill="black", font=ImageFont.load_default(size=40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def test_quoted_text_and_similarity() -> None:
    assert quoted_text("a sign saying \"OPEN 24/7\" and 'SALE', the shop's door") == [
        "OPEN 24/7",
        "SALE",
    ]
    assert quoted_text("a cat’s “Hello” «Bonjour»") == ["Hello", "Bonjour"]
    assert quoted_text("no quotes here, it's fine") == []
    assert text_similarity("OPEN 24/7", "open247\nwelcome") == 1.0
    assert text_similarity("BAKERY", "BAKFRY") == pytest.approx(5 / 6)
    assert text_similarity("BAKERY", "") == 0.0
    assert text_fidelity('a sign "SALE"', "SALE") == 1.0
    assert text_fidelity("a sign", "SALE") is None
    assert text_fidelity('"SALE" and "OPEN"', "SALE") == pytest.approx(0.5, abs=0.2)


def test_the_package_ships_its_weights() -> None:
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    models = Path(rapidocr.__file__).parent / "models"
    shipped = sorted(p.name for p in models.glob("*.onnx"))
    assert any("det" in name for name in shipped) and any("rec" in name for name in shipped)


def test_reads_drawn_text_offline_and_scores_prompts() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    step = OCR(name="ocr", score_prompt_text=True, threads=1)
    step.load()  # the offline fixture makes any download attempt fail
    (rows,) = step.process_applying_mappings(
        [
            {"image": sign("OPEN 9 TO 5"), "prompt": 'a shop sign that says "OPEN 9 TO 5"'},
            {"image": sign("CLOSED"), "prompt": 'a shop sign that says "OPEN 9 TO 5"'},
            {"image": sign(""), "prompt": "an empty board"},
            {"image": b"not an image", "prompt": '"X"'},
        ]
    )
    step.unload()
    assert squash(rows[0]["ocr_text"]) == "open9to5"
    assert 0.5 <= rows[0]["ocr_confidence"] <= 1.0
    assert rows[0]["quoted_text"] == ["OPEN 9 TO 5"]
    assert rows[0]["text_fidelity"] == 1.0
    assert squash(rows[1]["ocr_text"]) == "closed"
    assert rows[1]["text_fidelity"] < 0.5
    assert rows[2]["ocr_text"] == "" and rows[2]["ocr_confidence"] is None
    assert rows[2]["text_fidelity"] is None
    assert rows[3]["ocr_text"] is None and rows[3]["text_fidelity"] is None
    assert "row 3, column 'image'" in rows[3]["pixtill_metadata"]["error_ocr"]
