"""The demo's `Pipeline`: load images >> caption >> answer >> image prompt >> paint, and the
generation settings for the tiny random models and for real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixtill.steps.base import Step, StepInput
from pixtill.steps.typing import StepColumns, StepOutput

LEAF = "paint"

# Generation settings. The tiny random models get few tokens and denoising steps: their output
# means nothing, and this keeps the demo to seconds on two CPU cores.
TINY_VLM_KWARGS: dict[str, Any] = {"max_new_tokens": 16}
TINY_IMAGE_KWARGS: dict[str, Any] = {"num_inference_steps": 4, "width": 64, "height": 64, "seed": 0}
EXAMPLE_VLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
EXAMPLE_IMAGE_MODEL = "segmind/tiny-sd"
REAL_VLM_KWARGS: dict[str, Any] = {"max_new_tokens": 64}
REAL_IMAGE_KWARGS: dict[str, Any] = {"seed": 0}


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
