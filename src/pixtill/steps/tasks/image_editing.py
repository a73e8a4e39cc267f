"""`ImageEditing`: an image and an instruction (and optionally a mask) in, an edited image out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from pixtill.errors import RowError
from pixtill.images import DEFAULT_MAX_PIXELS, ImageRef, ImageType, coerce_image
from pixtill.models.image_editing.base import (
    AsyncImageEditingModel,
    EditInput,
    ImageEditingModel,
)
from pixtill.steps.tasks.base import GenerationResult, _Task
from pixtill.steps.tasks.image_outputs import (
    agenerate_image_results,
    first_image,
    generate_image_results,
    save_image_artifact,
)
from pixtill.steps.tasks.references import replace_images
from pixtill.steps.typing import StepColumns

__all__ = ["ImageEditing"]


class ImageEditing(_Task):
    """Edit the image in the ``image`` column as the ``prompt`` column says.

    Input columns: ``image`` (any form `pixtill.images` reads: base64 such as `ImageGeneration`
    writes, a path, URL, bytes, PIL image or a dataset ``{"bytes", "path"}`` dict), ``prompt``
    (the edit instruction) and, when ``use_mask``, ``mask`` (transparent pixels mark the area to
    change). Outputs: ``edited_image`` (base64, stored as an image column) and ``model_name``;
    with ``save_artifacts`` also ``edited_image_path``, a file named by its content hash.
    ``num_generations`` edits per row. Metadata keeps images as references (hashes, URLs),
    never a second copy of them.

    After `ImageGeneration` (whose ``prompt`` column is the picture's description), give the
    instruction another column name: ``input_mappings={"prompt": "edit_prompt"}``.
    """

    image_editing_model: ImageEditingModel
    use_mask: bool = Field(default=False, description="Read a ``mask`` column too.")
    image_type: ImageType = Field(default="auto", description="What the image column holds.")
    image_max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="Refuse images with more pixels than this."
    )
    save_artifacts: bool = Field(default=False, description="Also write edited images to disk.")
    artifacts_directory: Path | None = Field(
        default=None, description="Where artifacts go; defaults to the pixtill cache folder."
    )
    image_format: str | None = Field(
        default=None, description="Re-encode images to this format (e.g. 'JPEG'); None keeps it."
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_other_models(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("llm" in data or "image_generation_model" in data):
            raise ValueError("`ImageEditing` takes its model as `image_editing_model`")
        return data

    @property
    def model(self) -> ImageEditingModel:
        return self.image_editing_model

    @property
    def inputs(self) -> StepColumns:
        columns = {"image": True, "prompt": True}
        if self.use_mask:
            columns["mask"] = True
        return columns

    @property
    def outputs(self) -> StepColumns:
        columns = ["edited_image", "model_name"]
        if self.save_artifacts:
            columns.insert(1, "edited_image_path")
        return columns

    def image_columns(self) -> list[str]:
        return [
            self.input_mappings.get("image", "image"),
            self.output_mappings.get("edited_image", "edited_image"),
        ]

    @property
    def supports_async_model(self) -> bool:
        return isinstance(self.image_editing_model, AsyncImageEditingModel)

    def format_input(self, input: dict[str, Any]) -> EditInput:
        prompt = input["prompt"]
        if not isinstance(prompt, str):
            raise RowError(f"expected a string, got {type(prompt).__name__}", column="prompt")
        if not prompt.strip():
            raise RowError("the edit prompt is empty", column="prompt")
        edit: EditInput = {"prompt": prompt, "image": self._image(input, "image")}
        if self.use_mask:
            edit["mask"] = None if input.get("mask") is None else self._image(input, "mask")
        self.model.check_edit(edit)  # what this model's API would refuse (a mask's size)
        return edit

    def _image(self, input: dict[str, Any], column: str) -> ImageRef:
        ref = coerce_image(
            input[column], self.image_type, column=column, max_pixels=self.image_max_pixels
        )
        if ref.kind != "url":
            try:
                ref.validate()
            except Exception as exc:
                raise RowError(str(exc), column=column) from exc
        return ref

    def format_output(
        self, output: dict[str, Any] | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        image = first_image(output, self.image_format)
        columns: dict[str, Any] = {"edited_image": image}
        if self.save_artifacts:
            columns["edited_image_path"] = None if image is None else str(self._save(image))
        return columns

    def _save(self, image: str) -> Path:
        return save_image_artifact(image, self.artifacts_directory, self.name)

    # -- calling the model -----------------------------------------------------------------
    async def agenerate_results(self, formatted: Any) -> list[GenerationResult]:
        model = self.image_editing_model
        if not isinstance(model, AsyncImageEditingModel):
            return await super().agenerate_results(formatted)
        return await agenerate_image_results(model, self.model_request(formatted), self.name)

    def _generate(self, formatted: list[Any]) -> list[list[GenerationResult]]:
        requests = [self.model_request(item) for item in formatted]
        return generate_image_results(self.image_editing_model, requests)

    def _raw_output_reference(self, output: Any) -> Any:
        return replace_images(output)
