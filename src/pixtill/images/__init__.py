"""One reference type for every way a dataset row can hold an image, and one preparation of
it for every backend.

`ImageRef.from_value` (or `coerce_image`, which adds the row and column to errors) accepts an
http(s) URL, a data URL, raw base64, a local path (``str``, ``Path`` or ``file://`` URL), raw
bytes, a PIL image or a Hugging Face ``{"bytes": ..., "path": ...}`` dict. Construction does no
network I/O and does not read files; base64 is decoded at once so that bad data fails early.
The format is always sniffed from the bytes, and the pixel limit is checked from the header
before anything is decoded.

Modules: `errors` (the error types), `resize` (`ResizePolicy`), `decode` (sniffing, structure
checks, the pixel limit), `modes` (EXIF orientation, faithful mode conversion: the one
preparation every backend shares), `encode`, `fetch` (URLs, async and blocking), `ref`
(`ImageRef`), `coerce` (values to refs).
"""

from __future__ import annotations

from pixtill.images import coerce as _coerce
from pixtill.images import ref as _ref
from pixtill.images.coerce import coerce_image, is_image_value
from pixtill.images.decode import DEFAULT_MAX_PIXELS
from pixtill.images.encode import encode_image
from pixtill.images.errors import (
    ImageDecodeError,
    ImageError,
    ImageFetchError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTypeMismatchError,
)
from pixtill.images.fetch import (
    DEFAULT_FETCH_TIMEOUT,
    DEFAULT_MAX_FETCH_BYTES,
    fetch_url,
    fetch_url_sync,
)
from pixtill.images.modes import prepare_pil
from pixtill.images.ref import ImageKind, ImageRef, ImageType
from pixtill.images.resize import ResizePolicy

_ref._from_value = _coerce.from_value  # see ref.py: the hook that keeps coerce <-> ref one-way

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_MAX_FETCH_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "ImageError",
    "ImageFetchError",
    "ImageKind",
    "ImageNotFoundError",
    "ImageRef",
    "ImageTooLargeError",
    "ImageType",
    "ImageTypeMismatchError",
    "ResizePolicy",
    "coerce_image",
    "encode_image",
    "fetch_url",
    "fetch_url_sync",
    "is_image_value",
    "prepare_pil",
]
