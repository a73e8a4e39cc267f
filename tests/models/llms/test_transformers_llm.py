"""TransformersLLM on the tiny random LLaVA model: tasks, batching, generations, seeds, unload."""

from __future__ import annotations

import gc
import pickle
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from local_models import TinyModels, offline, tiny_models, torch
from pixtill.images import ImageRef
from pixtill.models.llms.transformers import TransformersLLM
from pixtill.models.torch_support import import_torch, resolve_device, resolve_dtype
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration, TextGenerationWithImage
from pixtill.tiny_models import VLM_IMAGE_TOKENS
from sample_images import image_bytes

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline, tiny_models)  # imported for pytest; named here so linters see them used


@pytest.fixture
def llm(tiny_models: TinyModels) -> Iterator[TransformersLLM]:
    model = TransformersLLM(model=str(tiny_models.vlm), generation_kwargs={"max_new_tokens": 6})
    model.load()
    yield model
    model.unload()


def picture(color: str, size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def user(*parts: Any) -> dict[str, Any]:
    content = [
        {"type": "image", "image": ImageRef.from_value(p)}
        if isinstance(p, Image.Image)
        else {"type": "text", "text": p}
        for p in parts
    ]
    return {"role": "user", "content": content}


def test_text_generation_with_one_and_several_images(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(image_bytes(20, 20, (0, 0, 255)))
    task = TextGenerationWithImage(
        name="vision",
        llm=TransformersLLM(model=str(tiny_models.vlm), generation_kwargs={"max_new_tokens": 5}),
    )
    task.load()
    try:
        rows = task.process_batch(
            [
                {"instruction": "Describe it.", "image": picture("red")},
                {"instruction": "Compare them.", "image": [str(path), picture("green", (64, 32))]},
                {"instruction": "And this one?", "image": image_bytes(8, 8)},
            ]
        )
    finally:
        task.unload()
    assert [r["instruction"] for r in rows] == ["Describe it.", "Compare them.", "And this one?"]
    for row in rows:
        assert isinstance(row["generation"], str)
        assert row["model_name"] == str(tiny_models.vlm)
        stats = row[METADATA_COLUMN]["statistics_vision"]
        assert 1 <= stats["output_tokens"] <= 5
        assert "error_vision" not in row[METADATA_COLUMN]
    one, two = (r[METADATA_COLUMN]["statistics_vision"]["input_tokens"] for r in rows[:2])
    # Every image expands into the same number of placeholder tokens.
    assert two - one >= VLM_IMAGE_TOKENS
    raw = rows[1][METADATA_COLUMN]["raw_input_vision"]
    images = [p for p in raw[-1]["content"] if p["type"] == "image_url"]
    assert len(images) == 2
    assert all(p["image_url"]["url"].startswith("sha256:") for p in images)


def test_multi_turn_chat_with_images(llm: TransformersLLM) -> None:
    rendered: list[str] = []
    processor = llm.processor
    original = processor.apply_chat_template

    def spy(*args: Any, **kwargs: Any) -> Any:
        text = original(*args, **kwargs)
        rendered.append(text)
        return text

    processor.apply_chat_template = spy
    task = ChatGeneration(name="chat", llm=llm)
    task.load()
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "image": image_bytes(16, 16, (255, 0, 0))},
            ],
        },
        {"role": "assistant", "content": "A red square."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": ImageRef.from_value(picture("blue"))}},
                {"type": "text", "text": "And this?"},
            ],
        },
    ]
    (row,) = task.process_batch([{"messages": messages}])
    assert isinstance(row["generation"], str)
    assert row[METADATA_COLUMN]["statistics_chat"]["input_tokens"] > 2 * VLM_IMAGE_TOKENS
    (prompt,) = rendered
    assert prompt.index("<|system|>") < prompt.index("What is this?") < prompt.index("<image>")
    assert prompt.index("A red square.") < prompt.index("And this?")
    assert prompt.count("<image>") == 2
    assert prompt.endswith("<|assistant|>\n")


def test_greedy_num_generations_are_copies_and_keep_order(llm: TransformersLLM) -> None:
    chats = [
        [user(picture("red"), "one")],
        [{"role": "user", "content": "plain text, no image"}],
        [user(picture("blue"), picture("yellow"), "two")],
    ]
    outputs = llm.generate(chats, num_generations=3, do_sample=False)
    assert len(outputs) == 3
    for output in outputs:
        generations = output["generations"]
        assert len(generations) == 3
        assert len(set(generations)) == 1
        tokens = output["statistics"]["output_tokens"]
        assert tokens == [tokens[0]] * 3
    # Same answers, in the same order, as one at a time: batching (left padding) changes nothing.
    singles = [llm.generate([chat])[0]["generations"][0] for chat in chats]
    assert [o["generations"][0] for o in outputs] == singles


def test_several_generations_sample_unless_told_otherwise(llm: TransformersLLM) -> None:
    (output,) = llm.generate([[user(picture("red"), "one")]], num_generations=3)
    assert len(output["generations"]) == 3
    assert len(set(output["generations"])) > 1
    (greedy,) = llm.generate([[user(picture("red"), "one")]], num_generations=2, temperature=0)
    assert len(set(greedy["generations"])) == 1


