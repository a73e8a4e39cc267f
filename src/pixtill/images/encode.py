"""Writing images: format names, MIME types, and encoding with the mode conversions a format
needs (done faithfully by `pixtill.images.modes.to_8bit`)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from pixtill.images.errors import ImageError, short
from pixtill.images.modes import has_alpha, to_8bit

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_PNG_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "I;16L", "P", "RGB", "RGBA"})


def normalize_format(name: str) -> str:
    """``"jpg"``, ``"image/png"``, ``".webp"`` -> Pillow's format name; `ImageError` when
    Pillow cannot write it."""
    fmt = name.strip().upper().removeprefix("IMAGE/").lstrip(".")
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    Image.init()
    if fmt not in Image.SAVE:
        raise ImageError(f"cannot write images as {name!r}")
    return fmt


def same_format(a: str, b: str) -> bool:
    jpeg = {"JPEG", "MPO"}  # MPO files are JPEGs with extra frames
    return a == b or (a in jpeg and b in jpeg)


def mime_type(fmt: str) -> str:
    if fmt in ("JPEG", "MPO"):
        return "image/jpeg"
    Image.init()
    return Image.MIME.get(fmt) or f"image/{fmt.lower()}"


def convert_for(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` in a mode ``fmt`` can store: JPEG gets L, RGB or CMYK (transparency flattened
    onto white), PNG keeps its own modes (16-bit included), WebP gets RGB or RGBA."""
    if fmt == "JPEG":
        if image.mode in ("L", "RGB", "CMYK"):
            return image
        return to_8bit(image, keep_alpha=False)
    if fmt == "PNG" and image.mode == "I" and _fits_16_bits(image):
        return image.convert("I;16")  # PNG stores 16-bit grayscale, not 32-bit
    if (fmt == "PNG" and image.mode not in _PNG_MODES) or (
        fmt == "WEBP" and image.mode not in ("RGB", "RGBA")
    ):
        return to_8bit(image, keep_alpha=has_alpha(image))
    return image


def _fits_16_bits(image: Image.Image) -> bool:
    low, high = image.getextrema()
    return isinstance(low, int) and isinstance(high, int) and low >= 0 and high <= 65535


def encode_image(image: Image.Image, format: str = "PNG", *, quality: int = 90) -> bytes:
    """Encode ``image`` as ``format`` ("PNG", "JPEG", "jpg", "WEBP", ...), converting the mode
    where the format needs it (RGBA or palette to RGB for JPEG, flattened onto white; 16-bit
    scaled to 8 bits, never clipped). Raises `ImageError` when Pillow cannot write it."""
    fmt = normalize_format(format)
    buffer = io.BytesIO()
    params: dict[str, Any] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        convert_for(image, fmt).save(buffer, format=fmt, **params)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"cannot encode a {image.mode} image as {fmt}: {short(exc)}") from exc
    return buffer.getvalue()
