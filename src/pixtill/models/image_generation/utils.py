"""Images as strings: image-generation models return base64, datasets store base64."""

from __future__ import annotations

from PIL import Image

from pixtill.images import ImageRef, encode_image
from pixtill.utils.b64 import encode_b64


def image_to_str(image: Image.Image, image_format: str | None = None) -> str:
    """Base64 (no data-URL prefix) of ``image`` encoded as ``image_format``, else as the format
    it was read in, else PNG. RGBA and palette images become RGB for JPEG."""
    fmt = image_format or image.format or "PNG"
    if fmt.upper() == "MPO":  # a JPEG with extra frames; one frame is a plain JPEG
        fmt = "JPEG"
    return encode_b64(encode_image(image, fmt))


def image_from_str(image_str: str) -> Image.Image:
    """Decode raw base64 or a data URL into a loaded image whose ``format`` is the real one."""
    return ImageRef.from_value(image_str, "base64").to_pil()


__all__ = ["image_from_str", "image_to_str"]
