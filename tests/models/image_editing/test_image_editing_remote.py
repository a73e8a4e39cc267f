"""OpenAIImageEditing and InferenceEndpointsImageEditing against a fake edit server, through the
`ImageEditing` task, and the task chained after `ImageGeneration` in a pipeline."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from doubles import PaletteImageModel
from http_servers import serve
from models.fake_providers import FAST, free_port, loaded
from models.image_editing.fake_edits import FakeEdits
from pixtill.errors import ModelUnavailableError
from pixtill.models.image_editing import InferenceEndpointsImageEditing, OpenAIImageEditing
from pixtill.models.image_generation.utils import image_from_str
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import METADATA_COLUMN, ImageEditing, ImageGeneration
from sample_images import image_bytes, truncated_png

KEY = "sk-test-edits-SECRET-0123456789"
KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"


@pytest.fixture(autouse=True)
def hf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", KEY)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.fixture
def fake() -> FakeEdits:
    return FakeEdits(api_key=KEY)


@pytest.fixture
def url(fake: FakeEdits) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def openai_editor(base: str, **overrides: Any) -> OpenAIImageEditing:
    return OpenAIImageEditing(**{"base_url": f"{base}/v1", "api_key": KEY, **FAST, **overrides})


def hf_editor(base: str, **overrides: Any) -> InferenceEndpointsImageEditing:
    values = {"model_id": KONTEXT, "base_url": f"{base}/models/{KONTEXT}", **FAST, **overrides}
    return InferenceEndpointsImageEditing(**values)


def mask_png(size: tuple[int, int]) -> bytes:
    """Transparent left half (the area to change), opaque right half."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def test_openai_edit_sends_image_and_mask_as_multipart_and_splits_n(
    fake: FakeEdits, url: str, tmp_path: Path
) -> None:
    task = ImageEditing(
        name="edit",
        image_editing_model=openai_editor(
            url, max_n_per_request=2, generation_kwargs={"size": "auto", "quality": "low"}
        ),
        use_mask=True,
        num_generations=3,
        save_artifacts=True,
        artifacts_directory=tmp_path,
    )
    image = image_bytes(40, 30, format="JPEG")
    with loaded(task):
        rows = task.process_batch(
            [{"image": image, "prompt": "make it night", "mask": mask_png((40, 30))}]
        )
    assert fake.rejected == []
    assert [e.fields["n"] for e in fake.received] == ["2", "1"]
    for edit in fake.received:
        assert edit.image == ("JPEG", (40, 30))  # JPEG went as JPEG, no re-encoding
        assert edit.mask == ("PNG", (40, 30), "RGBA")
        assert edit.fields["model"] == "gpt-image-1"
        assert (edit.fields["size"], edit.fields["quality"]) == ("auto", "low")
    assert len(rows) == 3
    assert len({r["edited_image"] for r in rows}) == 3
    for row in rows:
        assert image_from_str(row["edited_image"]).size == (40, 30)
        assert Path(row["edited_image_path"]).is_file()
        meta = row[METADATA_COLUMN]
        assert "error_edit" not in meta
        # gpt-image usage per image: the prompt and input image, and the image's own tokens.
        assert meta["statistics_edit"] == {"input_tokens": 3 + 65, "output_tokens": 272}
        raw_input = meta["raw_input_edit"]
        # Metadata keeps references to the images, never their bytes.
        assert raw_input["prompt"] == "make it night"
        assert raw_input["image"].startswith("sha256:")
        assert raw_input["mask"].startswith("sha256:")
        assert meta["raw_output_edit"]["images"][0].startswith("sha256:")
    assert KEY not in repr(rows)


