"""Two tasks in a chain keep both model names; one task writes distilabel's ``model_name``."""

from __future__ import annotations

from pathlib import Path

from doubles import DescribingLLM, PaletteImageModel
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import ImageGeneration, TextGeneration


def _caption() -> TextGeneration:
    return TextGeneration(name="caption", llm=DescribingLLM(model_id="vlm-a"))


def _paint(**kwargs: object) -> ImageGeneration:
    return ImageGeneration(
        name="paint",
        image_generation_model=PaletteImageModel(model_id="painter-b"),
        input_mappings={"prompt": "generation"},
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_single_task_writes_model_name_as_distilabel_does() -> None:
    task = _caption()
    task.load()
    [row] = next(task.process([{"instruction": "a"}]))
    assert row["model_name"] == "vlm-a"
    assert not [k for k in row if k.startswith("model_name_")]


def test_the_second_task_of_a_chain_writes_its_own_column() -> None:
    caption, paint = _caption(), _paint()
    caption.load()
    paint.load()
    rows = next(caption.process([{"instruction": "a"}, {"instruction": "b"}]))
    painted = next(paint.process_applying_mappings(rows))
    assert [(r["model_name"], r["model_name_paint"]) for r in painted] == [
        ("vlm-a", "painter-b"),
        ("vlm-a", "painter-b"),
    ]


def test_an_output_mapping_decides_where_the_name_goes() -> None:
    caption, paint = _caption(), _paint(output_mappings={"model_name": "image_model"})
    caption.load()
    paint.load()
    [row] = next(paint.process_applying_mappings(next(caption.process([{"instruction": "a"}]))))
    assert (row["model_name"], row["image_model"]) == ("vlm-a", "painter-b")
    assert "model_name_paint" not in row


def test_a_pipeline_keeps_both_names_also_from_the_cache(tmp_path: Path) -> None:
    with Pipeline(name="chain", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(4)])
        load >> _caption() >> _paint()
    for _ in range(2):  # the second run replays every row from the cache
        dataset = pipeline.run(use_cache=True)["paint"]
        assert dataset["model_name"] == ["vlm-a"] * 4
        assert dataset["model_name_paint"] == ["painter-b"] * 4
