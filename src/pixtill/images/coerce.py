"""Turning a row's value into an `ImageRef`: an http(s) URL, a data URL, raw base64, a local
path (``str``, ``Path`` or ``file://`` URL), raw bytes, a PIL image or a Hugging Face
``{"bytes": ..., "path": ...}`` dict. Construction does no network I/O and does not read files;
base64 is decoded at once so that bad data fails early.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path, PurePath
from typing import Any, TypeGuard
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import url2pathname

from PIL import Image

from pixtill.images.decode import has_image_signature, open_image
from pixtill.images.errors import (
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTypeMismatchError,
    preview,
)
from pixtill.images.ref import ImageRef, ImageType
from pixtill.utils.b64 import decode_b64, decode_b64_lenient

_IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
    | {".heic", ".heif", ".ico", ".ppm", ".tga"}
)


def _is_file(text: str) -> bool:
    return len(text) < 4096 and os.path.isfile(os.path.expanduser(text))


def _is_dir(text: str) -> bool:
    return len(text) < 4096 and os.path.isdir(os.path.expanduser(text))


_OTHER_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{1,15})://")


def _looks_like_path(text: str) -> bool:
    """A plausible path. Base64 contains ``/`` too, so a separator alone is not enough."""
    if len(text) > 1024 or "\n" in text:
        return False
    if text.startswith(("./", "../", "~/", ".\\", "..\\", "~\\")) or text[1:3] in (":\\", ":/"):
        return True
    suffix = PurePath(text).suffix.lower()
    return suffix in _IMAGE_EXTENSIONS or (bool(suffix) and ("/" in text or "\\" in text))


def _decode_data_url(url: str) -> tuple[bytes | None, str | None]:
    """The bytes of a data URL, and its base64 text when it has one."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageDecodeError(f"malformed data URL (no comma): {preview(url)}")
    if header.lower().endswith(";base64"):
        decoded = decode_b64_lenient(payload)  # URL-safe alphabet, padding left out: fine
        if decoded is None:
            raise ImageDecodeError(f"data URL with invalid base64: {preview(url)}")
        return decoded[1], decoded[0]
    data = unquote_to_bytes(payload)
    if not data:
        raise ImageDecodeError("data URL with an empty payload")
    return data, None


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImageNotFoundError(f"file URL on another host is not supported: {preview(url, 120)}")
    return url2pathname(parts.path)


def _describe(value: object) -> str:
    """What a value looks like, for type-mismatch messages."""
    if isinstance(value, Image.Image):
        return "a PIL image"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "raw bytes"
    if isinstance(value, ImageRef):
        return f"an ImageRef of kind {value.kind!r}"
    if _is_hf_dict(value):
        return "a Hugging Face image dict"
    if isinstance(value, os.PathLike):
        return "a local path"
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    head = value.lstrip()[:8].lower()
    if head.startswith(("http://", "https://")):
        return "an http(s) URL"
    if head.startswith("data:"):
        return "a data URL"
    if head.startswith("file:"):
        return "a file:// URL"
    if _is_file(value):
        return "a local path"
    if decode_b64(value) is not None:
        return "base64 data"
    if _looks_like_path(value):
        return "a local path"
    return f"a string that is neither a URL, base64 nor a path ({preview(value)})"


def _mismatch(image_type: str, value: object) -> ImageTypeMismatchError:
    return ImageTypeMismatchError(
        f"declared image_type={image_type!r} but the value looks like {_describe(value)}"
    )


def _is_hf_dict(value: object) -> TypeGuard[dict[str, Any]]:
    if not isinstance(value, dict) or not value or not set(value) <= {"bytes", "path"}:
        return False
    data, path = value.get("bytes"), value.get("path")
    return (data is None or isinstance(data, (bytes, bytearray, memoryview))) and (
        path is None or isinstance(path, (str, os.PathLike))
    )


def is_image_value(value: object) -> bool:
    """Cheap check (nothing decoded) that ``value`` can only be an image: a PIL image, bytes, an
    `ImageRef`, a Hugging Face image dict or a ``data:image/...`` URL. Plain strings (URLs, paths,
    base64) are not, since a text column can hold them too."""
    if isinstance(value, (Image.Image, ImageRef, bytes, bytearray, memoryview)):
        return True
    if isinstance(value, str):
        return value[:11].lower() == "data:image/"
    return _is_hf_dict(value) and any(value.get(key) for key in ("bytes", "path"))


def _path_ref(text: str, max_pixels: int | None) -> ImageRef:
    path = Path(text).expanduser()
    if not path.is_file():
        if path.is_dir():
            raise ImageNotFoundError(f"not a file: '{path}' is a directory")
        raise ImageNotFoundError(f"no such file: {preview(str(path), 200)}")
    return ImageRef("path", path=path.absolute(), max_pixels=max_pixels)


