"""Edit images as upload bytes: fetched, resized and re-encoded at send time, off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pixtill.images import ImageRef, ResizePolicy

__all__ = ["upload_bytes"]


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
