from __future__ import annotations

from typing import Any

from pydantic import Field

from pixtill.image_url import image_url_part
from pixtill.images import DEFAULT_MAX_PIXELS, ImageError, ImageType, coerce_image
from pixtill.models.llms.base import ChatType
from pixtill.steps.tasks.text_generation import TextGeneration
from pixtill.steps.typing import StepColumns

IMAGE_COLUMN = "image"


def image_parts(
    value: Any, image_type: ImageType, *, column: str, max_pixels: int, validate: bool
) -> list[dict[str, Any]]:
    """OpenAI-format content parts (``{"type": "image_url", "image_url": {"url": ...}}``) for
    one image or a list of images (order kept), checked up front.

    Each URL is an `pixtill.image_url.ImageURL`: the http(s) URL as given (never fetched here),
    or a data URL built once from base64 / bytes / path / PIL input, holding the checked
    `ImageRef` so that backends and metadata reuse it instead of decoding again.

    Raises:
        ImageError: a value is not an image of ``image_type``, or fails the decode check.
    """
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ImageError("the row holds an empty list of images", column=column)
    parts = []
    for value_ in values:
        ref = coerce_image(value_, image_type, column=column, max_pixels=max_pixels)
        if validate and ref.kind != "url":
            try:
                ref.validate()
            except ImageError as exc:
                raise exc.at(row=exc.row, column=column) from exc
        try:
            parts.append(image_url_part(ref))
        except ImageError as exc:
            raise exc.at(row=exc.row, column=column) from exc
    return parts


class TextGenerationWithImage(TextGeneration):
    """Text generation from a prompt and one or more images in the ``image`` column.

    ``image_type`` declares what the column holds ("url", "base64", "PIL", "path") and a value
    of another kind is an error for that row; "auto" accepts every form `pixtill.images` knows.
    """

    image_type: ImageType = Field(default="auto", description="What the image column holds.")
    image_max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="Refuse images with more pixels than this."
    )
    validate_images: bool = Field(
        default=True,
        description="Decode-check local images before sending (catches truncated files).",
    )

    @property
    def inputs(self) -> StepColumns:
        return {**dict.fromkeys(self.column_names, True), IMAGE_COLUMN: True}

    def image_columns(self) -> list[str]:
        return [self.input_mappings.get(IMAGE_COLUMN, IMAGE_COLUMN)]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        text = self.render_prompt(input)
        images = image_parts(
            input[IMAGE_COLUMN],
            self.image_type,
            column=IMAGE_COLUMN,
            max_pixels=self.image_max_pixels,
            validate=self.validate_images,
        )
        return self._messages([{"type": "text", "text": text}, *images])


__all__ = ["TextGenerationWithImage", "image_parts"]
