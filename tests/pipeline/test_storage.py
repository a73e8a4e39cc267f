"""A run stores each image's bytes once: dataset plus cache within 1.1x the image bytes, the
dataset in its own folder (apart from the cache), readable back without a copy."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from doubles import DescribingLLM
from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadImagesFromFolder
from pixtill.steps.tasks import TextGenerationWithImage


def _noise_pngs(folder: Path, count: int) -> int:
    """Incompressible PNGs (~30 KB each); returns their total size."""
    folder.mkdir(parents=True)
    total = 0
    for i in range(count):
        path = folder / f"{i:03d}.png"
        Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3)).save(path)
        total += path.stat().st_size
    return total


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_images_are_stored_once_and_apart_from_the_cache(tmp_path: Path) -> None:
    image_bytes = _noise_pngs(tmp_path / "images", 60)
    with Pipeline(name="once", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadImagesFromFolder(folder=str(tmp_path / "images"), batch_size=16)
        load >> TextGenerationWithImage(
            name="caption", llm=DescribingLLM(), template="Hi.", columns=[]
        )
    distiset = pipeline.run(show_progress=False, rows_per_shard=25)
    output = Path(os.environ["PIXTILL_DATA_DIR"]) / "datasets" / "once"
    assert (output / "caption").is_dir()
    assert not (tmp_path / "cache" / "data").exists()
    stored = _size(output) + _size(tmp_path / "cache")
    assert stored <= 1.1 * image_bytes, f"{stored / image_bytes:.2f}x the image bytes"
    assert distiset["caption"][59]["image"].size == (100, 100)
    again = Distiset.load_from_disk(output)["caption"]
    assert again["generation"] == distiset["caption"]["generation"]
    distiset.save_to_disk(output)  # already there: nothing is copied
    assert _size(output) + _size(tmp_path / "cache") == stored