def test_batches_are_capped_by_max_batch_size(tiny_models: TinyModels) -> None:
    llm = TransformersLLM(
        model=str(tiny_models.vlm), max_batch_size=2, generation_kwargs={"max_new_tokens": 3}
    )
    llm.load()
    sizes: list[int] = []
    model = llm.torch_model
    original = model.generate

    def spy(**kwargs: Any) -> Any:
        sizes.append(kwargs["input_ids"].shape[0])
        return original(**kwargs)

    model.generate = spy
    try:
        outputs = llm.generate([[user(picture("red"), f"row {i}")] for i in range(5)])
    finally:
        llm.unload()
    assert sizes == [2, 2, 1]
    assert all(isinstance(o["generations"][0], str) for o in outputs)


def test_sampling_with_a_seed_is_reproducible(llm: TransformersLLM) -> None:
    chat = [user(picture("purple"), "Describe it.")]
    first = llm.generate([chat], num_generations=3, temperature=1.0, seed=7)[0]
    again = llm.generate([chat], num_generations=3, temperature=1.0, seed=7)[0]
    other = llm.generate([chat], num_generations=3, temperature=1.0, seed=8)[0]
    assert first["generations"] == again["generations"]
    assert len(first["generations"]) == 3
    assert len(set(first["generations"])) > 1  # sampled, not copied
    assert other["generations"] != first["generations"]


def test_generation_kwargs_from_the_model_and_the_call(tiny_models: TinyModels) -> None:
    llm = TransformersLLM(
        model=str(tiny_models.vlm),
        generation_kwargs={"max_new_tokens": 2, "temperature": 0.0, "top_p": 0.5},
    )
    llm.load()
    try:
        (short,) = llm.generate([[user(picture("red"), "hi")]])
        (longer,) = llm.generate([[user(picture("red"), "hi")]], max_new_tokens=4)
    finally:
        llm.unload()
    assert short["statistics"]["output_tokens"][0] <= 2
    assert longer["statistics"]["output_tokens"][0] <= 4


def test_unknown_generation_kwargs_fail_at_load(tiny_models: TinyModels) -> None:
    llm = TransformersLLM(model=str(tiny_models.vlm), generation_kwargs={"max_tokenz": 3})
    with pytest.raises(ValueError, match="max_tokenz"):
        llm.load()


def test_a_bad_image_fails_only_its_row(llm: TransformersLLM, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(image_bytes())
    ref = ImageRef.from_value(broken)
    broken.write_text("not an image any more")
    outputs = llm.generate(
        [
            [user(picture("red"), "fine")],
            [{"role": "user", "content": [{"type": "image", "image": ref}]}],
            [user("fine too")],
        ],
        num_generations=2,
    )
    assert outputs[1]["generations"] == [None, None]
    assert "Image" in str(outputs[1]["error"])
    for index in (0, 2):
        assert len(outputs[index]["generations"]) == 2
        assert all(isinstance(g, str) for g in outputs[index]["generations"])
        assert not outputs[index].get("error")


def test_unload_frees_the_model(tiny_models: TinyModels) -> None:
    llm = TransformersLLM(model=str(tiny_models.vlm), generation_kwargs={"max_new_tokens": 2})
    llm.load()
    llm.generate([[user(picture("red"), "hi")]])
    module = weakref.ref(llm.torch_model)
    assert isinstance(module(), torch.nn.Module)
    llm.unload()
    gc.collect()
    assert llm.torch_model is None
    assert llm.processor is None
    assert module() is None


def test_copies_and_pickles_start_unloaded(llm: TransformersLLM) -> None:
    replica = llm.model_copy(deep=True)
    shipped = pickle.loads(pickle.dumps(llm))
    for other in (replica, shipped):
        assert other.torch_model is None and other.processor is None
        assert other.model == llm.model
    assert llm.torch_model is not None
    (output,) = replica.generate([[user(picture("red"), "hi")]])  # loads its own weights
    assert isinstance(output["generations"][0], str)
    assert replica.torch_model is not llm.torch_model
    replica.unload()


def test_model_name_is_the_model_string(tiny_models: TinyModels) -> None:
    assert TransformersLLM(model=str(tiny_models.vlm)).model_name == str(tiny_models.vlm)
    assert TransformersLLM(model="org/some-vlm").model_name == "org/some-vlm"


def test_device_and_dtype_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is not None or not torch.backends.mps.is_available():
        assert resolve_device(None) == (expected or "cpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bf16", "cpu") is torch.bfloat16
    assert resolve_dtype("float16", "cuda") is torch.float16
    assert resolve_dtype("torch.float32", "cpu") is torch.float32
    with pytest.raises(ValueError, match="unknown torch_dtype"):
        resolve_dtype("int4ish", "cpu")


def test_a_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pixtill\[local\]"):
        import_torch()
    with pytest.raises(ImportError, match="torch first"):
        TransformersLLM(model="x").load()


def test_importing_pixtill_needs_no_torch() -> None:
    import subprocess

    code = (
        "import sys, pixtill, pixtill.demo, pixtill.tiny_models, "
        "pixtill.models.llms.transformers, pixtill.models.image_generation.diffusers\n"
        "loaded = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
