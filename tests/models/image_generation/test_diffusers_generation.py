"""DiffusersImageGeneration on the tiny random Stable Diffusion pipeline."""

from __future__ import annotations

import gc
import pickle
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_models import TinyModels, offline, tiny_models, torch
from pixtill.models.image_generation.diffusers import DiffusersImageGeneration
from pixtill.models.image_generation.utils import image_from_str
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline, tiny_models)  # imported for pytest; named here so linters see them used

FAST = {"num_inference_steps": 2}


@pytest.fixture
def painter(tiny_models: TinyModels) -> Iterator[DiffusersImageGeneration]:
    model = DiffusersImageGeneration(model=str(tiny_models.text_to_image), generation_kwargs=FAST)
    model.load()
    yield model
    model.unload()


def test_image_generation_task_honours_size_and_num_generations(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    task = ImageGeneration(
        name="paint",
        image_generation_model=DiffusersImageGeneration(
            model=str(tiny_models.text_to_image),
            generation_kwargs={**FAST, "width": 48, "height": 32, "seed": 1},
        ),
        num_generations=2,
        save_artifacts=True,
        artifacts_directory=tmp_path,
    )
    task.load()
    try:
        rows = task.process_batch([{"prompt": "a red circle"}, {"prompt": "a blue square"}])
    finally:
        task.unload()
    assert [r["prompt"] for r in rows] == ["a red circle"] * 2 + ["a blue square"] * 2
    images = [image_from_str(r["image"]) for r in rows]
    assert all(image.size == (48, 32) and image.format == "PNG" for image in images)
    assert len({r["image"] for r in rows}) == 4  # two prompts x two different generations
    for row in rows:
        assert row["model_name"] == str(tiny_models.text_to_image)
        assert Path(row["image_path"]).is_file()
        assert "error_paint" not in row[METADATA_COLUMN]
        # Metadata keeps a hash of the image, not a second copy of it.
        (kept,) = row[METADATA_COLUMN]["raw_output_paint"]["images"]
        assert kept.startswith("sha256:")


def test_default_size_comes_from_the_pipeline(painter: DiffusersImageGeneration) -> None:
    ((output,),) = painter.generate(["a green triangle"])
    (image,) = output["images"]
    assert image is not None
    assert image_from_str(image).size == (64, 64)


def test_a_seed_makes_images_reproducible(painter: DiffusersImageGeneration) -> None:
    first = painter.generate(["a cat", "a dog"], num_generations=2, seed=5)
    again = painter.generate(["a cat", "a dog"], num_generations=2, seed=5)
    other = painter.generate(["a cat"], num_generations=2, seed=6)
    assert first == again
    # Each prompt gets its own generator seeded alike: its images do not depend on its batch.
    assert painter.generate(["a dog"], num_generations=2, seed=5)[0] == first[1]
    assert other[0] != first[0]
    assert first[0][0] != first[0][1]


def test_pipeline_options_pass_through(painter: DiffusersImageGeneration) -> None:
    ((output,),) = painter.generate(
        ["a house"], negative_prompt="blurry", guidance_scale=1.0, width=32, height=40
    )
    assert image_from_str(output["images"][0] or "").size == (32, 40)


def test_a_failing_prompt_fails_alone(painter: DiffusersImageGeneration) -> None:
    outputs = painter.generate(["a tree", "   ", "a boat"], num_generations=2)
    assert [len(o) for o in outputs] == [2, 2, 2]
    assert outputs[1] == [{"images": [None], "error": "ValueError: the prompt is empty"}] * 2
    for index in (0, 2):
        assert all(o["images"][0] and not o.get("error") for o in outputs[index])
    bad_size = painter.generate(["a tree"], width=30, height=30)
    assert bad_size[0][0]["images"] == [None]
    assert "divisible by 8" in str(bad_size[0][0]["error"])


def test_unload_frees_the_pipeline(tiny_models: TinyModels) -> None:
    model = DiffusersImageGeneration(model=str(tiny_models.text_to_image), generation_kwargs=FAST)
    model.load()
    model.generate(["a star"])
    unet = weakref.ref(model.diffusion_pipeline.unet)
    assert isinstance(unet(), torch.nn.Module)
    model.unload()
    gc.collect()
    assert model.diffusion_pipeline is None
    assert unet() is None


def test_copies_and_pickles_start_unloaded(painter: DiffusersImageGeneration) -> None:
    for other in (painter.model_copy(deep=True), pickle.loads(pickle.dumps(painter))):
        assert other.diffusion_pipeline is None
        assert other.model_name == painter.model_name
        assert other.generation_kwargs == FAST
    assert painter.diffusion_pipeline is not None
