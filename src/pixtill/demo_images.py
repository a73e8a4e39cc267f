"""The demo's sample images: coloured shapes on plain backgrounds, with a ``metadata.jsonl``
that `LoadImagesFromFolder` reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "pentagon")


def _samples(rows: int) -> Iterator[tuple[str, str, str]]:
    """(shape, colour, background) for each row: every shape and colour shows up early, and
    the first 24 rows are all different pairs of shape and colour."""
    colours, backgrounds = list(COLOURS), list(BACKGROUNDS)
    for i in range(rows):
        # i % 4 and i % 6 repeat together after 12 rows; the shift gives the other 12 pairs.
        shape = SHAPES[i % len(SHAPES)]
        colour = colours[(i + (i // 12) % 2) % len(colours)]
        yield shape, colour, backgrounds[i % len(backgrounds)]


def draw_shape(shape: str, colour: str, background: str, size: tuple[int, int]) -> Image.Image:
    """A ``colour`` ``shape`` centred on a plain ``background``."""
    image = Image.new("RGB", size, BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    w, h = size
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((w // 5, h // 5, 4 * w // 5, 4 * h // 5), fill=fill)
    elif shape == "square":
        side = min(w, h) * 3 // 5
        left, top = (w - side) // 2, (h - side) // 2
        draw.rectangle((left, top, left + side, top + side), fill=fill)
    elif shape == "triangle":
        draw.polygon([(w // 2, h // 6), (w // 6, 5 * h // 6), (5 * w // 6, 5 * h // 6)], fill=fill)
    else:
        draw.regular_polygon((w / 2, h / 2, min(w, h) * 0.4), 5, fill=fill)
    return image


def write_sample_images(folder: Path, rows: int) -> list[dict[str, Any]]:
    """Draw ``rows`` images into ``folder`` with a ``metadata.jsonl`` (shape, colour and a
    question per image) that `LoadImagesFromFolder` reads; return the metadata records."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():  # a previous run's images, which may have been more
        if old.is_file() and old.suffix in (".png", ".jpg", ".jsonl"):
            old.unlink()
    records = []
    for index, (shape, colour, background) in enumerate(_samples(rows)):
        extension = "jpg" if index % 2 else "png"
        name = f"{index:03d}-{colour}-{shape}.{extension}"
        draw_shape(shape, colour, background, (128 + 16 * (index % 4), 96)).save(folder / name)
        records.append(
            {
                "file_name": name,
                "shape": shape,
                "colour": colour,
                "background": background,
                "question": f"What colour is the {shape}, and what is behind it?",
            }
        )
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    return records
