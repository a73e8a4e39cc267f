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


def replace_images(value: Any) -> Any:
    """A copy of ``value`` with every image replaced by its URL or ``sha256:<hex>``."""
    if isinstance(value, ImageRef):
        return value.reference()
    if isinstance(value, PILImage.Image):
        return ImageRef.from_value(value).reference()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "images" and isinstance(item, list):
                out[key] = [
                    _hash_image_string(i) if isinstance(i, str) else replace_images(i) for i in item
                ]
            else:
                out[key] = replace_images(item)
        return out
    if isinstance(value, (list, tuple)):
        return [replace_images(item) for item in value]
    return value


def stored_input(formatted: Any) -> Any:
    """The model input as metadata keeps it: images as references, and every chat message's
    content as a list of parts, so that rows with and without images share one Arrow type."""
    value = replace_images(formatted)
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return [
            {**m, "content": [{"type": "text", "text": m["content"]}]}
            if isinstance(m.get("content"), str)
            else m
            for m in value
        ]
    return value
