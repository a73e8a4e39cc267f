"""Local text-to-image models with Hugging Face diffusers.

`DiffusersImageGeneration` loads a pipeline (Stable Diffusion, SDXL, FLUX, ... anything
``AutoPipelineForText2Image`` or ``DiffusionPipeline`` can load) from a local folder or a hub id
and paints ``num_generations`` images per prompt. It is a synchronous model: a pipeline runs it
in a worker thread, and calls on one instance are serialized.

torch and diffusers are imported only when a model is loaded: ``pip install torch`` first, then
``pip install 'pixtill[local]'``.
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
from pixtill.models.image_generation.base import ImageGenerationModel, ImageGenerationOutput
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.results import Generation, ModelResult
from pixtill.models.torch_support import import_torch

__all__ = ["DiffusersImageGeneration"]

_RESERVED = ("prompt", "num_images_per_prompt", "generator", "output_type", "return_dict")


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

    _runtime: DiffusersRuntime = PrivateAttr(default_factory=DiffusersRuntime)

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

    def _load(self, runtime: DiffusersRuntime) -> None:
        def from_pretrained(diffusers: Any, options: dict[str, Any]) -> Any:
            try:
                return diffusers.AutoPipelineForText2Image.from_pretrained(self.model, **options)
            except (ValueError, KeyError, AttributeError):
                # A pipeline class the auto mapping does not list (community or custom pipelines).
                return diffusers.DiffusionPipeline.from_pretrained(self.model, **options)

        load_pipeline(
            runtime,
            from_pretrained,
            owner="DiffusersImageGeneration",
            device=self.device,
            torch_dtype=self.torch_dtype,
            revision=self.revision,
            variant=self.variant,
            show_progress=self.show_progress,
            extra_options={"trust_remote_code": True} if self.trust_remote_code else None,
        )

    def unload(self) -> None:
        release(self._runtime)
        super().unload()

    # -- generation ------------------------------------------------------------------------
    @canonical_edge
    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        requests = ModelRequest.of_calls(inputs, num_generations, kwargs, self.generation_kwargs)
        return [result.to_image_outputs() for result in self._generate_results(requests)]

    def _generate_results(self, requests: Sequence[ModelRequest[str]]) -> list[ModelResult]:
        if not requests:
            return []
        n, params = requests[0].n, dict(requests[0].settings)
        return generate_each(
            self._runtime,
            self.load,
            [r.input for r in requests],
            n,
            lambda runtime, prompt: self._paint(runtime, prompt, n, params),
        )

    def _paint(
        self, runtime: DiffusersRuntime, prompt: str, num_generations: int, params: dict[str, Any]
    ) -> list[Generation]:
        torch = import_torch()
        pipeline, device = runtime.pipeline, runtime.device
        if pipeline is None or device is None:
            raise RuntimeError("DiffusersImageGeneration was unloaded")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        call = call_options(params, _RESERVED)
        with torch.inference_mode():
            result = pipeline(
                prompt=prompt, num_images_per_prompt=num_generations, output_type="pil", **call
            )
        return png_generations(list(result.images), num_generations)
