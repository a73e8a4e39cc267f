"""The tiny offline models: what they hold, built once, atomically, reproducibly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from local_models import TinyModels, offline, tiny_models
from pixtill import tiny_models as tiny
from pixtill.tiny_models import (
    VLM_IMAGE_TOKENS,
    build_tiny_text_to_image,
    build_tiny_vlm,
    ensure_tiny_models,
)

pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline, tiny_models)  # imported for pytest; named here so linters see them used


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_vlm_processor_expands_images_and_renders_chats(tiny_models: TinyModels) -> None:
    from transformers import AutoProcessor, CLIPImageProcessorPil

    processor = AutoProcessor.from_pretrained(tiny_models.vlm)
    assert isinstance(processor.image_processor, CLIPImageProcessorPil)
    chat = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A dot."}]},
        {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
    ]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<s><|system|>\nBe brief.<|end|>\n<|user|>\n<image>What?<|end|>\n"
        "<|assistant|>\nA dot.<|end|>\n<|user|>\nSure?<|end|>\n<|assistant|>\n"
    )
    encoded = processor(
        text=[text],
        images=[[Image.new("RGB", (50, 20), "red")]],
        add_special_tokens=False,
        return_tensors="pt",
    )
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert encoded["input_ids"][0].tolist().count(image_token) == VLM_IMAGE_TOKENS == 25
    assert tuple(encoded["pixel_values"].shape[-2:]) == (30, 30)
    sentence = "A red circle on a white background."
    ids = processor.tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert processor.tokenizer.decode(ids) == sentence


def test_text_to_image_tokenizer_knows_every_byte(tiny_models: TinyModels) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_models.text_to_image / "tokenizer")
    ids = tokenizer("A Red circle, ünïcode & 42!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.model_max_length == 32
    index = json.loads((tiny_models.text_to_image / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]


def test_builds_are_reproducible(tmp_path: Path, tiny_models: TinyModels) -> None:
    build_tiny_vlm(tmp_path / "vlm")
    build_tiny_text_to_image(tmp_path / "t2i")
    marker = ".pixtill-tiny-model"
    expected_vlm = {k: v for k, v in digest(tiny_models.vlm).items() if k != marker}
    expected_t2i = {k: v for k, v in digest(tiny_models.text_to_image).items() if k != marker}
    assert digest(tmp_path / "vlm") == expected_vlm
    assert digest(tmp_path / "t2i") == expected_t2i


def test_ensure_builds_once_under_the_cache_folder(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXTILL_CACHE_DIR", str(tiny_models.cache))

    def refuse(folder: Path) -> Path:
        raise AssertionError("rebuilt a model that was already built")

    monkeypatch.setattr(tiny, "build_tiny_vlm", refuse)
    monkeypatch.setattr(tiny, "build_tiny_text_to_image", refuse)
    assert ensure_tiny_models() == (tiny_models.vlm, tiny_models.text_to_image)
    assert tiny_models.vlm.parent == tiny_models.cache / "tiny-models"


def fake_builder(calls: list[Path], fail: bool = False):  # type: ignore[no-untyped-def]
    def build(folder: Path) -> Path:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(b"\x00" * 8)
        if fail:
            raise RuntimeError("power cut")
        return folder

    return build


def test_a_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(tiny, "build_tiny_vlm", fake_builder(calls, fail=True))
    with pytest.raises(RuntimeError, match="power cut"):
        ensure_tiny_models(tmp_path)
    assert calls and calls[0].parent == tmp_path  # built beside the target, then renamed
    assert list(tmp_path.iterdir()) == []


def test_a_stale_or_unfinished_folder_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(tiny, "build_tiny_vlm", fake_builder(calls))
    monkeypatch.setattr(tiny, "build_tiny_text_to_image", fake_builder(calls))
    stale = tmp_path / f"vlm-v{tiny.TINY_MODELS_VERSION}"
    stale.mkdir()
    (stale / "half-written").write_text("")
    vlm, t2i = ensure_tiny_models(tmp_path)
    assert vlm == stale and len(calls) == 2
    assert sorted(p.name for p in vlm.iterdir()) == [".pixtill-tiny-model", "weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [t2i.name, vlm.name]
    assert ensure_tiny_models(tmp_path) == (vlm, t2i)
    assert len(calls) == 2  # the second call reused both
