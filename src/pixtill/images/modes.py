"""One image preparation for every backend: EXIF orientation, faithful mode conversion, resize.

Local models (transformers, diffusers) get `prepare_pil`'s RGB image; HTTP backends get bytes
re-encoded from the same oriented, resized image (`pixtill.images.encode`), and both use
`to_8bit` when a format or a model cannot hold the image's mode. So a photo whose orientation
lives in EXIF looks the same to every backend, a 16-bit grayscale ramp stays a ramp (Pillow's
own ``convert("RGB")`` clips it to white), and malformed EXIF is ignored rather than failing
the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageOps

from pixtill.images.decode import quiet_pillow
from pixtill.images.resize import ResizePolicy

ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Integer modes wider than 8 bits per sample, and float samples.
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency (an alpha band or a palette transparency)."""
    return image.mode in ALPHA_MODES or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def oriented(image: Image.Image) -> Image.Image:
    """``image`` turned upright as its EXIF orientation says; unchanged when it has none, or
    when its EXIF block is malformed (a camera's broken metadata must not fail the image)."""
    try:
        with quiet_pillow():
            orientation = image.getexif().get(0x0112)
    except Exception:  # SyntaxError "not a TIFF file", struct errors...: metadata only
        return image
    if orientation in (None, 1):
        return image
    try:
        with quiet_pillow():
            return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _wide_to_l(image: Image.Image) -> Image.Image:
    """A wide grayscale image (16/32-bit integer, float) as 8-bit ``L``, scaled, not clipped.

    16-bit modes map 0..65535 to 0..255. Mode ``I`` (which Pillow uses for 16-bit PNGs too)
    is scaled by the range its values fit: 8, 16 bits, else its own min..max. Float images in
    0..1 are scaled by 255; other float ranges by their own min..max.
    """
    values = np.asarray(image)
    scaled: np.ndarray[Any, Any]
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        else:
            scaled = (values - low) * (255.0 / (high - low or 1.0))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    else:
        wide = values.astype(np.int64)
        low, high = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        if image.mode.startswith("I;16") or (low >= 0 and 255 < high <= 65535):
            scaled = wide / 257.0
        elif low >= 0 and high <= 255:
            scaled = wide.astype(np.float64)
        else:
            scaled = (wide - low) * (255.0 / ((high - low) or 1))
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def to_8bit(image: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """``image`` as ``RGB`` (or ``RGBA`` when ``keep_alpha`` and it has transparency), converted
    faithfully: wide grayscale scaled to 8 bits, CMYK/YCbCr/LAB/HSV through Pillow's
    conversions, palette and 1-bit expanded. Without ``keep_alpha``, transparency is flattened
    onto white (what shows behind a transparent image in a viewer), never onto the arbitrary
    colour hidden under alpha 0."""
    if image.mode in _WIDE_MODES:
        image = _wide_to_l(image)
    if has_alpha(image):
        rgba = image.convert("RGBA")
        if keep_alpha:
            return rgba
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def resized(image: Image.Image, policy: ResizePolicy | None) -> Image.Image:
    """``image`` shrunk to fit ``policy`` (Lanczos), or itself when it already fits."""
    if policy is None:
        return image
    size = policy.target_size(*image.size)
    if size == image.size:
        return image
    if image.mode == "P":  # palette images would be resized with NEAREST
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        # No Lanczos for 16-bit modes in Pillow: resample as 32-bit, then back to 16 bits.
        wide = image.convert("I").resize(size, Image.Resampling.LANCZOS)
        return Image.fromarray(np.clip(np.asarray(wide), 0, 65535).astype(np.uint16))
    elif image.mode not in ("L", "RGB", "RGBA", "I", "F", "LA", "La", "RGBa", "CMYK"):
        image = to_8bit(image, keep_alpha=True)  # rare modes have no Lanczos resampling
    return image.resize(size, Image.Resampling.LANCZOS)


def needs_preparation(image: Image.Image) -> bool:
    """Whether a model decoding ``image`` naively (``convert("RGB")``, EXIF ignored) would see
    other pixels than `prepare_pil` gives: an EXIF orientation to apply, transparency, or a
    mode other than 8-bit RGB / grayscale (an opaque RGB palette or 1-bit image converts
    exactly, so it needs nothing). Reads the header and EXIF only, no pixels."""
    if has_alpha(image):
        return True
    if image.mode == "P":
        palette = image.palette
        if palette is not None and palette.mode != "RGB":
            return True
    elif image.mode not in ("RGB", "L", "1"):
        return True
    if image.format == "PNG" and "exif" not in image.info:
        # Pillow's PNG `getexif` decodes the whole image to look for an eXIf chunk after the
        # pixels; the PNG extensions require eXIf before them, so the header says it all.
        return False
    try:
        with quiet_pillow():
            return image.getexif().get(0x0112) not in (None, 1)
    except Exception:  # malformed EXIF is ignored by `oriented` too
        return False


def prepare_pil(image: Image.Image, resize: ResizePolicy | None = None) -> Image.Image:
    """What a local model receives: ``image`` upright (EXIF orientation), shrunk by ``resize``,
    as 8-bit RGB with transparency flattened onto white (see `to_8bit`)."""
    return to_8bit(resized(oriented(image), resize), keep_alpha=False)
