"""Edit images as upload bytes: fetched, resized and re-encoded at send time, off the loop."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

from PIL import Image

from pixtill.errors import RowError
from pixtill.images import ImageRef, ResizePolicy

__all__ = ["check_mask", "upload_bytes"]


def check_mask(mask: ImageRef, image: ImageRef) -> None:
    """Raise `RowError` (column ``mask``) unless ``mask`` has ``image``'s width and height and
    an alpha channel (RGBA, LA, or a palette or grey image with a transparent colour), as
    OpenAI's edits API requires; only the headers are read. Source: the API reference of
    ``POST /images/edits`` ("a valid PNG file ... with the same dimensions as image", whose
    "fully transparent areas ... indicate where image should be edited")."""
    if mask.size != image.size:
        (mw, mh), (iw, ih) = mask.size, image.size
        raise RowError(
            f"the mask is {mw}x{mh} pixels but the image is {iw}x{ih}: "
            "the edits API needs a mask of the image's size",
            column="mask",
        )
    with Image.open(io.BytesIO(mask.get_bytes())) as opened:  # lazy: the header only
        alpha = opened.mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in opened.info)
        mode = opened.mode
    if not alpha:
        raise RowError(
            f"the mask has no alpha channel (mode {mode}): the edits API takes a PNG whose "
            "transparent pixels mark the area to change",
            column="mask",
        )


def _encode(ref: ImageRef, resize: ResizePolicy | None, formats: frozenset[str]) -> bytes:
    target = None if ref.format in formats else "PNG"
    return ref.to_bytes(resize, target)


async def upload_bytes(
    ref: ImageRef,
    formats: frozenset[str],
    resize: ResizePolicy | None = None,
    fetch: Callable[[str], Awaitable[bytes]] | None = None,
) -> tuple[bytes, str]:
    """``(bytes, format)`` of ``ref`` in one of ``formats`` (PNG when its own is not one);
    a URL is fetched first, with ``fetch`` when given (the request engine's ``get_bytes``,
    called from a payload builder so that it runs in the request's own slot). Decoding and
    re-encoding run in a worker thread."""
    if ref.kind == "url" and ref.url is not None:
        if fetch is not None:
            ref = ImageRef.from_value(await fetch(ref.url))
        else:
            await ref.aget_bytes()
    if ref.kind == "bytes" and ref.format in formats and resize is None:
        return ref.get_bytes(), ref.format
    data = await asyncio.to_thread(_encode, ref, resize, formats)
    return data, ImageRef.from_value(data).format
