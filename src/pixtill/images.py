"""One reference type for every way a dataset row can hold an image.

`ImageRef.from_value` (or `coerce_image`, which adds the row and column to errors) accepts an
http(s) URL, a data URL, raw base64, a local path (``str``, ``Path`` or ``file://`` URL), raw
bytes, a PIL image or a Hugging Face ``{"bytes": ..., "path": ...}`` dict. Construction does no
network I/O and does not read files; base64 is decoded at once so that bad data fails early.
The format is always sniffed from the bytes, and the pixel limit is checked from the header
before anything is decoded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import hashlib
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any, Literal, TypeGuard
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import url2pathname

import aiohttp
from PIL import Image, ImageOps, UnidentifiedImageError

from pixtill.utils.b64 import decode_b64, encode_b64
from pixtill.utils.png import SIGNATURE as PNG_SIGNATURE
from pixtill.utils.png import PNGStructureError, png_size

DEFAULT_MAX_PIXELS: int = 100_000_000
DEFAULT_FETCH_TIMEOUT: float = 30.0
DEFAULT_MAX_FETCH_BYTES: int = 50 * 2**20

ImageType = Literal["url", "base64", "PIL", "path", "auto"]
ImageKind = Literal["url", "path", "bytes", "pil"]

_IMAGE_TYPES = ("url", "base64", "PIL", "path", "auto")
_IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
    | {".heic", ".heif", ".ico", ".ppm", ".tga"}
)
# Leading bytes of common formats, with the format they name; None where the signature is too
# short to trust on its own (PIL names those). WEBP and HEIF/AVIF are recognised at offset 8.
_SIGNATURES: dict[bytes, str | None] = {
    PNG_SIGNATURE: "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": None,
    b"II*\x00": None,
    b"MM\x00*": None,
}


def _sniff_format(data: bytes) -> str | None:
    """The format named by a file signature, for the formats whose signature is unambiguous."""
    for signature, name in _SIGNATURES.items():
        if name is not None and data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _has_image_signature(data: bytes) -> bool:
    """Whether ``data`` starts like an image of a common format (PIL will still check it)."""
    return data.startswith(tuple(_SIGNATURES)) or data[8:12] in (b"WEBP", b"ftyp")


_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "P", "RGB", "RGBA"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# `warnings.catch_warnings` swaps process-wide state: keep our own uses of it from interleaving.
_WARNINGS_LOCK = threading.Lock()


class ImageError(ValueError):
    """Bad image input. Carries where it happened (``row``, ``column``) when known."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.column = column

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def at(self, *, row: int | None, column: str | None) -> ImageError:
        """The same error (same class and message) located at ``row``/``column``."""
        return type(self)(
            self.message,
            row=self.row if row is None else row,
            column=self.column if column is None else column,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), {"row": self.row, "column": self.column})


class ImageDecodeError(ImageError):
    """Corrupt base64, a truncated or corrupt file, or data that is not an image at all."""


class ImageNotFoundError(ImageError):
    """A local path that does not exist (or is not a file)."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed (checked from the header, before decoding)."""


class ImageTypeMismatchError(ImageError):
    """A value that does not match the declared ``image_type`` (or is no image form at all)."""


class ImageFetchError(ImageError):
    """Fetching a URL failed: an HTTP error status, a timeout, or a body over the size cap."""


