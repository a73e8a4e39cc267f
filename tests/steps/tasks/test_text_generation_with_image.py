from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from doubles import DescribingLLM
from pixtill.errors import MissingColumnError, StepConfigError
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from sample_images import image_bytes, png_header_claiming, truncated_png

BOARDWALK = "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"


def make_task(**kwargs: Any) -> TextGenerationWithImage:
    kwargs.setdefault("llm", DescribingLLM())
    task = TextGenerationWithImage(name="vision_gen", **kwargs)
    task.load()
    return task


def test_seed_000_url_example() -> None:
    # The seed's first example, with InferenceEndpointsLLM swapped for the test double.
    vision = TextGenerationWithImage(name="vision_gen", llm=DescribingLLM(), image_type="url")
    vision.load()
    result = next(vision.process([{"instruction": "What’s in this image?", "image": BOARDWALK}]))
    assert len(result) == 1
    row = result[0]
    assert row["instruction"] == "What’s in this image?"
    assert row["image"] == BOARDWALK
    assert row["generation"] == f"[0] saw user: What’s in this image? <url {BOARDWALK}>"
    assert row["model_name"] == "test/describing-vlm"
    meta = row[METADATA_COLUMN]
    assert meta["raw_output_vision_gen"] == row["generation"]
    raw_input = meta["raw_input_vision_gen"]
    assert raw_input == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What’s in this image?"},
                {"type": "image_url", "image_url": {"url": BOARDWALK}},
            ],
        }
    ]
    assert meta["statistics_vision_gen"]["input_tokens"] > 0
    vision.unload()


def test_seed_000_base64_example() -> None:
    img = image_bytes(40, 30, format="JPEG")
    base64_image = base64.b64encode(img).decode("utf-8")
    vision = TextGenerationWithImage(name="vision_gen", llm=DescribingLLM(), image_type="base64")
    vision.load()
    result = next(vision.process([{"instruction": "What’s in this image?", "image": base64_image}]))
    assert result[0]["generation"] == "[0] saw user: What’s in this image? <JPEG 40x30>"
    # raw_input keeps a content hash, never a second copy of the image.
    raw_input = str(result[0][METADATA_COLUMN]["raw_input_vision_gen"])
    assert base64_image[:40] not in raw_input
    assert "sha256:" in raw_input
    vision.unload()


@pytest.mark.parametrize("image_type", ["auto", "PIL"])
def test_pil_images(image_type: str) -> None:
    task = make_task(image_type=image_type)
    image = Image.new("RGB", (7, 5), "blue")
    [row] = next(task.process([{"instruction": "Describe", "image": image}]))
    assert row["generation"].endswith("<PNG 7x5>")


def test_path_image_type(tmp_path: Path) -> None:
    path = tmp_path / "photo.webp"
    path.write_bytes(image_bytes(9, 9, format="WEBP"))
    task = make_task(image_type="path")
    rows = next(
        task.process(
            [{"instruction": "A", "image": str(path)}, {"instruction": "B", "image": path}]
        )
    )
    assert [r["generation"] for r in rows] == [
        "[0] saw user: A <WEBP 9x9>",
        "[0] saw user: B <WEBP 9x9>",
    ]


def test_several_images_kept_in_order_with_system_prompt() -> None:
    task = make_task(system_prompt="Be brief.")
    images = [image_bytes(3, 3), image_bytes(5, 4, format="JPEG"), image_bytes(2, 8, format="GIF")]
    [row] = next(task.process([{"instruction": "Compare", "image": images}]))
    assert row["generation"] == (
        "[0] saw system: Be brief. | user: Compare <PNG 3x3> <JPEG 5x4> <GIF 2x8>"
    )


def test_template_with_columns_and_list_values() -> None:
    task = make_task(
        template="Question: {{ question }} Options: {{ options | join(', ') }}",
        columns=["question", "options"],
    )
    [row] = next(
        task.process([{"question": "Colour?", "options": ["red", "blue"], "image": image_bytes()}])
    )
    assert row["generation"].startswith("[0] saw user: Question: Colour? Options: red, blue")


