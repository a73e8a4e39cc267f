"""Local text-to-image models with Hugging Face diffusers.

`DiffusersImageGeneration` loads a pipeline (Stable Diffusion, SDXL, FLUX, ... anything
``AutoPipelineForText2Image`` or ``DiffusionPipeline`` can load) from a local folder or a hub id
and paints ``num_generations`` images per prompt. It is a synchronous model: a pipeline runs it
in a worker thread, and calls on one instance are serialized.

torch and diffusers are imported only when a model is loaded: ``pip install torch`` first, then
``pip install 'pixtill[local]'``.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.models.image_generation.base import (
    ImageGenerationModel,
    ImageGenerationOutput,
    failed_image_outputs,
)
from pixtill.models.image_generation.utils import image_to_str
from pixtill.models.llms.transformers import (
    free_accelerator_memory,
    import_module,
    import_torch,
    resolve_device,
    resolve_dtype,
)

__all__ = ["DiffusersImageGeneration"]

_RESERVED = ("prompt", "num_images_per_prompt", "generator", "output_type", "return_dict")


def _dtype_keyword() -> str:
    """``dtype`` for diffusers releases that renamed ``torch_dtype`` (and warn on the old name)."""
    deprecation_utils = import_module("diffusers.utils.deprecation_utils")
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


class _Runtime:
    """What `load` acquires; a copy starts empty (a replica loads its own weights)."""

    def __init__(self) -> None:
        self.pipeline: Any = None
        self.device: str | None = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Runtime], tuple[()]]:
        # Copies and pickles (a replica, a worker process) start unloaded.
        return (_Runtime, ())


class DiffusersImageGeneration(ImageGenerationModel):
    """A local text-to-image diffusers pipeline.

    ``generation_kwargs`` (and the keyword arguments of `generate`, which win):
    ``negative_prompt``, ``width``, ``height``, ``num_inference_steps``, ``guidance_scale`` and
    ``seed``; other keys go to the pipeline call as they are. With a ``seed``, each prompt gets
    a generator seeded with it, so a prompt paints the same images whatever its batch.
    Images come back as base64 PNG, one per generation.
    """

    model: str = Field(description="A local folder or a Hugging Face hub id.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag, commit).")
    variant: str | None = Field(default=None, description="Weights variant, e.g. 'fp16'.")
    device: str | None = Field(
        default=None, description="'cuda', 'cuda:1', 'mps', 'cpu'; None picks cuda > mps > cpu."
    )
    torch_dtype: str = Field(
        default="auto",
        description="'auto' (bfloat16 on a GPU that has it, float32 on CPU) or a dtype name.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow custom pipeline code from the hub (careful)."
    )
    show_progress: bool = Field(default=False, description="Show diffusers' per-step bars.")

    _runtime: _Runtime = PrivateAttr(default_factory=_Runtime)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def diffusion_pipeline(self) -> Any:
        """The loaded diffusers pipeline (None before `load` and after `unload`)."""
        return self._runtime.pipeline

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            if runtime.pipeline is None:
                self._load(runtime)
        super().load()

    def _load(self, runtime: _Runtime) -> None:
        import_torch()
        diffusers = import_module("diffusers", "DiffusersImageGeneration")
        device = resolve_device(self.device)
        options: dict[str, Any] = {_dtype_keyword(): resolve_dtype(self.torch_dtype, device)}
        if self.revision is not None:
            options["revision"] = self.revision
        if self.variant is not None:
            options["variant"] = self.variant
        if self.trust_remote_code:
            options["trust_remote_code"] = True
        try:
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(self.model, **options)
        except (ValueError, KeyError, AttributeError):
            # A pipeline class the auto mapping does not list (community or custom pipelines).
            pipeline = diffusers.DiffusionPipeline.from_pretrained(self.model, **options)
        pipeline.to(device)
        pipeline.set_progress_bar_config(disable=not self.show_progress)
        runtime.pipeline, runtime.device = pipeline, device

    def unload(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            device = runtime.device
            runtime.pipeline = runtime.device = None
        if device is not None:
            free_accelerator_memory(device)
        super().unload()

    # -- generation ------------------------------------------------------------------------
    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        if num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {num_generations}")
        runtime = self._runtime
        if runtime.pipeline is None:
            self.load()
        params = {**self.generation_kwargs, **kwargs}
        results: list[list[ImageGenerationOutput]] = []
        with runtime.lock:
            for prompt in inputs:
                try:
                    results.append(self._paint(runtime, prompt, num_generations, params))
                except Exception as exc:
                    results.append(failed_image_outputs(exc, num_generations))
        return results

    def _paint(
        self, runtime: _Runtime, prompt: str, num_generations: int, params: dict[str, Any]
    ) -> list[ImageGenerationOutput]:
        torch = import_torch()
        pipeline, device = runtime.pipeline, runtime.device
        if pipeline is None or device is None:
            raise RuntimeError("DiffusersImageGeneration was unloaded")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        call = {k: v for k, v in params.items() if k not in _RESERVED and v is not None}
        seed = call.pop("seed", None)
        if seed is not None:
            # A CPU generator works for every device and gives the same noise everywhere.
            call["generator"] = torch.Generator("cpu").manual_seed(int(seed))
        with torch.inference_mode():
            result = pipeline(
                prompt=prompt, num_images_per_prompt=num_generations, output_type="pil", **call
            )
        images = list(result.images)
        if len(images) != num_generations:
            raise RuntimeError(f"the pipeline returned {len(images)} images, not {num_generations}")
        return [{"images": [image_to_str(image, "PNG")]} for image in images]
