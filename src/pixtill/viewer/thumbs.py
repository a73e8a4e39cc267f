"""Image cells to bytes a browser shows: thumbnails made on demand (and kept in a bounded
cache), and full-size images as stored (converted to PNG when a browser could not show them).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

THUMB_SIDE = 256  # pixels, the longer side of a thumbnail
MAX_PIXELS = 100_000_000  # refuse to decode images whose header claims more (decompression bombs)
_BROWSER_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}


class ImageUnavailable(ValueError):
    """The cell holds no image the viewer can show (missing, a remote URL, not decodable)."""


def stored_bytes(value: Any) -> bytes:
    """The encoded image of a ``{"bytes", "path"}`` cell: its bytes, else the local file at its
    path. Remote URLs are never fetched (the viewer works offline)."""
    if not isinstance(value, dict):
        raise ImageUnavailable("no image in this cell")
    data = value.get("bytes")
    if data:
        return bytes(data)
    path = value.get("path")
    if path and not str(path).startswith(("http://", "https://", "hf://")) and os.path.isfile(path):
        with open(path, "rb") as file:
            return file.read()
    raise ImageUnavailable(f"image not stored in the dataset ({path or 'no path'})")


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
    except Exception as exc:
        raise ImageUnavailable(f"not a readable image: {exc}") from exc
    if width * height > MAX_PIXELS:
        raise ImageUnavailable(f"image is {width}x{height}, over {MAX_PIXELS} pixels")
    return image


def make_thumbnail(data: bytes, side: int = THUMB_SIDE) -> tuple[bytes, str]:
    """``(encoded bytes, MIME type)``: JPEG, or PNG when the image has transparency; never
    larger than ``side`` on its longer side, never upscaled."""
    image = _open(data)
    try:
        if image.format == "JPEG":
            image.draft("RGB", (side, side))  # decode at a fraction of the size when possible
        image.thumbnail((side, side))
        transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        out = io.BytesIO()
        if transparent:
            image.convert("RGBA").save(out, "PNG", optimize=True)
            return out.getvalue(), "image/png"
        image.convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue(), "image/jpeg"
    except ImageUnavailable:
        raise
    except Exception as exc:
        raise ImageUnavailable(f"not a decodable image: {exc}") from exc


def browser_image(data: bytes) -> tuple[bytes, str]:
    """The full-size image as stored when browsers show its format, else converted to PNG."""
    image = _open(data)
    mime = _BROWSER_FORMATS.get(image.format or "")
    if mime is not None:
        return data, mime
    out = io.BytesIO()
    try:
        image.save(out, "PNG")
    except Exception as exc:
        raise ImageUnavailable(f"not a decodable image: {exc}") from exc
    return out.getvalue(), "image/png"


class ThumbnailCache:
    """A thread-safe LRU of made thumbnails, bounded in bytes (default 64 MiB)."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[bytes, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Any, item: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._size += len(item[0])
            while self._size > self.max_bytes and self._items:
                _, (data, _) = self._items.popitem(last=False)
                self._size -= len(data)


__all__ = [
    "ImageUnavailable",
    "ThumbnailCache",
    "browser_image",
    "make_thumbnail",
    "stored_bytes",
]
