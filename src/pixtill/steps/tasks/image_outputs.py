"""What the image tasks (text-to-image `ImageGeneration`, `ImageEditing`) share: calling an
image model with canonical requests for one row or a batch, the image column's value, and
content-named artifacts."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from pixtill.errors import ModelUnavailableError
from pixtill.images import ImageRef
from pixtill.models.image_generation.utils import image_from_str, image_to_str
from pixtill.models.image_model import AsyncImageModel, ImageModel
from pixtill.models.request import ModelRequest
from pixtill.models.results import ModelResult
from pixtill.paths import cache_dir, write_atomically
from pixtill.steps.tasks.results import GenerationResult, failure_of, results_of_images

__all__ = [
    "agenerate_image_results",
    "first_image",
    "generate_image_results",
    "image_request",
    "save_image_artifact",
]


def image_request(
    model: ImageModel[Any], formatted: Any, num_generations: int
) -> ModelRequest[Any]:
    """The canonical request of one formatted row (a prompt, or an edit) with the model's
    generation settings."""
    return ModelRequest.of_call(formatted, num_generations, model.get_generation_kwargs())


async def agenerate_image_results(
    model: AsyncImageModel[Any], request: ModelRequest[Any], step: str
) -> list[GenerationResult]:
    """One row's ``request.n`` results from an async image model. A failed request becomes
    failed results (the row's problem); `ModelUnavailableError` (a dead server: the run's
    problem) is raised, located at ``step`` and the model."""
    try:
        result = await model.agenerate_result(request)
    except ModelUnavailableError as exc:
        raise exc.located(model=model.model_name, step=step) from None
    except Exception as exc:
        result = ModelResult.failed(failure_of(model, exc), request.n)
    # Decoding checks cost milliseconds per image: off the event loop.
    return await asyncio.to_thread(results_of_images, result, request.n)


def generate_image_results(
    model: ImageModel[Any], requests: list[ModelRequest[Any]]
) -> list[list[GenerationResult]]:
    """A batch's results (one list per request, in order) from an image model; a
    `ModelUnavailableError` propagates (the task locates it)."""
    results = model.generate_results(requests)
    return [results_of_images(r, q.n) for r, q in zip(results, requests)]


def first_image(output: dict[str, Any] | None, image_format: str | None) -> str | None:
    """The output's first image (base64), re-encoded as ``image_format`` when given; None for a
    failed generation."""
    images = (output or {}).get("images") or [None]
    image: str | None = images[0]
    if image is not None and image_format is not None:
        image = image_to_str(image_from_str(image), image_format)
    return image


def save_image_artifact(image: str, directory: Path | None, step: str) -> Path:
    """Write a base64 ``image`` to ``<directory>/images/<sha256>.<ext>`` (``directory``
    defaults to the pixtill cache's ``artifacts/<step>``) unless it is there already: named
    by content, two rows can never overwrite each other's image. Returns the path."""
    ref = ImageRef.from_value(image, "base64")
    data = ref.get_bytes()
    folder = directory or cache_dir() / "artifacts" / step
    ext = {"JPEG": "jpg"}.get(ref.format.upper(), ref.format.lower())
    path = folder / "images" / f"{hashlib.sha256(data).hexdigest()}.{ext}"
    if not path.exists():
        write_atomically(path, data)
    return path
