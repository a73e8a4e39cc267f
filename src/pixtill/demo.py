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
import sys
from contextlib import ExitStack
from pathlib import Path

from pixtill.demo_environment import (
    progress_observer,
    quiet_datasets,
    quiet_model_libraries,
    torch_threads,
)
from pixtill.demo_images import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    draw_shape,
    write_sample_images,
)
from pixtill.demo_pipeline import (
    EXAMPLE_IMAGE_MODEL,
    EXAMPLE_VLM,
    LEAF,
    REAL_IMAGE_KWARGS,
    REAL_VLM_KWARGS,
    TINY_IMAGE_KWARGS,
    TINY_VLM_KWARGS,
    ImagePrompt,
    build_pipeline,
)
from pixtill.demo_quality import DROPPED_LEAF, KEPT_LEAF, summary_lines, write_documents
from pixtill.demo_summary import first_row, leaf_rows, print_summary

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "DEFAULT_OUTPUT",
    "DEFAULT_ROWS",
    "EXAMPLE_IMAGE_MODEL",
    "EXAMPLE_VLM",
    "LEAF",
    "REAL_IMAGE_KWARGS",
    "REAL_VLM_KWARGS",
    "SHAPES",
    "TINY_IMAGE_KWARGS",
    "TINY_VLM_KWARGS",
    "ImagePrompt",
    "add_arguments",
    "build_pipeline",
    "draw_shape",
    "main",
    "run",
    "write_sample_images",
]

DEFAULT_OUTPUT = Path("pixtill-output") / "demo"
DEFAULT_ROWS = 6


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

    with quiet_model_libraries():
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
        observer = progress_observer(pipeline, dataset_dir, not args.no_progress)
        with ExitStack() as stack:
            if observer is not None:
                stack.enter_context(observer)
            if args.vlm is None and args.image_model is None:
                stack.enter_context(torch_threads(1))
            distiset = pipeline.run(
                use_cache=False,
                output_dir=dataset_dir,
                observer=observer,
                show_progress=not args.no_progress,
            )

    # The main leaf first (leaves come in the order they finished): viewers open it first.
    for name in [n for n in distiset if n != LEAF]:
        distiset[name] = distiset.pop(name)
    with quiet_datasets():
        distiset.save_to_disk(dataset_dir)
        parquet_files = distiset.to_parquet(parquet_dir)
    dataset = distiset[LEAF]
    failed = int(dataset.with_format("arrow")["generated_image"].null_count)
    print_summary(
        rows=len(dataset),
        failed=failed,
        columns=list(dataset.column_names),
        images_dir=images_dir,
        dataset_dir=dataset_dir,
        leaves=list(distiset),
        parquet_file=parquet_files[LEAF],
        vlm_model=vlm_model,
        image_model=image_model,
        random_vlm=args.vlm is None,
        random_image=args.image_model is None,
        first=first_row(dataset),
    )
    kept, dropped = (
        leaf_rows(
            distiset,
            leaf,
            ("path", "expected_text", "ocr_text", "text_fidelity", "judge_score", "drop_reason"),
        )
        for leaf in (KEPT_LEAF, DROPPED_LEAF)
    )
    print("\n".join(summary_lines(kept, dropped, dataset_dir)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixtill.demo",
        description="Caption sample images, ask about them and paint new ones, with local models.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