def test_openai_edit_converts_for_dall_e_2_and_fails_bad_rows_alone(
    fake: FakeEdits, url: str
) -> None:
    task = ImageEditing(
        name="edit", image_editing_model=openai_editor(url, model="dall-e-2", api_key=None)
    )
    fake.api_key = None
    rows_in = [
        {"image": image_bytes(16, 16, format="JPEG"), "prompt": "add a hat"},
        {"image": truncated_png(), "prompt": "add a hat"},
        {"image": image_bytes(16, 16), "prompt": "   "},
        {"image": image_bytes(16, 16, format="GIF"), "prompt": "add a scarf"},
    ]
    with loaded(task):
        rows = task.process_batch(rows_in)
    assert fake.rejected == []
    assert [e.image for e in fake.received] == [("PNG", (16, 16))] * 2  # dall-e-2: PNG only
    assert rows[0]["edited_image"] is not None and rows[3]["edited_image"] is not None
    assert rows[1]["edited_image"] is None
    assert "step 'edit': row 1, column 'image'" in rows[1][METADATA_COLUMN]["error_edit"]
    assert rows[2]["edited_image"] is None
    assert "column 'prompt'" in rows[2][METADATA_COLUMN]["error_edit"]


def test_openai_edit_url_answers_are_fetched_without_the_key(fake: FakeEdits, url: str) -> None:
    model = openai_editor(url, model="dall-e-2", generation_kwargs={"response_format": "url"})
    task = ImageEditing(name="edit", image_editing_model=model, num_generations=2)
    with loaded(task):
        rows = task.process_batch([{"image": image_bytes(16, 16), "prompt": "add a moon"}])
    assert fake.rejected == []
    assert fake.received[0].fields["response_format"] == "url"
    assert [image_from_str(r["edited_image"]).size for r in rows] == [(16, 16)] * 2


def test_openai_edit_with_a_refused_key_stops_the_step(fake: FakeEdits, url: str) -> None:
    fake.api_key = "another-key"
    task = ImageEditing(name="edit", image_editing_model=openai_editor(url))
    with loaded(task), pytest.raises(ModelUnavailableError) as info:  # every row would fail
        task.process_batch([{"image": image_bytes(), "prompt": "x"}] * 3)
    assert str(info.value).startswith("step 'edit': model 'gpt-image-1' at ")
    assert "401" in str(info.value) and KEY not in str(info.value)


