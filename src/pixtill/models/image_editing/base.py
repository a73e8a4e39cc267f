"""Image editing models: an image and a prompt (and optionally a mask) in, images out.

An edit request is an `EditInput`: the images are `ImageRef` references, encoded only by the
backend at send time. Outputs are `ImageGenerationOutput` dicts (base64 images), the same as
text-to-image models give, so a dataset's image columns look alike whichever model made them.

Editing models are their own kind (not `ImageGenerationModel`): a task that asks for a
text-to-image model cannot be handed an editing model by accident, and vice versa.
"""

from __future__ import annotations

from typing_extensions import NotRequired, TypedDict

from pixtill.images import ImageRef
from pixtill.models.image_model import AsyncImageModel, ImageModel

__all__ = ["AsyncImageEditingModel", "EditInput", "ImageEditingModel"]


class EditInput(TypedDict):
    """One edit: what to do (``prompt``), to which ``image``, and where (``mask``: transparent
    pixels mark the area to change, as OpenAI's edits API defines it; optional)."""

    prompt: str
    image: ImageRef
    mask: NotRequired[ImageRef | None]


class ImageEditingModel(ImageModel[EditInput]):
    """An image-to-image model: ``generate(edits)`` gives, for each `EditInput`, one
    `ImageGenerationOutput` per generation, in input order."""

    def check_edit(self, edit: EditInput) -> None:
        """Refuse, before anything is sent, an edit this model's API would refuse: raise
        `~pixtill.errors.RowError` naming the column (``"mask"``, ``"image"``); the task adds
        the step and the row. The default accepts every edit."""


class AsyncImageEditingModel(AsyncImageModel[EditInput], ImageEditingModel):
    """An editing model whose natural interface is one coroutine per edit (HTTP backends)."""
