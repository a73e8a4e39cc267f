"""Offline example: caption sample images, ask a question about each, and draw an image back.

It runs with nothing but a fresh install and no network. The two "models" below are small
custom backends written for this example: a vision model that actually measures the pixels it is
sent (size, dominant colour, brightness) and an image model that paints what a caption names.
They show how to plug your own backend into pixtill; swap them for `OpenAILLM`,
`InferenceEndpointsLLM` or a local model to get real captions.

    python examples/caption_sample_images.py [--output DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageStat

from pixtill.images import ImageRef
from pixtill.models.image_generation import AsyncImageGenerationModel, ImageGenerationOutput
from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import ImageGeneration, TextGenerationWithImage

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ["circle", "square", "triangle"]


def nearest_colour(rgb: tuple[float, ...]) -> str:
    return min(COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], rgb)))


def draw_sample(shape: str, colour: str, background: str, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, COLOURS[background])
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon(
            [(w // 2, h // 6), (w // 6, 5 * h // 6), (5 * w // 6, 5 * h // 6)], fill=COLOURS[colour]
        )
    return image


class PixelStatsVLM(AsyncLLM):
    """Answers from measurements of the image it is sent, not from learned weights."""

    @property
    def model_name(self) -> str:
        return "example/pixel-stats"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        content = input[-1]["content"]
        question = " ".join(p["text"] for p in content if p["type"] == "text")
        # Images arrive as OpenAI `image_url` parts (a URL or a data URL); `from_value` takes
        # the reference the task attached to it instead of decoding the base64 again.
        refs = [
            ImageRef.from_value(p["image_url"]["url"]) for p in content if p["type"] == "image_url"
        ]
        facts = []
        for ref in refs:
            image = ref.to_pil().convert("RGB")
            small = image.resize((32, 32))
            counts: Counter[str] = Counter()
            for count, pixel in small.getcolors(32 * 32) or []:
                counts[nearest_colour(pixel)] += count
            dominant = counts.most_common(2)
            brightness = sum(ImageStat.Stat(image).mean) / 3
            facts.append(
                f"a {image.width}x{image.height} {ref.format} image, mostly {dominant[0][0]}"
                + (f" with {dominant[1][0]}" if len(dominant) > 1 else "")
                + f", {'bright' if brightness > 128 else 'dark'} (mean level {brightness:.0f})"
            )
        answer = f"Q: {question} A: " + "; ".join(facts)
        return {
            "generations": [answer] * num_generations,
            "statistics": {
                "input_tokens": [len(question.split())] * num_generations,
                "output_tokens": [len(answer.split())] * num_generations,
            },
        }


class CaptionPainter(AsyncImageGenerationModel):
    """Paints the colours a caption names, as stripes."""

    size: int = 96

    @property
    def model_name(self) -> str:
        return "example/caption-painter"

    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        named = [c for c in COLOURS if c in input.lower()] or ["white"]
        outputs: list[ImageGenerationOutput] = []
        for k in range(num_generations):
            image = Image.new("RGB", (self.size, self.size))
            draw = ImageDraw.Draw(image)
            stripe = self.size / len(named)
            for i, name in enumerate(named[k:] + named[:k]):
                draw.rectangle((i * stripe, 0, (i + 1) * stripe, self.size), fill=COLOURS[name])
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            outputs.append({"images": [base64.b64encode(buffer.getvalue()).decode()]})
        return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("pixtill-output/example"))
    args = parser.parse_args()
    out: Path = args.output
    images_dir = out / "sample-images"
    images_dir.mkdir(parents=True, exist_ok=True)

    seeds = []
    for i, (shape, colour, background) in enumerate(
        [
            ("circle", "red", "white"),
            ("square", "blue", "yellow"),
            ("triangle", "green", "black"),
            ("circle", "purple", "orange"),
            ("square", "yellow", "green"),
            ("triangle", "white", "blue"),
        ]
    ):
        path = images_dir / f"{i:02d}-{colour}-{shape}.{'png' if i % 2 else 'jpg'}"
        draw_sample(shape, colour, background, (160 + 16 * i, 120)).save(path)
        seeds.append({"image": str(path), "shape_hint": shape})

    # Steps are declared inside the pipeline, which runs them: rows stream from step to step,
    # finished rows are cached (a second run answers from ``out/cache``), and the dataset is
    # written with real image columns.
    with Pipeline(name="caption-sample-images", cache_dir=out / "cache") as pipeline:
        loader = LoadDataFromDicts(name="seeds", data=seeds)
        caption = TextGenerationWithImage(
            name="caption",
            llm=PixelStatsVLM(),
            template="Describe this image.",
            columns=[],
            image_type="path",
            output_mappings={"generation": "caption", "model_name": "caption_model"},
        )
        question = TextGenerationWithImage(
            name="question",
            llm=PixelStatsVLM(),
            image_type="path",
            template="What colour is the {{ shape_hint }}?",
            columns=["shape_hint"],
            output_mappings={"generation": "answer", "model_name": "answer_model"},
        )
        painter = ImageGeneration(
            name="paint",
            image_generation_model=CaptionPainter(),
            save_artifacts=True,
            artifacts_directory=out / "artifacts",
            input_mappings={"prompt": "caption"},
            output_mappings={"image": "generated_image", "model_name": "image_model"},
        )
        loader >> caption >> question >> painter
    distiset = pipeline.run(output_dir=out / "dataset", show_progress=False)

    rows = distiset["paint"]
    failures = sum(1 for r in rows if r["caption"] is None or r["image_path"] is None)
    print(f"{len(rows)} rows, {failures} failed; dataset: {(out / 'dataset').resolve()}")
    print(f"generated images: {(out / 'artifacts' / 'images').resolve()}")
    first = rows[0]
    print(
        "first row:",
        json.dumps({k: first[k] for k in ("caption", "answer", "image_path")}, indent=2),
    )
    print(f"look at it with: pixtill view {out / 'dataset'}")


if __name__ == "__main__":
    main()