def from_value(value: object, image_type: ImageType, max_pixels: int | None) -> ImageRef:
    """The `ImageRef` of ``value`` (see the module docs); `ImageError` when it is none."""
    if isinstance(value, Image.Image):
        if image_type not in ("PIL", "auto"):
            raise _mismatch(image_type, value)
        return ImageRef("pil", image=value, max_pixels=max_pixels)
    if image_type == "PIL":
        raise _mismatch(image_type, value)
    if isinstance(value, str):
        return _from_str(value, image_type, max_pixels)
    if isinstance(value, os.PathLike):
        if image_type not in ("path", "auto"):
            raise _mismatch(image_type, value)
        return _path_ref(os.fsdecode(value), max_pixels)
    if isinstance(value, (bytes, bytearray, memoryview)):
        if image_type != "auto":
            raise _mismatch(image_type, value)
        if not value:
            raise ImageDecodeError("empty image: zero bytes")
        return ImageRef("bytes", data=bytes(value), max_pixels=max_pixels)
    if _is_hf_dict(value):
        if image_type != "auto":
            raise _mismatch(image_type, value)
        if value.get("bytes"):  # bytes win over the path, as in `datasets`
            return ImageRef("bytes", data=bytes(value["bytes"]), max_pixels=max_pixels)
        if value.get("path"):
            return _path_ref(os.fsdecode(value["path"]), max_pixels)
        raise ImageDecodeError("empty image dict: neither bytes nor a path")
    if image_type != "auto":
        raise _mismatch(image_type, value)
    raise ImageTypeMismatchError(
        f"a {type(value).__name__} is not an image (expected a URL, a data URL, base64, a path, "
        "bytes, a PIL image or a {'bytes': ..., 'path': ...} dict)"
    )


def _from_str(text: str, image_type: ImageType, max_pixels: int | None) -> ImageRef:
    stripped = text.strip()
    head = stripped[:8].lower()
    if head.startswith(("http://", "https://")):
        if image_type not in ("url", "auto"):
            raise _mismatch(image_type, text)
        return ImageRef("url", url=stripped, max_pixels=max_pixels)
    if head.startswith("data:"):
        if image_type not in ("url", "base64", "auto"):
            raise _mismatch(image_type, text)
        data, b64 = _decode_data_url(stripped)
        return ImageRef("bytes", data=data, b64=b64, max_pixels=max_pixels)
    if head.startswith("file:"):
        if image_type not in ("path", "auto"):
            raise _mismatch(image_type, text)
        return _path_ref(_file_url_path(stripped), max_pixels)
    scheme = _OTHER_SCHEME.match(stripped)
    if scheme:  # ftp://, s3://, gs://...: never a path nor base64 (":" is not in base64)
        raise ImageDecodeError(
            f"unsupported URL scheme {scheme.group(1)!r} (http, https, data: and file: URLs "
            f"are read): {preview(stripped)}"
        )
    if image_type == "url":
        raise _mismatch(image_type, text)
    if image_type == "path":
        if not _is_file(text) and not _looks_like_path(text) and decode_b64(text) is not None:
            raise _mismatch(image_type, text)
        return _path_ref(text, max_pixels)
    if image_type == "base64":
        decoded = decode_b64(text)
        if decoded is None:
            if _is_file(text) or _looks_like_path(text):
                raise _mismatch(image_type, text)
            raise ImageDecodeError(f"invalid base64 data: {preview(text)}")
        return ImageRef("bytes", data=decoded[1], b64=decoded[0], max_pixels=max_pixels)
    # auto
    if _is_file(text) or _is_dir(text):  # a directory: "is a directory", not a base64 puzzle
        return _path_ref(text, max_pixels)
    decoded = decode_b64(text)
    if decoded is not None:
        compact, raw = decoded
        if has_image_signature(raw[:64]):
            return ImageRef("bytes", data=raw, b64=compact, max_pixels=max_pixels)
        try:
            image = open_image(io.BytesIO(raw))
        except ImageDecodeError:
            pass
        else:
            ref = ImageRef("bytes", data=raw, b64=compact, max_pixels=max_pixels)
            ref._header = (str(image.format), image.size)
            return ref
        if not _looks_like_path(text):
            raise ImageDecodeError(
                f"base64 data that decodes to {len(raw)} bytes of no known image format: "
                f"{preview(text)}"
            )
    if _looks_like_path(text):
        raise ImageNotFoundError(f"no such file: {preview(text, 200)}")
    raise ImageDecodeError(
        f"neither a URL, a data URL, base64 nor an existing path: {preview(text)}"
    )


def coerce_image(
    value: object,
    image_type: ImageType = "auto",
    *,
    row: int | None = None,
    column: str | None = None,
    max_pixels: int | None = None,
) -> ImageRef:
    """`ImageRef.from_value`, with errors located at ``row``/``column``."""
    try:
        return ImageRef.from_value(value, image_type, max_pixels=max_pixels)
    except ImageError as exc:
        located = exc.at(row=row, column=column)
        raise located.with_traceback(exc.__traceback__) from exc.__cause__
