"""`pixtill demo`: a whole multimodal pipeline, end to end, on local models.

It draws a handful of sample images (coloured shapes), then runs a `Pipeline` that

1. captions each image with a vision-language model (`TextGenerationWithImage` -> ``caption``),
2. asks it a question about each image (``question`` column -> ``answer``),
3. paints a new image from each caption with a text-to-image model (-> ``generated_image``),

and saves the result as a Hugging Face dataset (``save_to_disk``, with real ``Image`` columns)
and as Parquet. With no ``--vlm`` / ``--image-model`` it uses two tiny models built on the spot
(`pixtill.tiny_models`): no network, a few seconds on a laptop CPU, but RANDOM weights, so the
text is gibberish and the images are noise. Point it at real models to get real output::

    pixtill demo --vlm HuggingFaceTB/SmolVLM-256M-Instruct --image-model segmind/tiny-sd

    python -m pixtill.demo --output /tmp/demo --rows 3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pixtill.demo_quality import DROPPED_LEAF, KEPT_LEAF, summary_lines, write_documents
from pixtill.steps.base import Step, StepInput
from pixtill.steps.typing import StepColumns, StepOutput

DEFAULT_OUTPUT = Path("pixtill-output") / "demo"
DEFAULT_ROWS = 6
LEAF = "paint"

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

# Generation settings. The tiny random models get few tokens and denoising steps: their output
# means nothing, and this keeps the demo to seconds on two CPU cores.
TINY_VLM_KWARGS: dict[str, Any] = {"max_new_tokens": 16}
TINY_IMAGE_KWARGS: dict[str, Any] = {"num_inference_steps": 4, "width": 64, "height": 64, "seed": 0}
EXAMPLE_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
EXAMPLE_IMAGE_MODEL = "segmind/tiny-sd"
REAL_VLM_KWARGS: dict[str, Any] = {"max_new_tokens": 64}
REAL_IMAGE_KWARGS: dict[str, Any] = {"seed": 0}


# -- sample images -----------------------------------------------------------------------------


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


# -- the pipeline ------------------------------------------------------------------------------


class ImagePrompt(Step):
    """The image model's prompt: the caption, or ``"a <colour> <shape>"`` when the caption is
    empty or failed.

    A vision model may return an empty caption (a random model can stop at once; a real one can
    fail on a row), and `ImageGeneration` refuses an empty prompt as a row error. The demo wants
    an image on every row, so it falls back to the facts it drew; ``prompt_source`` says which.
    """

    @property
    def inputs(self) -> StepColumns:
        return {"caption": True, "shape": False, "colour": False}

    @property
    def outputs(self) -> StepColumns:
        return ["image_prompt", "prompt_source"]

    def process(self, inputs: StepInput) -> StepOutput:
        rows = []
        for row in inputs:
            caption = row.get("caption")
            if isinstance(caption, str) and caption.strip():
                prompt, source = caption.strip(), "caption"
            else:
                prompt = f"a {row.get('colour') or 'colourful'} {row.get('shape') or 'shape'}"
                source = "fallback"
            rows.append({**row, "image_prompt": prompt, "prompt_source": source})
        yield rows


def build_pipeline(
    images_dir: Path,
    work_dir: Path,
    vlm_model: str,
    image_model: str,
    *,
    vlm_kwargs: dict[str, Any],
    image_kwargs: dict[str, Any],
    documents_dir: Path | None = None,
) -> Any:
    """The demo's `Pipeline`: load images >> caption >> answer >> image prompt >> paint, and,
    with ``documents_dir``, the quality branch of `pixtill.demo_quality` beside it."""
    from pixtill.models.image_generation.diffusers import DiffusersImageGeneration
    from pixtill.models.llms.transformers import TransformersLLM
    from pixtill.pipeline import Pipeline
    from pixtill.steps.generators.images_folder import LoadImagesFromFolder
    from pixtill.steps.tasks import ImageGeneration, TextGenerationWithImage

    # One model instance for both text tasks: loaded once, and its lock keeps the two tasks
    # from running it at the same time.
    vlm = TransformersLLM(model=vlm_model, generation_kwargs=vlm_kwargs)
    painter = DiffusersImageGeneration(model=image_model, generation_kwargs=image_kwargs)
    with Pipeline(name="pixtill-demo", cache_dir=work_dir) as pipeline:
        load = LoadImagesFromFolder(name="load_images", folder=images_dir, batch_size=8)
        caption = TextGenerationWithImage(
            name="caption",
            llm=vlm,
            template="Describe this image in one sentence.",
            columns=[],
            input_batch_size=8,
            output_mappings={"generation": "caption", "model_name": "caption_model"},
        )
        answer = TextGenerationWithImage(
            name="answer",
            llm=vlm,
            template="{{ question }}",
            columns=["question"],
            input_batch_size=8,
            output_mappings={"generation": "answer", "model_name": "answer_model"},
        )
        prompt = ImagePrompt(name="image_prompt", input_batch_size=8)
        paint = ImageGeneration(
            name=LEAF,
            image_generation_model=painter,
            input_batch_size=8,
            input_mappings={"prompt": "image_prompt"},
            output_mappings={"image": "generated_image", "model_name": "image_model"},
        )
        load >> caption
        caption >> answer
        answer >> prompt
        prompt >> paint
        if documents_dir is not None:
            from pixtill.demo_quality import build_branch

            build_branch(documents_dir)
    return pipeline


@contextmanager
def _quiet_model_libraries() -> Iterator[None]:
    """Silence transformers' and diffusers' loading bars and notices during the demo (the
    pipeline's own progress shows what happens); restore their settings afterwards."""
    with ExitStack() as stack:
        for name in ("transformers", "diffusers"):
            try:
                module: Any = __import__(f"{name}.utils", fromlist=["logging"]).logging
            except ImportError:
                continue
            verbosity = module.get_verbosity()
            bars = module.is_progress_bar_enabled()
            module.set_verbosity_error()
            module.disable_progress_bar()
            stack.callback(module.set_verbosity, verbosity)
            if bars:
                stack.callback(module.enable_progress_bar)
        yield


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch limited to ``count`` threads per operation, restored afterwards.

    For the tiny models only: their matrices are too small to gain from threads, and the
    steps run at the same time in worker threads, so torch's thread pools would fight over
    the cores (on 2 cores that makes the run several times slower).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No "Saving the dataset" bars: the summary says where it went."""
    import datasets  # type: ignore[import-untyped,unused-ignore]

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _observer(pipeline: Any, dataset_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from pixtill.pipeline.rich_progress import RichProgress
    except ImportError:
        return None
    return RichProgress(pipeline=pipeline, dataset_path=dataset_dir)


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"folder for the sample images, the dataset and Parquet (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--vlm",
        metavar="MODEL",
        default=None,
        help="vision-language model: a hub id (e.g. HuggingFaceTB/SmolVLM-256M-Instruct) or a "
        "folder; default: a tiny random offline model",
    )
    parser.add_argument(
        "--image-model",
        metavar="MODEL",
        default=None,
        help="text-to-image diffusers model: a hub id (e.g. segmind/tiny-sd) or a folder; "
        "default: a tiny random offline model",
    )
    parser.add_argument(
        "--rows",
        type=_positive_int,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"how many sample images to draw (default: {DEFAULT_ROWS})",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars or summary table"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 on success."""
    output = Path(args.output).expanduser().absolute()
    rows: int = args.rows
    images_dir = output / "sample-images"
    dataset_dir = output / "dataset"
    parquet_dir = output / "parquet"
    work_dir = output / ".pipeline"

    write_sample_images(images_dir, rows)
    print(f"drew {rows} sample images in {images_dir}", flush=True)
    documents_dir = output / "documents"
    documents = write_documents(documents_dir)
    print(f"drew {len(documents)} documents and signs in {documents_dir}", flush=True)

    with _quiet_model_libraries():
        tiny_vlm = tiny_image = None
        if args.vlm is None or args.image_model is None:
            from pixtill.tiny_models import ensure_tiny_models

            print("using the tiny offline models (built on first use)...", flush=True)
            tiny_vlm, tiny_image = ensure_tiny_models()
        vlm_model = args.vlm or str(tiny_vlm)
        image_model = args.image_model or str(tiny_image)
        pipeline = build_pipeline(
            images_dir,
            work_dir,
            vlm_model,
            image_model,
            vlm_kwargs=dict(TINY_VLM_KWARGS if args.vlm is None else REAL_VLM_KWARGS),
            image_kwargs=dict(TINY_IMAGE_KWARGS if args.image_model is None else REAL_IMAGE_KWARGS),
            documents_dir=documents_dir,
        )
        observer = _observer(pipeline, dataset_dir, not args.no_progress)
        with ExitStack() as stack:
            if observer is not None:
                stack.enter_context(observer)
            if args.vlm is None and args.image_model is None:
                stack.enter_context(_torch_threads(1))
            distiset = pipeline.run(
                use_cache=False, output_dir=work_dir / "data", observer=observer
            )

    # The main leaf first (leaves come in the order they finished): viewers open it first.
    for name in [n for n in distiset if n != LEAF]:
        distiset[name] = distiset.pop(name)
    with _quiet_datasets():
        distiset.save_to_disk(dataset_dir)
        parquet_files = distiset.to_parquet(parquet_dir)
    dataset = distiset[LEAF]
    failed = int(dataset.with_format("arrow")["generated_image"].null_count)
    _print_summary(
        rows=len(dataset),
        failed=failed,
        columns=list(dataset.column_names),
        images_dir=images_dir,
        dataset_dir=dataset_dir,
        parquet_file=parquet_files[LEAF],
        vlm_model=vlm_model,
        image_model=image_model,
        random_vlm=args.vlm is None,
        random_image=args.image_model is None,
        first=_first_row(dataset),
    )
    kept, dropped = (
        _rows(
            distiset,
            leaf,
            ("path", "expected_text", "ocr_text", "text_fidelity", "judge_score", "drop_reason"),
        )
        for leaf in (KEPT_LEAF, DROPPED_LEAF)
    )
    print("\n".join(summary_lines(kept, dropped, dataset_dir)), flush=True)
    return 0


def _rows(distiset: Any, leaf: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """A leaf's rows (only ``columns``); none when the leaf produced no rows."""
    if leaf not in distiset:
        return []
    dataset = distiset[leaf]
    return list(dataset.select_columns([c for c in columns if c in dataset.column_names]))


def _first_row(dataset: Any) -> dict[str, Any]:
    if len(dataset) == 0:
        return {}
    row = dataset.select_columns(
        [c for c in ("path", "caption", "answer", "image_prompt") if c in dataset.column_names]
    )[0]
    return dict(row)


def _print_summary(
    *,
    rows: int,
    failed: int,
    columns: list[str],
    images_dir: Path,
    dataset_dir: Path,
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
        f"  dataset:         {dataset_dir}   (one folder per leaf step: {LEAF}/)",
        f"  parquet:         {parquet_file}",
        f"  vision model:    {vlm_model}",
        f"  image model:     {image_model}",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixtill.demo",
        description="Caption sample images, ask about them and paint new ones, with local models.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