@dataclass(frozen=True)
class ResizePolicy:
    """Shrink images to at most ``max_side`` on the longest side and ``max_pixels`` in area."""

    max_side: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_side", "max_pixels"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"ResizePolicy.{name} must be at least 1, got {limit}")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to resize to: aspect ratio kept, never larger, each side at least 1."""
        if width < 1 or height < 1:
            raise ValueError(f"invalid image size {width}x{height}")
        scale = 1.0
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
        if self.max_pixels is not None and width * height > self.max_pixels:
            scale = min(scale, math.sqrt(self.max_pixels / (width * height)))
        if scale >= 1.0:
            return width, height
        new_w = min(width, max(1, math.floor(width * scale + 1e-9)))
        new_h = min(height, max(1, math.floor(height * scale + 1e-9)))
        if self.max_pixels is not None and new_w * new_h > self.max_pixels:
            # Rounding, or a side clamped to 1 pixel on an extreme aspect ratio.
            if new_w >= new_h:
                new_w = max(1, self.max_pixels // new_h)
            else:
                new_h = max(1, self.max_pixels // new_w)
        return new_w, new_h


def _preview(text: str, limit: int = 40) -> str:
    """``text`` quoted and cut short: error messages never carry image data."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _check_pixels(size: tuple[int, int], limit: int) -> None:
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


def _open_image(fp: IO[bytes]) -> Image.Image:
    """Open an image lazily (the header only). Our own pixel limit applies, not Pillow's."""
    image: Image.Image
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except Image.DecompressionBombError as exc:
        try:
            image = _open_without_bomb_check(fp)
        except ImageDecodeError:
            raise ImageTooLargeError(f"Pillow refused the image: {_short(exc)}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "cannot identify the image format (not an image, or an unsupported format)"
        ) from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot read the image header: {_short(exc)}") from exc
    if not image.format:
        raise ImageDecodeError("cannot identify the image format")
    return image


def _decode(fp: IO[bytes], limit: int) -> Image.Image:
    image = _open_image(fp)
    _check_pixels(image.size, limit)
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"Pillow refused to decode the image ({_short(exc)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels to allow it"
        ) from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode the {image.format} image: {_short(exc)}") from exc
    return image


def _resize(image: Image.Image, policy: ResizePolicy) -> Image.Image:
    size = policy.target_size(*image.size)
    if size == image.size:
        return image
    if image.mode == "P":  # palette images would be resized with NEAREST
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    return image.resize(size, Image.Resampling.LANCZOS)


def _normalize_format(name: str) -> str:
    fmt = name.strip().upper().removeprefix("IMAGE/").lstrip(".")
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    Image.init()
    if fmt not in Image.SAVE:
        raise ImageError(f"cannot write images as {name!r}")
    return fmt


def _same_format(a: str, b: str) -> bool:
    jpeg = {"JPEG", "MPO"}  # MPO files are JPEGs with extra frames
    return a == b or (a in jpeg and b in jpeg)


def _mime_type(fmt: str) -> str:
    if fmt in ("JPEG", "MPO"):
        return "image/jpeg"
    Image.init()
    return Image.MIME.get(fmt) or f"image/{fmt.lower()}"


def _convert_for(image: Image.Image, fmt: str) -> Image.Image:
    has_alpha = image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
    if fmt == "JPEG":
        if image.mode in ("L", "RGB", "CMYK"):
            return image
        if has_alpha:  # flatten onto white rather than onto whatever hides under alpha 0
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB")
    if (fmt == "PNG" and image.mode not in _PNG_MODES) or (
        fmt == "WEBP" and image.mode not in ("RGB", "RGBA")
    ):
        return image.convert("RGBA" if has_alpha else "RGB")
    return image


def encode_image(image: Image.Image, format: str = "PNG", *, quality: int = 90) -> bytes:
    """Encode ``image`` as ``format`` ("PNG", "JPEG", "jpg", "WEBP", ...), converting the mode
    where the format needs it (RGBA or palette to RGB for JPEG, flattened onto white)."""
    fmt = _normalize_format(format)
    buffer = io.BytesIO()
    params: dict[str, Any] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        _convert_for(image, fmt).save(buffer, format=fmt, **params)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError(f"cannot encode a {image.mode} image as {fmt}: {_short(exc)}") from exc
    return buffer.getvalue()


def _is_file(text: str) -> bool:
    return len(text) < 4096 and os.path.isfile(os.path.expanduser(text))


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
        raise ImageDecodeError(f"malformed data URL (no comma): {_preview(url)}")
    if header.lower().endswith(";base64"):
        decoded = decode_b64(payload)
        if decoded is None:
            raise ImageDecodeError(f"data URL with invalid base64: {_preview(url)}")
        return decoded[1], decoded[0]
    data = unquote_to_bytes(payload)
    if not data:
        raise ImageDecodeError("data URL with an empty payload")
    return data, None


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImageNotFoundError(f"file URL on another host is not supported: {_preview(url, 120)}")
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
    return f"a string that is neither a URL, base64 nor a path ({_preview(value)})"


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


class ImageRef:
    """A reference to one image; bytes are read, fetched and decoded lazily, only when asked.

    Build one with `from_value`. ``kind`` is "url" (fetched when its bytes are needed), "path"
    (read from disk each time), "bytes" or "pil" (encoded as PNG once, when needed).
    """

    def __init__(
        self,
        kind: ImageKind,
        *,
        url: str | None = None,
        path: Path | None = None,
        data: bytes | None = None,
        image: Image.Image | None = None,
        b64: str | None = None,
        max_pixels: int | None = None,
    ) -> None:
        expected = {"url": url, "path": path, "bytes": data, "pil": image}
        if expected.get(kind) is None:
            raise ValueError(f"ImageRef of kind {kind!r} needs its source")
        self._kind: ImageKind = kind
        self._url = url
        self._path = path
        self._data = data
        self._image = image
        self._max_pixels = max_pixels
        self._sha256: str | None = None
        self._header: tuple[str, tuple[int, int]] | None = None
        # The base64 text ``data`` was decoded from, reused as is for base64 and data URLs.
        self._b64: str | None = b64
        self._validated = False

    @classmethod
    def from_value(
        cls, value: object, image_type: ImageType = "auto", *, max_pixels: int | None = None
    ) -> ImageRef:
        """Accept any image form (see the module docs); ``image_type`` restricts which."""
        if image_type not in _IMAGE_TYPES:
            raise ValueError(f"unknown image_type {image_type!r}; expected one of {_IMAGE_TYPES}")
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
        held = getattr(value, "__image_ref__", None)  # `pixtill.image_url.ImageURL`: no re-decode
        if isinstance(held, ImageRef):
            value = held
        if isinstance(value, ImageRef):
            if max_pixels is None or max_pixels == value.max_pixels:
                return value
            clone = copy.copy(value)
            clone._max_pixels = max_pixels
            clone._validated = False  # checked against another limit
            return clone
        return _from_value(value, image_type, max_pixels)

    @property
    def kind(self) -> ImageKind:
        return self._kind

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def max_pixels(self) -> int:
        return DEFAULT_MAX_PIXELS if self._max_pixels is None else self._max_pixels

    # -- bytes -------------------------------------------------------------------------------

    def get_bytes(self) -> bytes:
        """The encoded bytes: as given, read from disk, fetched (blocking), or PIL as PNG."""
        if self._data is not None:
            return self._data
        if self._path is not None:
            try:
                return self._path.read_bytes()
            except OSError as exc:
                raise _file_error(self._path, exc) from exc
        if self._url is not None:
            self._data = fetch_url_sync(self._url)
        else:
            assert self._image is not None
            self._data = encode_image(self._image, "PNG")
        return self._data

    async def aget_bytes(self, session: aiohttp.ClientSession | None = None) -> bytes:
        """`get_bytes` without blocking the event loop; a URL is fetched with ``session``."""
        if self._data is not None:
            return self._data
        if self._url is not None:
            self._data = await fetch_url(self._url, session=session)
            return self._data
        return await asyncio.to_thread(self.get_bytes)

    @contextmanager
    def _open_source(self) -> Iterator[IO[bytes]]:
        if self._path is not None:
            try:
                file = self._path.open("rb")
            except OSError as exc:
                raise _file_error(self._path, exc) from exc
            with file:
                yield file
        else:
            yield io.BytesIO(self.get_bytes())

    def _read_header(self) -> tuple[str, tuple[int, int]]:
        if self._header is None:
            if self._image is not None:
                self._header = ("PNG", self._image.size)  # `get_bytes` encodes it as PNG
            else:
                with self._open_source() as fp:
                    image = _open_image(fp)
                    self._header = (str(image.format), image.size)
        return self._header

    @property
    def format(self) -> str:
        """ "PNG", "JPEG", "WEBP", "GIF", ...: sniffed from the bytes, never from a name."""
        if self._header is None and self._data is not None:
            sniffed: str | None = _sniff_format(self._data)
        else:
            sniffed = None
        if sniffed is not None:
            return sniffed  # the signature says it; no need to parse the header
        return self._read_header()[0]

    @property
    def mime_type(self) -> str:
        return _mime_type(self.format)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) from the header; nothing is decoded and no limit is checked."""
        return self._read_header()[1]

    def content_hash(self) -> str:
        """sha256 (hex) of the encoded bytes, the same whichever form they came in."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.get_bytes()).hexdigest()
        return self._sha256

    def reference(self) -> str:
        """What to store instead of a copy: the URL, or ``sha256:<hex>``."""
        if self._url is not None:
            return self._url
        return f"sha256:{self.content_hash()}"

    # -- checking and decoding ---------------------------------------------------------------

    def validate(self, *, decode: bool = False) -> None:
        """Check the header, the pixel limit and the file structure (``Image.verify``).

        ``decode=True`` also decodes the pixels, which catches truncated JPEG/WEBP data that
        ``verify`` cannot see.
        """
        if self._validated and not decode:
            return
        if self._image is not None:
            self._loaded_image()
            self._validated = True
            return
        data = self._data
        if not decode and data is not None and data[:8] == PNG_SIGNATURE:
            try:
                size = png_size(data)
            except PNGStructureError as exc:
                raise ImageDecodeError(f"corrupt or truncated PNG image: {exc}") from None
            self._header = ("PNG", size)
            _check_pixels(size, self.max_pixels)
            self._validated = True
            return
        with self._open_source() as fp:
            image = _open_image(fp)
            self._header = (str(image.format), image.size)
            _check_pixels(image.size, self.max_pixels)
            try:
                image.verify()
            except Exception as exc:
                raise ImageDecodeError(
                    f"corrupt or truncated {image.format} image: {_short(exc)}"
                ) from exc
        if decode:
            self.to_pil()
        # Bytes do not change, so one check is enough (paths are re-read: they may change).
        self._validated = self._path is None

    def _loaded_image(self) -> Image.Image:
        """The given PIL image, loaded (one opened lazily from a file may still be corrupt)."""
        assert self._image is not None
        _check_pixels(self._image.size, self.max_pixels)
        try:
            self._image.load()
        except Exception as exc:
            raise ImageDecodeError(f"cannot decode the PIL image: {_short(exc)}") from exc
        return self._image

    def to_pil(self, resize: ResizePolicy | None = None) -> Image.Image:
        """The decoded (loaded) image, shrunk by ``resize`` if given. A ``pil`` ref returns its
        own image when no resize is needed. The pixel limit is checked before decoding."""
        if self._image is not None:
            image = self._loaded_image()
        else:
            image = _decode(io.BytesIO(self.get_bytes()), self.max_pixels)
            self._header = (str(image.format), image.size)
        return image if resize is None else _resize(image, resize)

    def _unchanged(self, resize: ResizePolicy | None, format: str | None) -> bool:
        """True when ``resize``/``format`` leave the original bytes as they are."""
        source_format, size = self._read_header()
        if resize is not None:
            _check_pixels(size, self.max_pixels)
            if resize.target_size(*size) != size:
                return False
        return format is None or _same_format(_normalize_format(format), source_format)

    def _encoded(self, resize: ResizePolicy | None, format: str | None) -> tuple[bytes, str]:
        target = None if format is None else _normalize_format(format)
        source_format = self._read_header()[0]
        if self._unchanged(resize, format):
            return self.get_bytes(), source_format
        if target is None:
            Image.init()
            target = "JPEG" if source_format == "MPO" else source_format
            target = target if target in Image.SAVE else "PNG"
        # Re-encoding drops EXIF, so apply its orientation to the pixels first.
        image = ImageOps.exif_transpose(self.to_pil(resize))
        return encode_image(image, target), target

    def to_bytes(self, resize: ResizePolicy | None = None, format: str | None = None) -> bytes:
        """Encoded bytes, resized and/or re-encoded as ``format`` when asked. The original bytes
        come back untouched when no resize is needed and the format is unchanged."""
        return self._encoded(resize, format)[0]

    def to_base64(self, resize: ResizePolicy | None = None, format: str | None = None) -> str:
        if self._b64 is not None and self._unchanged(resize, format):
            return self._b64
        return encode_b64(self.to_bytes(resize, format))

    def to_data_url(self, resize: ResizePolicy | None = None, format: str | None = None) -> str:
        """``data:<real mime type>;base64,...``."""
        if self._b64 is not None and self._unchanged(resize, format):
            return f"data:{self.mime_type};base64,{self._b64}"
        data, fmt = self._encoded(resize, format)
        return f"data:{_mime_type(fmt)};base64,{encode_b64(data)}"

    async def ato_data_url(
        self,
        resize: ResizePolicy | None = None,
        format: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> str:
        """`to_data_url` with a URL fetched asynchronously and the rest done in a worker thread."""
        if self._url is not None:
            await self.aget_bytes(session)
        return await asyncio.to_thread(self.to_data_url, resize, format)

    # -- identity ----------------------------------------------------------------------------

    def _identity(self) -> tuple[str, str]:
        if self._url is not None:
            return ("url", self._url)
        return ("sha256", self.content_hash())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageRef):
            return NotImplemented
        return self is other or self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        if self._url is not None:
            detail = f"url={_preview(self._url, 80)}"
        elif self._path is not None:
            detail = f"path={_preview(str(self._path), 120)}"
        elif self._image is not None:
            detail = f"mode={self._image.mode!r}, size={self._image.size}"
        else:
            detail = f"sha256={self.content_hash()[:12]!r}, nbytes={len(self.get_bytes())}"
        return f"ImageRef(kind={self._kind!r}, {detail})"


