from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from pixtill.errors import RowError
from pixtill.steps.tasks.base import ImageTask
from pixtill.steps.tasks.image_outputs import first_image, save_image_artifact
from pixtill.steps.typing import StepColumns


class ImageGeneration(ImageTask):
    """Generate an image from the ``prompt`` column.

    The ``image`` column holds the image as a base64 string. With ``save_artifacts`` each image
    is also written to ``artifacts_directory/images/<sha256>.<ext>`` and its path goes to
    ``image_path``: named by content, two prompts can never overwrite each other's image.
    """

    save_artifacts: bool = Field(default=False, description="Also write images to disk.")
    artifacts_directory: Path | None = Field(
        default=None, description="Where artifacts go; defaults to the pixtill cache folder."
    )
    image_format: str | None = Field(
        default=None, description="Re-encode images to this format (e.g. 'JPEG'); None keeps it."
    )

    @property
    def inputs(self) -> StepColumns:
        return ["prompt"]

    @property
    def outputs(self) -> StepColumns:
        columns = ["image", "model_name"]
        if self.save_artifacts:
            columns.insert(1, "image_path")
        return columns

    def image_columns(self) -> list[str]:
        return [self.output_mappings.get("image", "image")]

    def format_input(self, input: dict[str, Any]) -> str:
        prompt = input["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            got = "an empty string" if isinstance(prompt, str) else type(prompt).__name__
            raise RowError(f"expected a non-empty string, got {got}", column="prompt")
        return prompt

    def format_output(
        self, output: dict[str, Any] | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        image = first_image(output, self.image_format)
        columns: dict[str, Any] = {"image": image}
        if self.save_artifacts:
            columns["image_path"] = None if image is None else str(self.save_image(image))
        return columns

    def save_image(self, image: str) -> Path:
        """Write a base64 image as a content-named file; returns its path."""
        return save_image_artifact(image, self.artifacts_directory, self.name)
