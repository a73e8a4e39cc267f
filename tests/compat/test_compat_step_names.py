"""Default step names are distilabel's ``<snake_case class>_<n>``, so metadata keys match."""

from __future__ import annotations

from doubles import DescribingLLM, PaletteImageModel
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.base import default_step_name
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration, TextGenerationWithImage
from sample_images import image_bytes


def test_default_names_outside_a_pipeline_end_in_0() -> None:
    vision = TextGenerationWithImage(llm=DescribingLLM())
    painter = ImageGeneration(image_generation_model=PaletteImageModel())
    assert vision.name == "text_generation_with_image_0"
    assert painter.name == "image_generation_0"
    # Outside a pipeline nothing is taken, so a second one gets the same name (as in distilabel).
    assert TextGenerationWithImage(llm=DescribingLLM()).name == "text_generation_with_image_0"


def test_inside_a_pipeline_the_index_counts_up_and_explicit_names_stay() -> None:
    with Pipeline(name="names") as pipeline:
        first = TextGenerationWithImage(llm=DescribingLLM())
        named = TextGenerationWithImage(name="vision", llm=DescribingLLM())
        second = TextGenerationWithImage(llm=DescribingLLM())
        loader = LoadDataFromDicts(data=[{"instruction": "x"}])
    assert [first.name, named.name, second.name] == [
        "text_generation_with_image_0",
        "vision",
        "text_generation_with_image_1",
    ]
    assert loader.name == "load_data_from_dicts_0"
    assert set(pipeline.steps) == {
        "text_generation_with_image_0",
        "vision",
        "text_generation_with_image_1",
        "load_data_from_dicts_0",
    }


def test_the_pipeline_keyword_joins_that_pipeline() -> None:
    pipeline = Pipeline(name="given")
    task = TextGenerationWithImage(llm=DescribingLLM(), pipeline=pipeline)
    again = TextGenerationWithImage(llm=DescribingLLM(), pipeline=pipeline)
    assert task.pipeline is pipeline
    assert (task.name, again.name) == (
        "text_generation_with_image_0",
        "text_generation_with_image_1",
    )
    assert TextGenerationWithImage(llm=DescribingLLM()).pipeline is None


def test_a_name_taken_by_a_named_step_is_skipped() -> None:
    assert default_step_name("ImageGeneration", {"image_generation_0": object()}) == (
        "image_generation_1"
    )
    assert default_step_name("LoadDataFromHub") == "load_data_from_hub_0"


def test_metadata_keys_carry_the_default_name() -> None:
    task = TextGenerationWithImage(llm=DescribingLLM())
    task.load()
    rows = next(task.process([{"instruction": "What?", "image": image_bytes(4, 4)}]))
    task.unload()
    meta = rows[0][METADATA_COLUMN]
    assert {
        "raw_output_text_generation_with_image_0",
        "raw_input_text_generation_with_image_0",
    } <= set(meta)
