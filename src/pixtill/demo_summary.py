"""What ``pixtill demo`` prints at the end: where everything went, the first row, and a note
when the models are random."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixtill.demo_pipeline import EXAMPLE_IMAGE_MODEL, EXAMPLE_VLM, LEAF


def leaf_rows(distiset: Any, leaf: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """A leaf's rows (only ``columns``); none when the leaf produced no rows."""
    if leaf not in distiset:
        return []
    dataset = distiset[leaf]
    return list(dataset.select_columns([c for c in columns if c in dataset.column_names]))


def first_row(dataset: Any) -> dict[str, Any]:
    if len(dataset) == 0:
        return {}
    row = dataset.select_columns(
        [c for c in ("path", "caption", "answer", "image_prompt") if c in dataset.column_names]
    )[0]
    return dict(row)


def print_summary(
    *,
    rows: int,
    failed: int,
    columns: list[str],
    images_dir: Path,
    dataset_dir: Path,
    leaves: list[str],
    parquet_file: Path,
    vlm_model: str,
    image_model: str,
    random_vlm: bool,
    random_image: bool,
    first: dict[str, Any],
) -> None:
    leaf_dir = dataset_dir / LEAF
    lines = [
        "",
        "pixtill demo: done",
        f"  rows:            {rows} ({failed} without a generated image)",
        f"  columns:         {', '.join(columns)}",
        f"  sample images:   {images_dir}",
        f"  dataset:         {dataset_dir}   (a folder per leaf step: {', '.join(leaves)})",
        f"  parquet:         {parquet_file}",
        f"  vision model:    {vlm_model}",
        f"  image model:     {image_model}",
        "",
        "look at it in your browser:",
        f"  pixtill view {dataset_dir}",
        "",
        "open it in Python:",
        "  from pixtill.distiset import Distiset",
        f'  ds = Distiset.load_from_disk("{dataset_dir}")["{LEAF}"]',
        "  # or with datasets alone:",
        "  import datasets",
        f'  ds = datasets.load_from_disk("{leaf_dir}")',
        '  ds[0]["image"], ds[0]["generated_image"]   # PIL images',
    ]
    if first:
        lines += ["", "first row:"]
        lines += [f"  {key}: {value!r}" for key, value in first.items()]
    if random_vlm or random_image:
        which = " and ".join(
            name
            for name, used in (("vision-language", random_vlm), ("text-to-image", random_image))
            if used
        )
        lines += [
            "",
            f"NOTE: the default {which} model{'s have' if random_vlm and random_image else ' has'}"
            " RANDOM weights: the captions and answers are gibberish and the generated images are"
            " noise. The point is to show the pipeline end to end, offline, in seconds. For real"
            " output pass real models, e.g.:",
            f"  pixtill demo --vlm {EXAMPLE_VLM} --image-model {EXAMPLE_IMAGE_MODEL}",
        ]
    print("\n".join(lines), flush=True)
