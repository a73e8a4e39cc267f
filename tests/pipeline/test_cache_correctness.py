"""What must (and must not) come back from the cache."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from doubles import DescribingLLM
from pixtill.images import ImageRef, ImageTooLargeError
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration, TextGenerationWithImage
from sample_images import image_bytes


def test_another_model_is_a_cache_miss(tmp_path: Path) -> None:
    def run(model_id: str) -> tuple[list[Any], DescribingLLM]:
        llm = DescribingLLM(model_id=model_id)
        with Pipeline(name="models", cache_dir=tmp_path) as pipeline:
            LoadDataFromDicts(data=[{"instruction": "a"}]) >> TextGeneration(name="g", llm=llm)
        return pipeline.run()["g"]["model_name"], llm

    assert run("org/small")[0] == ["org/small"]
    names, llm = run("org/big")
    assert names == ["org/big"]
    assert len(llm.calls) == 1


def test_twin_steps_do_not_share_entries(tmp_path: Path) -> None:
    def run() -> dict[str, Any]:
        with Pipeline(name="twins", cache_dir=tmp_path) as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": "a"}])
            a = TextGeneration(name="a", llm=DescribingLLM(), output_mappings={"generation": "x"})
            b = TextGeneration(name="b", llm=DescribingLLM(), output_mappings={"generation": "y"})
            load >> a >> b
        return pipeline.run()["b"][0]

    first, second = run(), run()
    assert first == second
    assert second["x"] == second["y"] == "[0] saw user: a"
    assert "raw_output_a" in second["pixtill_metadata"]


def test_image_content_is_in_the_key_through_mappings_and_lists(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"

    def run() -> list[str]:
        with Pipeline(name="content", cache_dir=tmp_path / "cache") as pipeline:
            load = LoadDataFromDicts(
                data=[
                    {"instruction": "one", "photo": str(photo)},
                    {"instruction": "many", "photo": [str(photo), str(photo)]},
                ]
            )
            task = TextGenerationWithImage(
                name="t", llm=DescribingLLM(), input_mappings={"image": "photo"}
            )
            load >> task
        return list(pipeline.run()["t"]["generation"])

    photo.write_bytes(image_bytes(10, 10))
    assert run()[0].endswith("<PNG 10x10>")
    photo.write_bytes(image_bytes(20, 20))
    assert run() == ["[0] saw user: one <PNG 20x20>", "[0] saw user: many <PNG 20x20> <PNG 20x20>"]


class Dated(TextGeneration):
    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"generation": output, "when": datetime.date(2026, 1, 1)}


def test_a_value_the_cache_cannot_store_does_not_fail_the_run(tmp_path: Path) -> None:
    with Pipeline(name="dated", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=[{"instruction": "a"}]) >> Dated(name="d", llm=DescribingLLM())
    assert pipeline.run()["d"]["generation"] == ["[0] saw user: a"]


def test_run_with_a_dataset_twice(tmp_path: Path) -> None:
    with Pipeline(name="again", cache_dir=tmp_path) as pipeline:
        TextGeneration(name="g", llm=DescribingLLM())
    assert len(pipeline.run(dataset=[{"instruction": "a"}])["g"]) == 1
    assert len(pipeline.run(dataset=[{"instruction": "a"}, {"instruction": "b"}])["g"]) == 2


def test_a_stricter_pixel_limit_is_checked_again() -> None:
    ref = ImageRef.from_value(image_bytes(64, 64))
    ref.validate()
    strict = ImageRef.from_value(ref, max_pixels=100)
    with pytest.raises(ImageTooLargeError):
        strict.validate()
