"""Reading images: format sniffing, lazy header reads, the pixel limit, structure checks and
decoding. Our own pixel limit applies, not Pillow's process-wide one.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from PIL import Image, UnidentifiedImageError

from pixtill.images.errors import ImageDecodeError, ImageTooLargeError, short
from pixtill.utils.gif import SIGNATURES as GIF_SIGNATURES
from pixtill.utils.gif import GIFStructureError, gif_size
from pixtill.utils.jpeg import SIGNATURE as JPEG_SIGNATURE
from pixtill.utils.jpeg import JPEGStructureError, jpeg_size
from pixtill.utils.png import SIGNATURE as PNG_SIGNATURE
from pixtill.utils.png import PNGStructureError, png_size
from pixtill.utils.webp import WebPStructureError, check_webp

DEFAULT_MAX_PIXELS: int = 100_000_000

# Leading bytes of common formats, with the format they name; None where the signature is too
# short to trust on its own (PIL names those). WEBP and HEIF/AVIF are recognised at offset 8.
_SIGNATURES: dict[bytes, str | None] = {
    PNG_SIGNATURE: "PNG",
    JPEG_SIGNATURE: "JPEG",
    GIF_SIGNATURES[0]: "GIF",
    GIF_SIGNATURES[1]: "GIF",
    b"BM": None,
    b"II*\x00": None,
    b"MM\x00*": None,
}
# `warnings.catch_warnings` swaps process-wide state: keep our own uses of it from interleaving.
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Silence what Pillow warns about images we check ourselves: its own pixel limit (ours
    applies) and malformed EXIF (metadata only: ignored, as `modes.oriented` does)."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", message="(?i).*exif", category=UserWarning)
        yield


def sniff_format(data: bytes) -> str | None:
    """The format named by a file signature, for the formats whose signature is unambiguous."""
    for signature, name in _SIGNATURES.items():
        if name is not None and data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def has_image_signature(data: bytes) -> bool:
    """Whether ``data`` starts like an image of a common format (PIL will still check it)."""
    return data.startswith(tuple(_SIGNATURES)) or data[8:12] in (b"WEBP", b"ftyp")


def check_structure(data: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """Check the container structure of a PNG, JPEG, GIF or WebP without decoding pixels:
    ``(format, (width, height) or None when the check does not read it)``, or None for other
    formats. Raises `ImageDecodeError` for a truncated or broken file."""
    fmt = sniff_format(data[:16])
    try:
        if fmt == "PNG":
            return fmt, png_size(data)
        if fmt == "JPEG":
            return fmt, jpeg_size(data)
        if fmt == "GIF":
            return fmt, gif_size(data)
        if fmt == "WEBP":
            check_webp(data)
            return fmt, None
    except (PNGStructureError, JPEGStructureError, GIFStructureError, WebPStructureError) as exc:
        raise ImageDecodeError(f"corrupt or truncated {fmt} image: {exc}") from None
    return None


def check_pixels(size: tuple[int, int], limit: int) -> None:
    """Raise `ImageTooLargeError` when ``width * height`` is over ``limit``."""
    width, height = size
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {limit} "
            "(raise max_pixels to allow it)"
        )


def _open_without_bomb_check(fp: IO[bytes]) -> Image.Image:
    """Open through Pillow's plugin registry, skipping the check on its global pixel limit."""
    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        accepted = accept(prefix) if accept is not None else True
        if not accepted or isinstance(accepted, str):
            continue
        fp.seek(0)
        try:
            return factory(fp, "")
        except Exception:
            continue
    raise ImageDecodeError("cannot identify the image format")


def open_image(fp: IO[bytes]) -> Image.Image:
    """Open an image lazily (the header only). Our own pixel limit applies, not Pillow's."""
    image: Image.Image
    try:
        with quiet_pillow():
            image = Image.open(fp)
    except Image.DecompressionBombError as exc:
        try:
            image = _open_without_bomb_check(fp)
        except ImageDecodeError:
            raise ImageTooLargeError(f"Pillow refused the image: {short(exc)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "cannot identify the image format (not an image, or an unsupported format)"
        ) from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot read the image header: {short(exc)}") from exc
    if not image.format:
        raise ImageDecodeError("cannot identify the image format")
    return image


def decode(fp: IO[bytes], limit: int) -> Image.Image:
    """Open and decode (load) an image, checking the pixel limit from the header first."""
    image = open_image(fp)
    check_pixels(image.size, limit)
    try:
        with quiet_pillow():
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"Pillow refused to decode the image ({short(exc)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels to allow it"
        ) from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode the {image.format} image: {short(exc)}") from exc
    return image
