"""Generate images from prompts from Python, with the backend of your choice.

    python examples/generate_images.py --backend openai       # OPENAI_API_KEY
    python examples/generate_images.py --backend hf           # HF_TOKEN or `hf auth login`
    python examples/generate_images.py --backend diffusers    # in-process, needs torch

Options: ``--model``, ``--base-url`` (another server), ``--output`` (default:
pixtill-output/images). Then look at the result with ``pixtill view <output>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import ImageGeneration

PROMPTS = [
    "a white siamese cat asleep on a red cushion, soft light",
    "a lighthouse on a cliff at dusk, watercolour",
]


def _openai(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.image_generation import OpenAIImageGeneration

    options = {"base_url": base_url} if base_url else {}
    return OpenAIImageGeneration(model=model or "dall-e-3", **options)


def _hf(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.image_generation import InferenceEndpointsImageGeneration

    if base_url:  # the full URL to POST to
        return InferenceEndpointsImageGeneration(base_url=base_url)
    return InferenceEndpointsImageGeneration(model_id=model or "black-forest-labs/FLUX.1-schnell")


def _diffusers(model: str | None, base_url: str | None) -> Any:
    from pixtill.models.image_generation import DiffusersImageGeneration

    return DiffusersImageGeneration(
        model=model or "segmind/tiny-sd", generation_kwargs={"num_inference_steps": 20, "seed": 0}
    )


BACKENDS: dict[str, Callable[[str | None, str | None], Any]] = {
    "openai": _openai,
    "hf": _hf,
    "diffusers": _diffusers,
}


def main(argv: list[str] | None = None) -> Distiset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="openai")
    parser.add_argument("--model", default=None)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--output", type=Path, default=Path("pixtill-output") / "images")
    args = parser.parse_args(argv)
    with Pipeline(name=f"images-{args.backend}") as pipeline:
        prompts = LoadDataFromDicts(name="prompts", data=[{"prompt": p} for p in PROMPTS])
        paint = ImageGeneration(
            name="paint", image_generation_model=BACKENDS[args.backend](args.model, args.base_url)
        )
        prompts >> paint
    distiset = pipeline.run()
    distiset.save_to_disk(args.output)
    print(
        f"{len(distiset['paint'])} images saved to {args.output}; "
        f"look at them with: pixtill view {args.output}"
    )
    return distiset


if __name__ == "__main__":
    main()