def _file_error(path: Path, exc: OSError) -> ImageError:
    if isinstance(exc, IsADirectoryError):
        return ImageNotFoundError(f"not a file: '{path}' is a directory")
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return ImageNotFoundError(f"no such file: {_preview(str(path), 200)}")
    return ImageError(f"cannot read {_preview(str(path), 200)}: {exc.strerror or exc}")


def _path_ref(text: str, max_pixels: int | None) -> ImageRef:
    path = Path(text).expanduser()
    if not path.is_file():
        if path.is_dir():
            raise ImageNotFoundError(f"not a file: '{path}' is a directory")
        raise ImageNotFoundError(f"no such file: {_preview(str(path), 200)}")
    return ImageRef("path", path=path.absolute(), max_pixels=max_pixels)


def _from_value(value: object, image_type: ImageType, max_pixels: int | None) -> ImageRef:
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
            raise ImageDecodeError(f"invalid base64 data: {_preview(text)}")
        return ImageRef("bytes", data=decoded[1], b64=decoded[0], max_pixels=max_pixels)
    # auto
    if _is_file(text):
        return _path_ref(text, max_pixels)
    decoded = decode_b64(text)
    if decoded is not None:
        compact, raw = decoded
        if _has_image_signature(raw[:64]):
            return ImageRef("bytes", data=raw, b64=compact, max_pixels=max_pixels)
        try:
            image = _open_image(io.BytesIO(raw))
        except ImageDecodeError:
            pass
        else:
            ref = ImageRef("bytes", data=raw, b64=compact, max_pixels=max_pixels)
            ref._header = (str(image.format), image.size)
            return ref
        if not _looks_like_path(text):
            raise ImageDecodeError(
                f"base64 data that decodes to {len(raw)} bytes of no known image format: "
                f"{_preview(text)}"
            )
    if _looks_like_path(text):
        raise ImageNotFoundError(f"no such file: {_preview(text, 200)}")
    raise ImageDecodeError(
        f"neither a URL, a data URL, base64 nor an existing path: {_preview(text)}"
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


async def fetch_url(
    url: str,
    *,
    timeout: float = DEFAULT_FETCH_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_FETCH_BYTES,
    session: aiohttp.ClientSession | None = None,
) -> bytes:
    """GET an http(s) URL; the body may not exceed ``max_bytes`` (enforced while streaming)."""
    shown = _preview(url, 120)
    if not url.lower().startswith(("http://", "https://")):
        raise ImageFetchError(f"not an http(s) URL: {shown}")
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    owned = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with client.get(url, timeout=client_timeout) as response:
            if response.status >= 400:
                raise ImageFetchError(
                    f"GET {shown} failed: HTTP {response.status} {response.reason or ''}".rstrip()
                )
            too_big = f"GET {shown}: the body is over the limit of {max_bytes} bytes"
            if response.content_length is not None and response.content_length > max_bytes:
                raise ImageFetchError(too_big)
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise ImageFetchError(too_big)
            return bytes(body)
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise ImageFetchError(f"GET {shown} timed out after {timeout} s") from exc
    except aiohttp.ClientError as exc:
        raise ImageFetchError(f"GET {shown} failed: {_short(exc)}") from exc
    finally:
        if owned:
            await client.close()


def fetch_url_sync(
    url: str, *, timeout: float = DEFAULT_FETCH_TIMEOUT, max_bytes: int = DEFAULT_MAX_FETCH_BYTES
) -> bytes:
    """Blocking `fetch_url`. Inside a running event loop it runs in a worker thread with its
    own loop (blocking the caller, so call it from async code only when that is acceptable)."""

    def run() -> bytes:
        return asyncio.run(fetch_url(url, timeout=timeout, max_bytes=max_bytes))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pixtill-fetch") as pool:
        return pool.submit(run).result()


__all__ = [
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
]