def test_template_naming_undeclared_column_fails_at_load() -> None:
    task = TextGenerationWithImage(llm=DescribingLLM(), template="{{ instruction }} {{ context }}")
    with pytest.raises(StepConfigError, match=r"\['context'\].*columns"):
        task.load()


def test_declared_column_unused_by_template_fails_at_load() -> None:
    task = TextGenerationWithImage(llm=DescribingLLM(), template="Describe.", columns=["hint"])
    with pytest.raises(StepConfigError, match="never uses"):
        task.load()


def test_template_is_sandboxed() -> None:
    task = make_task(template="{{ instruction.__class__.__mro__ }}")
    [row] = next(task.process([{"instruction": "x", "image": image_bytes()}]))
    assert row["generation"] is None
    assert (
        "SecurityError" in row[METADATA_COLUMN]["error_vision_gen"]
        or "unsafe" in row[METADATA_COLUMN]["error_vision_gen"]
    )


def _bad_inputs(tmp_path: Path) -> list[tuple[str, str, Any, str]]:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not an image\n")
    return [
        ("corrupt base64", "base64", "iVBORw0K!!!not*base64", "base64"),
        (
            "truncated png",
            "auto",
            base64.b64encode(truncated_png()).decode(),
            "runcated|broken|corrupt",
        ),
        ("missing path", "auto", str(tmp_path / "nope.png"), "no such file|not exist|not found"),
        ("text file", "auto", str(text_file), "not an image|cannot identify|unknown format"),
        ("bomb", "auto", png_header_claiming(30000, 30000), "30000x30000"),
        ("type mismatch", "url", base64.b64encode(image_bytes()).decode(), "image_type"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_image_fails_only_its_row(
    tmp_path: Path, case: int, caplog: pytest.LogCaptureFixture
) -> None:
    label, image_type, bad_value, expected = _bad_inputs(tmp_path)[case]
    good = image_bytes() if image_type != "url" else "https://example.invalid/cat.png"
    if image_type == "base64":
        good = base64.b64encode(image_bytes()).decode()
    task = make_task(image_type=image_type)
    rows = next(
        task.process(
            [
                {"instruction": "first", "image": good},
                {"instruction": "second", "image": bad_value},
                {"instruction": "third", "image": good},
            ]
        )
    )
    assert [r["instruction"] for r in rows] == ["first", "second", "third"], label
    assert rows[0]["generation"] is not None
    assert rows[2]["generation"] is not None
    assert rows[1]["generation"] is None
    error = rows[1][METADATA_COLUMN]["error_vision_gen"]
    assert "step 'vision_gen'" in error
    assert "row 1, column 'image'" in error
    assert re.search(expected, error, re.IGNORECASE), (label, error)
    assert "row 1, column 'image'" in caplog.text
    # The failed row never reached the model.
    assert len(task.llm.calls) == 2  # type: ignore[attr-defined]


def test_missing_column_fails_only_its_row() -> None:
    task = make_task()
    rows = next(
        task.process([{"instruction": "ok", "image": image_bytes()}, {"image": image_bytes()}])
    )
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    error = rows[1][METADATA_COLUMN]["error_vision_gen"]
    assert "step 'vision_gen': row 1, column 'instruction'" in error
    with pytest.raises(MissingColumnError, match="step 'vision_gen': row 0, column 'image'"):
        task.check_row({"instruction": "x"}, 0)


def test_request_failure_touches_only_its_row() -> None:
    task = make_task(llm=DescribingLLM(fail_when="boom"))
    rows = next(
        task.process(
            [
                {"instruction": "fine", "image": image_bytes()},
                {"instruction": "boom", "image": image_bytes()},
            ]
        )
    )
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    assert "server refused" in rows[1][METADATA_COLUMN]["error_vision_gen"]
    assert rows[1]["model_name"] == "test/describing-vlm"
