"""No wrong result stored as a success: cut images fail before sending (JPEG, PNG, GIF, WebP),
None in a text column is a row error naming the column, and what a model returns is checked."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from doubles import DescribingLLM
from pixtill.errors import RowError
from pixtill.images import ImageDecodeError, ImageRef
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.llms.base import LLM, AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import (
    METADATA_COLUMN,
    ChatGeneration,
    ImageGeneration,
    TextGeneration,
    TextGenerationWithImage,
)
from pixtill.utils.gif import GIFStructureError, gif_size
from pixtill.utils.jpeg import JPEGStructureError, jpeg_size
from pixtill.utils.webp import WebPStructureError, check_webp


def photo(size: tuple[int, int] = (96, 64), format: str = "JPEG", **params: Any) -> bytes:
    """A noisy image (so the compressed data is long enough to cut anywhere)."""
    image = Image.effect_noise(size, 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def with_exif_thumbnail() -> bytes:
    """A JPEG whose EXIF block holds a thumbnail JPEG (with its own end-of-image marker)."""
    thumb = photo((16, 16))
    exif = Image.Exif()
    exif[0x0112] = 1
    raw = exif.tobytes()
    app1 = b"\xff\xe1" + (len(raw) + 2 + len(thumb)).to_bytes(2, "big") + raw + thumb
    data = photo()
    return data[:2] + app1 + data[2:]


# -- structure checks: the kind "a cut image", in each format ----------------------------------


@pytest.mark.parametrize("fraction", [0.6, 0.02, 0.3, 0.9, 0.99])
@pytest.mark.parametrize(
    "make",
    [
        lambda: photo(),
        lambda: photo(progressive=True),
        lambda: photo(size=(64, 64), format="JPEG", quality=95, subsampling=0),
        with_exif_thumbnail,
    ],
)
def test_cut_jpegs_fail_the_cheap_check(make: Any, fraction: float) -> None:
    data = make()
    width, height = jpeg_size(data)  # the whole file passes
    assert (width, height) == Image.open(io.BytesIO(data)).size
    with pytest.raises(JPEGStructureError, match=r"truncated|broken"):
        jpeg_size(data[: int(len(data) * fraction)])
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        ImageRef.from_value(data[: int(len(data) * fraction)]).validate()


def test_jpegs_with_data_after_the_end_still_pass() -> None:
    data = photo() + b"trailing bytes some cameras add"
    ImageRef.from_value(data).validate()


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_cut_gifs_and_webps_fail(fraction: float) -> None:
    frames = [Image.effect_noise((48, 48), 40 + 10 * i).convert("P") for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    gif = buffer.getvalue()
    assert gif_size(gif) == (48, 48)
    with pytest.raises(GIFStructureError):
        gif_size(gif[: int(len(gif) * fraction)])
    webp = photo(format="WEBP")
    check_webp(webp)
    with pytest.raises(WebPStructureError):
        check_webp(webp[: int(len(webp) * fraction)])
    for cut in (gif[: int(len(gif) * fraction)], webp[: int(len(webp) * fraction)]):
        with pytest.raises(ImageDecodeError, match="truncated"):
            ImageRef.from_value(cut).validate()


@pytest.mark.parametrize("format", ["BMP", "TIFF"])
def test_cut_images_of_other_formats_fail_validate(format: str) -> None:
    data = photo(format=format)
    ImageRef.from_value(data).validate()
    with pytest.raises(ImageDecodeError):
        ImageRef.from_value(data[: len(data) * 6 // 10]).validate()


@pytest.mark.parametrize("form", ["bytes", "base64", "data_url", "path"])
def test_a_jpeg_cut_at_60_percent_fails_its_row_and_is_never_sent(
    form: str, tmp_path: Path
) -> None:
    data = photo()
    cut = data[: len(data) * 6 // 10]
    value: Any = {
        "bytes": cut,
        "base64": base64.b64encode(cut).decode(),
        "data_url": "data:image/jpeg;base64," + base64.b64encode(cut).decode(),
        "path": str(tmp_path / "cut.jpg"),
    }[form]
    (tmp_path / "cut.jpg").write_bytes(cut)
    llm = DescribingLLM()
    task = TextGenerationWithImage(name="vision", llm=llm)
    task.load()
    try:
        rows = next(
            task.process(
                [{"instruction": "ok", "image": data}, {"instruction": "cut", "image": value}]
            )
        )
    finally:
        task.unload()
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    error = rows[1][METADATA_COLUMN]["error_vision"]
    assert error.startswith("step 'vision': row 1, column 'image': "), error
    assert "truncated JPEG" in error
    assert len(llm.calls) == 1  # the cut image never reached the model


# -- None in a text column -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "columns"),
    [
        ("{{ instruction }}", "instruction"),
        ("Question: {{ instruction }}", "instruction"),
        ("{{ instruction | upper }} about {{ topic }}", ["instruction", "topic"]),
    ],
)
def test_none_in_a_template_column_fails_the_row_naming_it(template: str, columns: Any) -> None:
    llm = DescribingLLM()
    task = TextGeneration(name="t", llm=llm, template=template, columns=columns)
    task.load()
    try:
        rows = next(
            task.process(
                [{"instruction": "fine", "topic": "x"}, {"instruction": None, "topic": "x"}]
            )
        )
    finally:
        task.unload()
    assert rows[0]["generation"] is not None
    assert rows[1]["generation"] is None
    error = rows[1][METADATA_COLUMN]["error_t"]
    assert error.startswith("step 't': row 1, column 'instruction': expected text, got None")
    assert all("None" not in str(call) for call in llm.calls)


def test_nan_in_a_template_column_is_a_missing_value_too() -> None:
    task = TextGeneration(name="t", llm=DescribingLLM(), template="Q: {{ instruction }}")
    task.load()
    try:
        rows = next(task.process([{"instruction": float("nan")}]))
    finally:
        task.unload()
    error = rows[0][METADATA_COLUMN]["error_t"]
    assert error.startswith("step 't': row 0, column 'instruction': expected text, got nan")


def test_a_template_may_still_test_or_default_a_none_column() -> None:
    task = TextGeneration(
        name="t",
        llm=DescribingLLM(),
        template="{% if context %}{{ context }}\n{% endif %}Q: {{ q | default('-') }}",
        columns=["context", "q"],
    )
    task.load()
    try:
        rows = next(task.process([{"context": None, "q": None}]))
    finally:
        task.unload()
    assert rows[0]["generation"] == "[0] saw user: Q: -"


def test_none_in_a_chat_text_part_fails_the_row() -> None:
    task = ChatGeneration(name="chat", llm=DescribingLLM())
    task.load()
    try:
        messages = [{"role": "user", "content": [{"type": "text", "text": None}]}]
        rows = next(task.process([{"messages": messages}]))
    finally:
        task.unload()
    error = rows[0][METADATA_COLUMN]["error_chat"]
    assert error.startswith("step 'chat': row 0, column 'messages': ") and "None" in error


def test_a_row_emptied_by_an_earlier_failure_says_which_step_failed(tmp_path: Path) -> None:
    with Pipeline(name="chain", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "a"}, {"instruction": "b!"}])
        first = TextGeneration(name="first", llm=DescribingLLM(fail_when="b!"))
        second = TextGeneration(
            name="second", llm=DescribingLLM(), input_mappings={"instruction": "generation"}
        )
        load >> first >> second
    distiset = pipeline.run(use_cache=False)
    metas = distiset["second"][METADATA_COLUMN]
    assert "error_second" not in {k for k, v in metas[0].items() if v is not None}
    assert "step 'first' failed for this row" in metas[1]["error_second"]
    # The run's summary counts the row once, under the step that caused it.
    failures = distiset.failures
    assert failures.failed == 1
    assert failures.by_step == {"first": 1}


# -- what a model returns ----------------------------------------------------------------------


class OddLLM(AsyncLLM):
    """Returns what its prompt asks for: a dict, None without an error, or text."""

    @property
    def model_name(self) -> str:
        return "odd"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        text = str(input[-1]["content"])
        value: Any = {"dict": {"text": "x"}, "none": None, "bytes": b"x"}.get(text, text)
        return {"generations": [value] * num_generations}


class OddSyncLLM(LLM):
    @property
    def model_name(self) -> str:
        return "odd-sync"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [{"generations": [7] * num_generations} for _ in inputs]  # type: ignore[list-item]


@pytest.mark.parametrize("llm", [OddLLM(), OddSyncLLM()])
def test_a_text_output_that_is_not_text_fails_the_row(llm: Any) -> None:
    task = TextGeneration(name="t", llm=llm)
    task.load()
    try:
        rows = next(task.process([{"instruction": x} for x in ("dict", "none", "bytes", "fine")]))
    finally:
        task.unload()
    expected_ok = [False, False, False, isinstance(llm, OddLLM)]
    assert [r["generation"] is not None for r in rows] == expected_ok
    for index, row in enumerate(rows):
        if not expected_ok[index]:
            error = row[METADATA_COLUMN]["error_t"]
            assert error.startswith(f"step 't': row {index}: the model returned"), error


def _garbage(kind: str) -> Any:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buffer, format="PNG")
    png = buffer.getvalue()
    return {
        "text": base64.b64encode(b"<html>quota exceeded</html>").decode(),
        "cut": base64.b64encode(png[: len(png) * 6 // 10]).decode(),
        "cutjpeg": base64.b64encode(photo()[:900]).decode(),
        "bytes": png,
        "missing": None,
        "ok": base64.b64encode(png).decode(),
    }[kind]


class OddPainter(AsyncImageGenerationModel):
    @property
    def model_name(self) -> str:
        return "odd-painter"

    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        return [{"images": [_garbage(input)]} for _ in range(num_generations)]


class OddSyncPainter(ImageGenerationModel):
    @property
    def model_name(self) -> str:
        return "odd-sync-painter"

    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        return [[{"images": [_garbage(p)]} for _ in range(num_generations)] for p in inputs]


@pytest.mark.parametrize("model", [OddPainter(), OddSyncPainter()])
def test_an_image_output_that_is_not_a_decodable_image_fails_the_row(model: Any) -> None:
    task = ImageGeneration(name="paint", image_generation_model=model)
    kinds = ["text", "cut", "cutjpeg", "bytes", "missing", "ok"]
    task.load()
    try:
        rows = next(task.process([{"prompt": kind} for kind in kinds]))
    finally:
        task.unload()
    assert [r["image"] is not None for r in rows] == [False] * 5 + [True]
    for index, row in enumerate(rows[:5]):
        error = row[METADATA_COLUMN]["error_paint"]
        assert error.startswith(f"step 'paint': row {index}: the model"), error


def test_prompt_render_errors_are_row_errors() -> None:
    with pytest.raises(RowError):
        TextGeneration(name="t", llm=DescribingLLM()).render_prompt({"instruction": None})
