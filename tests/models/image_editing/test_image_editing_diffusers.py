"""DiffusersImageEditing on the tiny random Stable Diffusion pipeline (img2img and inpainting)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
from PIL import Image

from local_models import TinyModels, offline, tiny_models
from pixtill.images import ImageRef
from pixtill.models.image_editing import DiffusersImageEditing
from pixtill.models.image_generation.utils import image_from_str
from pixtill.steps.tasks import METADATA_COLUMN, ImageEditing
from sample_images import image_bytes

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline, tiny_models)

FAST = {"num_inference_steps": 2, "strength": 0.5}


def _mask(size: tuple[int, int]) -> bytes:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def test_edit_task_keeps_size_gives_distinct_generations(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = DiffusersImageEditing(
        model=str(tiny_models.text_to_image), generation_kwargs={**FAST, "seed": 3}
    )
    task = ImageEditing(name="edit", image_editing_model=model, num_generations=2)
    task.load()
    try:
        assert type(model.diffusion_pipeline).__name__ == "StableDiffusionImg2ImgPipeline"
        rows = task.process_batch(
            [
                {"image": image_bytes(48, 32), "prompt": "a red circle"},
                {"image": image_bytes(48, 32, format="JPEG"), "prompt": ""},
            ]
        )
    finally:
        task.unload()
    assert model.diffusion_pipeline is None
    assert len(rows) == 4, rows  # two generations per row; the second row fails alone
    assert rows[0]["edited_image"] is not None, rows[0][METADATA_COLUMN]
    assert [image_from_str(r["edited_image"]).size for r in rows[:2]] == [(48, 32)] * 2
    assert rows[0]["edited_image"] != rows[1]["edited_image"]
    assert rows[0][METADATA_COLUMN]["raw_input_edit"]["image"].startswith("sha256:")
    assert rows[2]["edited_image"] is None and rows[3]["edited_image"] is None
    assert "column 'prompt'" in rows[2][METADATA_COLUMN]["error_edit"]


def test_seeded_edit_is_reproducible_and_mask_uses_inpainting(tiny_models: TinyModels) -> None:
    model = DiffusersImageEditing(model=str(tiny_models.text_to_image), generation_kwargs=FAST)
    image = ImageRef.from_value(image_bytes(32, 32, color=(10, 200, 30)))
    try:
        first = model.generate([{"prompt": "a leaf", "image": image}], seed=7)[0][0]
        again = model.generate([{"prompt": "a leaf", "image": image}], seed=7)[0][0]
        masked = model.generate(
            [{"prompt": "a leaf", "image": image, "mask": ImageRef.from_value(_mask((32, 32)))}],
            seed=7,
        )[0][0]
    finally:
        model.unload()
    assert "error" not in first and first == again
    assert "error" not in masked, masked
    assert image_from_str(masked["images"][0]).size == (32, 32)
    # A copy (a replica) starts unloaded and loads its own weights.
    clone = pickle.loads(pickle.dumps(model))
    assert clone.diffusion_pipeline is None
