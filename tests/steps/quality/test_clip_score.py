"""`CLIPScore` on a tiny random CLIP built here (no download)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from local_models import offline
from pixtill.run_report import summarize_failures
from pixtill.steps.quality import CLIPScore
from quality_doubles import png

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("offline")
_FIXTURES = (offline,)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from pixtill.tiny_models import ensure_tiny_clip

    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub.constants

        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield ensure_tiny_clip(tmp_path_factory.getbasetemp() / "tiny-clip")


def test_scores_are_batched_on_the_0_100_scale_and_match_one_by_one(tiny_clip: Path) -> None:
    import torch

    rows = [
        {"image": png("red"), "text": "a red circle"},
        {"image": png("blue", (40, 20)), "text": "a blue square on a yellow background"},
        {"image": png("green"), "text": "a green triangle " * 30},  # longer than the context
    ]
    step = CLIPScore(name="clip", model=str(tiny_clip), batch_size=2, device="cpu")
    step.load()
    (out,) = step.process_applying_mappings(rows)
    scores = [r["clip_score"] for r in out]
    assert all(isinstance(s, float) and 0.0 <= s <= 100.0 for s in scores)
    # The same numbers one pair at a time, and by hand from the embeddings.
    single = CLIPScore(name="one", model=str(tiny_clip), batch_size=1, device="cpu")
    single.load()
    (alone,) = single.process_applying_mappings(rows)
    assert [r["clip_score"] for r in alone] == pytest.approx(scores, abs=1e-3)
    loaded = step._loaded
    batch = loaded.processor(
        text=[rows[0]["text"]],
        images=[Image.open(io.BytesIO(rows[0]["image"]))],
        return_tensors="pt",
        padding=True,
    )
    with torch.inference_mode():
        image = loaded.model.get_image_features(pixel_values=batch["pixel_values"])
        text = loaded.model.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    cosine = torch.nn.functional.cosine_similarity(image, text).item()
    assert scores[0] == pytest.approx(100 * max(cosine, 0.0), abs=1e-3)
    step.unload()
    single.unload()
    assert step._loaded.model is None


def test_a_bad_row_fails_alone_and_mappings_apply(tiny_clip: Path) -> None:
    step = CLIPScore(
        name="clip", model=str(tiny_clip), device="cpu", input_mappings={"text": "prompt"}
    )
    step.load()
    (out,) = step.process_applying_mappings(
        [
            {"image": b"broken", "prompt": "x", "pixtill_metadata": {}},
            {"image": png("red"), "prompt": None},
            {"image": png("red"), "prompt": "a red circle"},
        ]
    )
    step.unload()
    assert out[0]["clip_score"] is None and out[1]["clip_score"] is None
    assert "step 'clip': row 0" in out[0]["pixtill_metadata"]["error_clip"]
    assert "column 'text': expected a string" in out[1]["pixtill_metadata"]["error_clip"]
    assert isinstance(out[2]["clip_score"], float)
    assert "prompt" in out[2] and "text" not in out[2]
    # The row's own values could not be used: grouped as input failures, not "unknown".
    assert out[0]["pixtill_metadata"]["failure_clip"] == {"kind": "input", "status": None}
    assert summarize_failures(out).by_kind == {"input": 2}


def test_a_row_whose_metadata_is_not_a_dict_fails_alone(tiny_clip: Path) -> None:
    step = CLIPScore(name="clip", model=str(tiny_clip), device="cpu")
    step.load()
    (out,) = step.process(
        [
            {"image": png("red"), "text": "a red circle", "pixtill_metadata": "junk"},
            {"image": png("red"), "text": "a red circle", "pixtill_metadata": [1, 2]},
            {"image": png("red"), "text": "a red circle", "pixtill_metadata": '{"a": 1}'},
        ]
    )
    step.unload()
    for index in (0, 1):
        assert out[index]["clip_score"] is None
        assert out[index]["pixtill_metadata"]["error_clip"].startswith(
            f"step 'clip': row {index}, column 'pixtill_metadata': must be a dict"
        )
    assert isinstance(out[2]["clip_score"], float)
