"""Local image-to-image with Hugging Face diffusers.

`DiffusersImageEditing` loads a pipeline with ``AutoPipelineForImage2Image`` (Stable Diffusion,
SDXL, Kandinsky, FLUX... img2img) and repaints each input image under its prompt. An edit with a
mask goes through ``AutoPipelineForInpainting`` built from the same weights (``from_pipe``: no
second copy in memory). Synchronous, like `DiffusersImageGeneration`: calls on one instance are
serialized.

torch and diffusers are imported only when a model is loaded (``pip install 'pixtill[local]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.models.diffusers_runtime import (
    DiffusersRuntime,
    call_options,
    generate_each,
    load_pipeline,
    png_generations,
    release,
)
from pixtill.models.image_editing.base import EditInput, ImageEditingModel
from pixtill.models.image_model import ImageGenerationOutput
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.results import Generation, ModelResult
from pixtill.models.torch_support import import_module, import_torch

__all__ = ["DiffusersImageEditing"]

_RESERVED = (
    "prompt",
    "image",
    "mask_image",
    "num_images_per_prompt",
    "generator",
    "output_type",
    "return_dict",
)


class _EditRuntime(DiffusersRuntime):
    def __init__(self) -> None:
        super().__init__()
        self.inpainting: Any = None  # built from `pipeline` on the first masked edit

    def clear(self) -> None:
        super().clear()
        self.inpainting = None


class DiffusersImageEditing(ImageEditingModel):
    """A local image-to-image diffusers pipeline.

    ``generation_kwargs`` (and `generate`'s keyword arguments, which win): ``strength`` (how
    much of the image is repainted, 0-1; diffusers' default 0.8), ``negative_prompt``,
    ``num_inference_steps``, ``guidance_scale``, ``seed``; other keys go to the pipeline call as
    they are. The output keeps the input's size (rounded by the pipeline to its multiple of 8).
    With a ``seed``, each edit gets a CPU generator seeded with it. Images come back as base64
    PNG, one per generation.
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
    show_progress: bool = Field(default=False, description="Show diffusers' per-step bars.")

    _runtime: _EditRuntime = PrivateAttr(default_factory=_EditRuntime)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def diffusion_pipeline(self) -> Any:
        """The loaded image-to-image pipeline (None before `load` and after `unload`)."""
        return self._runtime.pipeline

    def load(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            if runtime.pipeline is None:
                load_pipeline(
                    runtime,
                    lambda diffusers, options: diffusers.AutoPipelineForImage2Image.from_pretrained(
                        self.model, **options
                    ),
                    owner="DiffusersImageEditing",
                    device=self.device,
                    torch_dtype=self.torch_dtype,
                    revision=self.revision,
                    variant=self.variant,
                    show_progress=self.show_progress,
                )
        super().load()

    def unload(self) -> None:
        release(self._runtime)
        super().unload()

    @canonical_edge
    def generate(
        self, inputs: list[EditInput], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        requests = ModelRequest.of_calls(inputs, num_generations, kwargs, self.generation_kwargs)
        return [result.to_image_outputs() for result in self._generate_results(requests)]

    def _generate_results(self, requests: Sequence[ModelRequest[EditInput]]) -> list[ModelResult]:
        if not requests:
            return []
        n, params = requests[0].n, dict(requests[0].settings)
        return generate_each(
            self._runtime,
            self.load,
            [r.input for r in requests],
            n,
            lambda runtime, edit: self._edit(runtime, edit, n, params),
        )

    def _pipeline_for(self, runtime: _EditRuntime, masked: bool) -> Any:
        if not masked:
            return runtime.pipeline
        if runtime.inpainting is None:
            diffusers = import_module("diffusers", "DiffusersImageEditing")
            runtime.inpainting = diffusers.AutoPipelineForInpainting.from_pipe(runtime.pipeline)
            runtime.inpainting.set_progress_bar_config(disable=not self.show_progress)
        return runtime.inpainting

    def _edit(
        self,
        runtime: _EditRuntime,
        edit: EditInput,
        num_generations: int,
        params: dict[str, Any],
    ) -> list[Generation]:
        torch = import_torch()
        if runtime.pipeline is None:
            raise RuntimeError("DiffusersImageEditing was unloaded")
        prompt = edit["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        image = edit["image"].to_model_image()  # EXIF orientation, 16-bit, alpha: as every model
        call = call_options(params, _RESERVED)
        mask_ref = edit.get("mask")
        if mask_ref is not None:
            # diffusers repaints white mask pixels; OpenAI's convention (kept here) marks the
            # area to change by transparency, so a mask with alpha is turned into white = edit.
            call["mask_image"] = _mask_for_diffusers(mask_ref.to_pil())
            call.setdefault("width", image.width)
            call.setdefault("height", image.height)
        pipeline = self._pipeline_for(runtime, mask_ref is not None)
        # One batch entry per generation (the image repeated): diffusers deprecates repeating
        # one image for ``num_images_per_prompt``. One generator for the batch still gives each
        # entry its own noise.
        count = num_generations
        if isinstance(call.get("negative_prompt"), str):
            call["negative_prompt"] = [call["negative_prompt"]] * count
        if "mask_image" in call:
            call["mask_image"] = [call["mask_image"]] * count
        with torch.inference_mode():
            result = pipeline(
                prompt=[prompt] * count, image=[image] * count, output_type="pil", **call
            )
        return png_generations(list(result.images), num_generations)


def _mask_for_diffusers(mask: Any) -> Any:
    """A grey-scale mask, white where the image is to change: a mask with an alpha channel
    marks that area by transparency (alpha 0), one without it by white pixels."""
    from PIL import ImageOps

    if mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info:
        return ImageOps.invert(mask.convert("RGBA").getchannel("A"))
    return mask.convert("L")
