"""What the local diffusers backends share: the loaded-pipeline holder, loading (device, dtype,
revision, variant), the per-input loop that turns one input's failure into failed outputs,
seeding, and the PNG generations (canonical `ModelResult` s).

Used by `DiffusersImageGeneration` (text-to-image) and `DiffusersImageEditing` (image-to-image),
which stay distinct model kinds. torch and diffusers are imported only when a model loads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pixtill.models.image_generation.utils import image_to_str
from pixtill.models.results import Generation, ModelResult
from pixtill.models.torch_support import (
    dtype_keyword,
    free_accelerator_memory,
    import_module,
    import_torch,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "DiffusersRuntime",
    "call_options",
    "generate_each",
    "load_pipeline",
    "png_generations",
    "release",
]

InputT = TypeVar("InputT")
RuntimeT = TypeVar("RuntimeT", bound="DiffusersRuntime")


class DiffusersRuntime:
    """What `load` acquires; a copy starts empty (a replica loads its own weights)."""

    def __init__(self) -> None:
        self.pipeline: Any = None
        self.device: str | None = None
        self.lock = threading.Lock()

    def clear(self) -> None:
        """Drop every loaded pipeline (called under ``lock``)."""
        self.pipeline = self.device = None

    def __reduce__(self) -> tuple[type[DiffusersRuntime], tuple[()]]:
        # Copies and pickles (a replica, a worker process) start unloaded.
        return (type(self), ())


def load_pipeline(
    runtime: DiffusersRuntime,
    from_pretrained: Callable[[Any, dict[str, Any]], Any],
    *,
    owner: str,
    device: str | None,
    torch_dtype: str,
    revision: str | None,
    variant: str | None,
    show_progress: bool,
    extra_options: dict[str, Any] | None = None,
) -> None:
    """Load a pipeline into ``runtime`` (call under ``runtime.lock``).

    ``from_pretrained(diffusers_module, options)`` builds the pipeline; ``options`` holds the
    dtype (resolved for the device: 'auto' is bfloat16 on a GPU that has it, float32 on CPU),
    ``revision`` and ``variant`` when set, and ``extra_options``. Raises ImportError naming
    ``owner`` and its extra when torch or diffusers is missing.
    """
    import_torch()
    diffusers = import_module("diffusers", owner)
    resolved = resolve_device(device)
    options: dict[str, Any] = {dtype_keyword("diffusers"): resolve_dtype(torch_dtype, resolved)}
    if revision is not None:
        options["revision"] = revision
    if variant is not None:
        options["variant"] = variant
    options.update(extra_options or {})
    pipeline = from_pretrained(diffusers, options)
    pipeline.to(resolved)
    pipeline.set_progress_bar_config(disable=not show_progress)
    runtime.pipeline, runtime.device = pipeline, resolved


def release(runtime: DiffusersRuntime) -> None:
    """Drop the runtime's pipelines and free the accelerator memory they held."""
    with runtime.lock:
        device = runtime.device
        runtime.clear()
    if device is not None:
        free_accelerator_memory(device)


def generate_each(
    runtime: RuntimeT,
    load: Callable[[], None],
    inputs: Sequence[InputT],
    num_generations: int,
    one: Callable[[RuntimeT, InputT], list[Generation]],
) -> list[ModelResult]:
    """``one(runtime, input)`` for each input in order, serialized on ``runtime.lock``; an input
    that raises gets a failed `ModelResult` (its error as data) instead. Loads first (``load``)
    when needed. Raises ValueError when ``num_generations`` < 1."""
    if num_generations < 1:
        raise ValueError(f"num_generations must be at least 1, got {num_generations}")
    if runtime.pipeline is None:
        load()
    results: list[ModelResult] = []
    with runtime.lock:
        for item in inputs:
            try:
                results.append(ModelResult.of(one(runtime, item)))
            except Exception as exc:
                results.append(ModelResult.failed(exc, num_generations))
    return results


def call_options(params: dict[str, Any], reserved: Sequence[str]) -> dict[str, Any]:
    """The pipeline call's keyword arguments: ``params`` without the ``reserved`` keys and
    ``None`` values, with ``seed`` turned into a seeded CPU ``generator`` (a CPU generator
    works for every device and gives the same noise everywhere)."""
    call = {k: v for k, v in params.items() if k not in reserved and v is not None}
    seed = call.pop("seed", None)
    if seed is not None:
        call["generator"] = import_torch().Generator("cpu").manual_seed(int(seed))
    return call


def png_generations(images: Sequence[Any], num_generations: int) -> list[Generation]:
    """One generation per PIL image, as base64 PNG. Raises RuntimeError when the pipeline did
    not return ``num_generations`` images."""
    if len(images) != num_generations:
        raise RuntimeError(f"the pipeline returned {len(images)} images, not {num_generations}")
    return [Generation.of_image(image_to_str(image, "PNG"), "PNG") for image in images]
