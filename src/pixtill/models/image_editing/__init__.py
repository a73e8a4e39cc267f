"""Image editing (image + prompt [+ mask] -> images): remote and local backends."""

from pixtill.models.image_editing.base import (
    AsyncImageEditingModel,
    EditInput,
    ImageEditingModel,
)
from pixtill.models.image_editing.diffusers import DiffusersImageEditing
from pixtill.models.image_editing.huggingface import InferenceEndpointsImageEditing
from pixtill.models.image_editing.openai import OpenAIImageEditing

__all__ = [
    "AsyncImageEditingModel",
    "DiffusersImageEditing",
    "EditInput",
    "ImageEditingModel",
    "InferenceEndpointsImageEditing",
    "OpenAIImageEditing",
]
