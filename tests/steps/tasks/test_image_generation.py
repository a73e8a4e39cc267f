from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Union

from PIL import Image
from typing_extensions import override

from doubles import PaletteImageModel
from pixtill.models.image_generation.utils import image_from_str, image_to_str
from pixtill.steps.base import StepInput
from pixtill.steps.tasks import METADATA_COLUMN, ImageGeneration
from pixtill.steps.tasks.base import ImageTask
from pixtill.steps.typing import StepColumns, StepOutput


def test_seed_004_image_generation() -> None:
    task = ImageGeneration(
        name="image-generation",
        image_generation_model=PaletteImageModel(model_id="black-forest-labs/FLUX.1-schnell"),
    )
    task.load()
    result = next(task.process([{"prompt": "a white siamese cat"}]))
    assert result[0]["image"].startswith("iVBORw0KGgo")
    assert result[0]["model_name"] == "black-forest-labs/FLUX.1-schnell"
    # The seed's notebook tip: image_from_str gives back a PIL image.
    image = image_from_str(result[0]["image"])
    assert isinstance(image, Image.Image)
    assert image.format == "PNG"
    # Raw output in metadata holds a content hash, not a second copy of the image.
    raw = result[0][METADATA_COLUMN]["raw_output_image-generation"]
    assert raw["images"][0].startswith("sha256:")
    task.unload()


def test_num_generations_and_grouping() -> None:
    task = ImageGeneration(image_generation_model=PaletteImageModel(), num_generations=3)
    task.load()
    rows = next(task.process([{"prompt": "a"}, {"prompt": "b"}]))
    assert len(rows) == 6
    assert len({r["image"] for r in rows}) == 6
    grouped = ImageGeneration(
        image_generation_model=PaletteImageModel(), num_generations=3, group_generations=True
    )
    grouped.load()
    [row] = next(grouped.process([{"prompt": "a"}]))
    assert [i for i in row["image"]] == [r["image"] for r in rows[:3]]


def test_save_artifacts_by_content_hash(tmp_path: Path) -> None:
    task = ImageGeneration(
        image_generation_model=PaletteImageModel(),
        save_artifacts=True,
        artifacts_directory=tmp_path,
        num_generations=2,
    )
    task.load()
    rows = next(
        task.process(
            [{"prompt": "same words"}, {"prompt": "other words"}, {"prompt": "same words"}]
        )
    )
    paths = [Path(r["image_path"]) for r in rows]
    assert all(p.parent == tmp_path / "images" and p.suffix == ".png" for p in paths)
    # Four distinct images, four files; the repeated prompt maps onto the same files.
    assert len(set(paths)) == 4
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        {p.name for p in paths}
    )
    for row, path in zip(rows, paths):
        assert path.read_bytes() == base64.b64decode(row["image"])


def test_image_format_conversion() -> None:
    task = ImageGeneration(image_generation_model=PaletteImageModel(), image_format="JPEG")
    task.load()
    [row] = next(task.process([{"prompt": "x"}]))
    assert base64.b64decode(row["image"])[:3] == b"\xff\xd8\xff"


def test_failed_prompt_and_bad_prompt_touch_only_their_rows() -> None:
    task = ImageGeneration(name="img", image_generation_model=PaletteImageModel(fail_when="boom"))
    task.load()
    rows = next(task.process([{"prompt": "ok"}, {"prompt": "boom"}, {"prompt": 3}, {}]))
    assert rows[0]["image"] is not None
    assert [r["image"] for r in rows[1:]] == [None, None, None]
    assert "image server error" in rows[1][METADATA_COLUMN]["error_img"]
    assert "step 'img': row 2, column 'prompt'" in rows[2][METADATA_COLUMN]["error_img"]
    assert "step 'img': row 3, column 'prompt'" in rows[3][METADATA_COLUMN]["error_img"]


# The seed's custom ImageTask, as written, with only what the seed forgot: imports for
# `override`, `Union`, `Dict`, `Any`, and `process` taking `inputs` (the seed's
# `process(self, offset: int = 0)` refers to an undefined `inputs`).
class MyCustomImageTask(ImageTask):
    @override
    def process(self, inputs: StepInput) -> StepOutput:
        formatted_inputs = self._format_inputs(inputs)

        outputs = self.llm.generate_outputs(
            inputs=formatted_inputs,
            num_generations=self.num_generations,
            **self.llm.get_generation_kwargs(),
        )

        task_outputs = []
        for input, input_outputs in zip(inputs, outputs):
            formatted_outputs = self._format_outputs(input_outputs, input)
            for formatted_output in formatted_outputs:
                task_outputs.append(
                    {**input, **formatted_output, "model_name": self.llm.model_name}
                )
        yield task_outputs

    @property
    def inputs(self) -> StepColumns:
        return ["prompt"]

    @property
    def outputs(self) -> StepColumns:
        return ["image", "model_name"]

    def format_input(self, input: dict[str, Any]) -> str:
        return input["prompt"]

    def format_output(self, output: Union[str, None], input: dict[str, Any]) -> dict[str, Any]:
        # Extract/generate/modify the image from the output
        image = image_from_str(output["images"][0])  # type: ignore[index]
        return {
            "image": image_to_str(image.resize((4, 4)), "JPEG"),
            "model_name": self.llm.model_name,
        }


def test_seed_004_custom_image_task() -> None:
    task = MyCustomImageTask(image_generation_model=PaletteImageModel(), num_generations=2)
    task.load()
    rows = next(task.process([{"prompt": "red"}, {"prompt": "blue"}]))
    assert [r["prompt"] for r in rows] == ["red", "red", "blue", "blue"]
    for row in rows:
        assert image_from_str(row["image"]).size == (4, 4)
        assert image_from_str(row["image"]).format == "JPEG"
        assert row["model_name"] == "test/palette"
        assert METADATA_COLUMN in row
    assert task.llm is task.image_generation_model


def test_output_mapping_does_not_clobber_an_input_column_of_the_same_name() -> None:
    task = ImageGeneration(
        image_generation_model=PaletteImageModel(),
        input_mappings={"prompt": "caption"},
        output_mappings={"image": "generated", "model_name": "painter"},
    )
    task.load()
    [[row]] = list(task.process_applying_mappings([{"caption": "c", "image": "source.png"}]))
    assert row["image"] == "source.png"
    assert row["caption"] == "c"
    assert row["generated"].startswith("iVBOR")
    assert row["painter"] == "test/palette"
    assert "prompt" not in row and "model_name" not in row
