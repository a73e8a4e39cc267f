"""Replace images by references before anything is stored in metadata or caches.

Metadata keeps the model's input and output for inspection, but a second base64 copy of every
image would double a dataset's size; a URL or a content hash identifies the image just as well.
"""

from __future__ import annotations

import hashlib
from typing import Any

from PIL import Image as PILImage

from pixtill.images import ImageError, ImageRef


def _hash_image_string(value: str) -> str:
    try:
        return ImageRef.from_value(value, "base64").reference()
    except ImageError:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


_IMAGE_KEYS = frozenset({"url", "image_url", "image"})


def _is_data_url(text: str) -> bool:
    return text[:11].lower() == "data:image/"


def replace_images(value: Any) -> Any:
    """A copy of ``value`` with every image replaced by its URL or ``sha256:<hex>``.

    Images are `ImageRef`s, PIL images, bytes, `ImageURL`s (as the image tasks' messages
    hold them) and ``data:image/...`` strings under an image key (``url``, ``image_url``,
    ``image``; a user's ``format_input`` may build its own data URLs): none of them reaches
    metadata as base64 text. Text parts are never touched.
    """
    held = getattr(value, "__image_ref__", None)  # an `ImageURL`
    if isinstance(held, ImageRef):
        return held.reference()
    if isinstance(value, ImageRef):
        return value.reference()
    if isinstance(value, PILImage.Image):
        return ImageRef.from_value(value).reference()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key in _IMAGE_KEYS and isinstance(item, str) and _is_data_url(item):
                out[key] = _hash_image_string(item)
            elif key == "images" and isinstance(item, list):
                out[key] = [
                    _hash_image_string(i) if isinstance(i, str) else replace_images(i) for i in item
                ]
            else:
                out[key] = replace_images(item)
        return out
    if isinstance(value, (list, tuple)):
        return [replace_images(item) for item in value]
    return value


def stored_input(formatted: Any, *, content_as_parts: bool | None = None) -> Any:
    """The model input as metadata keeps it: images as references.

    Chat messages keep distilabel's shape (string contents stay strings) unless
    ``content_as_parts`` is True, or it is None and one message of this input has a list of
    parts: then every content becomes a list of parts, because one Arrow column cannot hold a
    string in one message and a list in the next. Tasks whose rows may differ in that respect
    (`ChatGeneration`) pass True so that every row has the same type.
    """
    value = replace_images(formatted)
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        return value
    if content_as_parts is None:
        content_as_parts = any(isinstance(m.get("content"), list) for m in value)
    if content_as_parts:
        return [
            {**m, "content": [{"type": "text", "text": m["content"]}]}
            if isinstance(m.get("content"), str)
            else m
            for m in value
        ]
    return value