@pytest.mark.parametrize("kind", ["openai", "hf"])
def test_a_dead_edit_server_stops_the_step_naming_it(kind: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    model = openai_editor(dead, max_retries=0) if kind == "openai" else hf_editor(dead)
    task = ImageEditing(name="edit", image_editing_model=model)
    with loaded(task), pytest.raises(ModelUnavailableError) as info:
        task.process_batch([{"image": image_bytes(), "prompt": "p"}])
    message = str(info.value)
    assert message.startswith(f"step 'edit': model '{model.model_name}'")
    assert "connection refused" in message and KEY not in message


def test_hf_image_to_image_sends_base64_and_prompt(fake: FakeEdits, url: str) -> None:
    task = ImageEditing(
        name="i2i",
        image_editing_model=hf_editor(url, generation_kwargs={"guidance_scale": 2.5}),
        num_generations=2,
    )
    with loaded(task):
        rows = task.process_batch([{"image": image_bytes(24, 20), "prompt": "as a watercolour"}])
    assert fake.rejected == []
    assert [e.route for e in fake.received] == ["image-to-image"] * 2
    for edit in fake.received:
        assert edit.image == ("PNG", (24, 20))
        assert edit.fields == {"prompt": "as a watercolour", "guidance_scale": "2.5"}
        assert edit.headers["x-use-cache"] == "false"  # two generations must differ
    assert [image_from_str(r["edited_image"]).size for r in rows] == [(24, 20)] * 2
    assert rows[0]["edited_image"] != rows[1]["edited_image"]
    assert rows[0]["model_name"] == KONTEXT


def test_hf_image_to_image_refuses_a_mask_per_row(fake: FakeEdits, url: str) -> None:
    task = ImageEditing(name="i2i", image_editing_model=hf_editor(url), use_mask=True)
    with loaded(task):
        rows = task.process_batch(
            [
                {"image": image_bytes(), "prompt": "p", "mask": mask_png((16, 12))},
                {"image": image_bytes(), "prompt": "p", "mask": None},
            ]
        )
    assert "takes no mask" in rows[0][METADATA_COLUMN]["error_i2i"]
    assert rows[1]["edited_image"] is not None
    assert len(fake.received) == 1


def test_image_editing_refuses_a_text_to_image_model() -> None:
    with pytest.raises(ValueError, match="image_editing_model"):
        ImageEditing(name="e", image_generation_model=PaletteImageModel())  # type: ignore[call-arg]


def test_editing_chains_after_image_generation_in_a_pipeline(
    fake: FakeEdits, url: str, tmp_path: Path
) -> None:
    with Pipeline(name="paint-then-edit", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(
            data=[
                {"prompt": f"a house #{i}", "edit_prompt": f"make house #{i} snowy"}
                for i in range(5)
            ]
        )
        paint = ImageGeneration(
            name="paint",
            image_generation_model=PaletteImageModel(),
            output_mappings={"model_name": "paint_model"},
        )
        edit = ImageEditing(
            name="edit",
            image_editing_model=openai_editor(url),
            input_mappings={"prompt": "edit_prompt"},
        )
        load >> paint >> edit
    dataset = pipeline.run(use_cache=False)["edit"]
    assert fake.rejected == []
    assert sorted(e.prompt for e in fake.received) == [f"make house #{i} snowy" for i in range(5)]
    assert all(e.image == ("PNG", (8, 8)) for e in fake.received)  # the painted images
    assert len(dataset) == 5
    for row in dataset:
        assert isinstance(row["image"], Image.Image)
        assert isinstance(row["edited_image"], Image.Image)
        assert row["edited_image"].size == (8, 8)
        assert row["model_name"] == "gpt-image-1"
        assert row["paint_model"] == "test/palette"


@pytest.mark.parametrize("backend", ["openai", "hf"])
def test_an_image_url_is_fetched_through_the_engine_in_the_requests_own_slot(
    fake: FakeEdits, url: str, backend: str
) -> None:
    """The servers take uploads, not URLs: the backend fetches the image through its engine,
    inside the slot of the request being built - at one request in flight this must not wait
    for a second slot - once for all the requests of a row."""
    fake.files["cat.png"] = image_bytes(24, 20)
    if backend == "openai":
        model: Any = openai_editor(url, max_concurrent_requests=1, max_n_per_request=1)
    else:
        model = hf_editor(url, max_concurrent_requests=1)
    task = ImageEditing(name="edit", image_editing_model=model, num_generations=2)
    with loaded(task):
        rows = task.process_batch([{"image": f"{url}/files/cat.png", "prompt": "add a hat"}])
        stats = model.request_stats()
    assert fake.rejected == []
    assert len(fake.received) == 2  # two requests (one generation each) ...
    assert stats["done"] == 3  # ... and one fetch of the image, through the engine
    assert [image_from_str(r["edited_image"]).size for r in rows] == [(24, 20)] * 2
    assert all(e.image[1] == (24, 20) for e in fake.received)


def _grey_mask(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 0).save(buffer, format="PNG")
    return buffer.getvalue()


def test_openai_edit_refuses_a_mask_that_does_not_fit_before_sending(
    fake: FakeEdits, url: str
) -> None:
    """A mask of another size (or without alpha) fails its row naming the ``mask`` column
    instead of the server's HTTP 400; the other rows go."""
    task = ImageEditing(
        name="edit",
        image_editing_model=openai_editor(url),
        use_mask=True,
    )
    rows_in = [
        {"image": image_bytes(40, 30), "prompt": "p", "mask": mask_png((40, 30))},
        {"image": image_bytes(40, 30), "prompt": "p", "mask": mask_png((20, 15))},
        {"image": image_bytes(40, 30), "prompt": "p", "mask": _grey_mask((40, 30))},
        {"image": image_bytes(40, 30), "prompt": "p", "mask": None},
    ]
    with loaded(task):
        rows = task.process_batch(rows_in)
    assert fake.rejected == []
    assert len(fake.received) == 2  # rows 0 and 3: nothing was sent for the bad masks
    assert rows[0]["edited_image"] is not None and rows[3]["edited_image"] is not None
    size_error = rows[1][METADATA_COLUMN]["error_edit"]
    assert size_error.startswith("step 'edit': row 1, column 'mask': ")
    assert "the mask is 20x15 pixels but the image is 40x30" in size_error
    alpha_error = rows[2][METADATA_COLUMN]["error_edit"]
    assert alpha_error.startswith("step 'edit': row 2, column 'mask': ")
    assert "no alpha channel (mode L)" in alpha_error
