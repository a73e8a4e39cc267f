"""`ImageRef`: one reference type for every way a dataset row can hold an image."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

import aiohttp
from PIL import Image

from pixtill.images.decode import (
    DEFAULT_MAX_PIXELS,
    check_pixels,
    check_structure,
    decode,
    open_image,
    sniff_format,
)
from pixtill.images.encode import encode_image, mime_type, normalize_format, same_format
from pixtill.images.errors import ImageDecodeError, ImageError, ImageNotFoundError, preview, short
from pixtill.images.fetch import fetch_url, fetch_url_sync
from pixtill.images.modes import needs_preparation, oriented, prepare_pil, resized
from pixtill.images.resize import ResizePolicy
from pixtill.utils.b64 import encode_b64
from pixtill.utils.png import plain_png_size

ImageType = Literal["url", "base64", "PIL", "path", "auto"]
ImageKind = Literal["url", "path", "bytes", "pil"]
IMAGE_TYPES = ("url", "base64", "PIL", "path", "auto")


def file_error(path: Path, exc: OSError) -> ImageError:
    """The `ImageError` for a file that cannot be read."""
    if isinstance(exc, IsADirectoryError):
        return ImageNotFoundError(f"not a file: '{path}' is a directory")
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return ImageNotFoundError(f"no such file: {preview(str(path), 200)}")
    return ImageError(f"cannot read {preview(str(path), 200)}: {exc.strerror or exc}")


# Builds a ref from any image form: `pixtill.images.coerce.from_value`, installed by the
# package's `__init__`. coerce.py builds `ImageRef`s, so importing it from here would be an
# import circle.
_from_value: Callable[[object, ImageType, int | None], ImageRef] | None = None


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
        self._prepare: bool | None = None  # cached `needs_preparation` (not for paths)

    @classmethod
    def from_value(
        cls, value: object, image_type: ImageType = "auto", *, max_pixels: int | None = None
    ) -> ImageRef:
        """Accept any image form (see `pixtill.images`); ``image_type`` restricts which."""
        if image_type not in IMAGE_TYPES:
            raise ValueError(f"unknown image_type {image_type!r}; expected one of {IMAGE_TYPES}")
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
        if _from_value is None:  # pragma: no cover - `pixtill.images` installs it on import
            raise RuntimeError("pixtill.images.coerce is not loaded")
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
                raise file_error(self._path, exc) from exc
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
                raise file_error(self._path, exc) from exc
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
                    image = open_image(fp)
                    self._header = (str(image.format), image.size)
        return self._header

    @property
    def format(self) -> str:
        """ "PNG", "JPEG", "WEBP", "GIF", ...: sniffed from the bytes, never from a name."""
        if self._header is None and self._data is not None:
            sniffed: str | None = sniff_format(self._data)
        else:
            sniffed = None
        if sniffed is not None:
            return sniffed  # the signature says it; no need to parse the header
        return self._read_header()[0]

    @property
    def mime_type(self) -> str:
        return mime_type(self.format)

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
        """Check the header, the pixel limit and the file structure without decoding pixels:
        PNG chunks and CRCs, JPEG markers up to an end-of-image marker, GIF blocks up to the
        trailer, WebP chunks (see `pixtill.utils`); other formats (BMP, TIFF...) are decoded.

        ``decode=True`` also decodes the pixels. Raises `ImageDecodeError` (truncated or
        corrupt), `ImageTooLargeError` (over ``max_pixels``) or `ImageNotFoundError`.
        """
        if self._validated and not decode:
            return
        if self._image is not None:
            self._loaded_image()
            self._validated = True
            return
        data = self._data if self._data is not None else self.get_bytes()
        checked = check_structure(data)
        # Pillow's `verify` checks little beyond PNG, and BMP, TIFF and the rest have no cheap
        # structure check here: they are rare, so decoding them is the check.
        decode = decode or checked is None
        if checked is not None and checked[1] is not None and not decode:
            fmt, size = checked[0], checked[1]
            self._header = (fmt, size)
            check_pixels(size, self.max_pixels)
        else:
            image = open_image(io.BytesIO(data))
            self._header = (str(image.format), image.size)
            check_pixels(image.size, self.max_pixels)
            if decode:
                self.to_pil()
        # Bytes do not change, so one check is enough (paths are re-read: they may change).
        self._validated = self._path is None

    def _loaded_image(self) -> Image.Image:
        """The given PIL image, loaded (one opened lazily from a file may still be corrupt)."""
        assert self._image is not None
        check_pixels(self._image.size, self.max_pixels)
        try:
            self._image.load()
        except Exception as exc:
            raise ImageDecodeError(f"cannot decode the PIL image: {short(exc)}") from exc
        return self._image

    def to_pil(self, resize: ResizePolicy | None = None) -> Image.Image:
        """The decoded (loaded) image, shrunk by ``resize`` if given. A ``pil`` ref returns its
        own image when no resize is needed. The pixel limit is checked before decoding.

        Pixels as stored: no EXIF orientation, mode unchanged (see `to_model_image`)."""
        if self._image is not None:
            image = self._loaded_image()
        else:
            image = decode(io.BytesIO(self.get_bytes()), self.max_pixels)
            self._header = (str(image.format), image.size)
        return resized(image, resize)

    def to_model_image(self, resize: ResizePolicy | None = None) -> Image.Image:
        """What a local model receives (transformers, diffusers): the image upright as its EXIF
        orientation says (malformed EXIF ignored), shrunk by ``resize``, as 8-bit RGB with
        16-bit and float samples scaled, not clipped, and transparency flattened onto white.
        HTTP backends get the same pixels, encoded (`to_data_url`)."""
        return prepare_pil(self.to_pil(), resize)

    def to_model_data_url(
        self, resize: ResizePolicy | None = None, formats: frozenset[str] = frozenset()
    ) -> str:
        """A data URL for a local engine that decodes images itself (vLLM): the bytes as they
        are (resized if asked, re-encoded as PNG when their format is not in ``formats``) when
        a plain decode already shows the prepared pixels, else the `to_model_image` pixels as
        PNG, so that such an engine sees what `TransformersLLM` sees."""
        if not self.needs_preparation():
            return self.to_data_url(resize, None if self.format in formats else "PNG")
        image = self.to_model_image(resize)
        return f"data:image/png;base64,{encode_b64(encode_image(image, 'PNG'))}"

    def needs_preparation(self) -> bool:
        """Whether a server decoding the bytes naively (EXIF ignored, ``convert("RGB")``) would
        see other pixels than `to_model_image`: an EXIF orientation other than 1, transparency,
        or a mode other than 8-bit RGB / grayscale (CMYK, palette, 16-bit...). Reads the header
        and EXIF only (no pixels); checks the pixel limit. Raises `ImageError` like `size`."""
        if self._prepare is not None:
            return self._prepare
        plain = None if self._data is None else plain_png_size(self._data)
        if self._image is not None:
            check_pixels(self._image.size, self.max_pixels)
            prepare = needs_preparation(self._image)
        elif plain is not None:  # the common case, without Pillow's header parser
            self._header = ("PNG", plain)
            check_pixels(plain, self.max_pixels)
            prepare = False
        else:
            with self._open_source() as fp:
                header = open_image(fp)
                self._header = (str(header.format), header.size)
                check_pixels(header.size, self.max_pixels)
                prepare = needs_preparation(header)
        if self._path is None:  # a file may change between reads
            self._prepare = prepare
        return prepare

    def to_api_data_url(
        self, resize: ResizePolicy | None = None, formats: frozenset[str] = frozenset()
    ) -> str:
        """The data URL an HTTP chat backend sends: the original bytes (resized if asked,
        re-encoded as PNG when their format is not in ``formats``) when they already show the
        `to_model_image` pixels (`needs_preparation` false: zero copy), else the
        `to_model_image` pixels encoded as JPEG for a JPEG source, as PNG (lossless) for any
        other. So every backend sees the same pixels: upright, RGB, transparency on white."""
        if not self.needs_preparation():
            return self.to_data_url(resize, None if self.format in formats else "PNG")
        fmt = "JPEG" if self.format in ("JPEG", "MPO") else "PNG"
        if self._image is not None:
            own = (self._image.format or "").upper()
            fmt = "JPEG" if own in ("JPEG", "MPO") else "PNG"
        data = encode_image(self.to_model_image(resize), fmt, quality=95)
        return f"data:{mime_type(fmt)};base64,{encode_b64(data)}"

    def _unchanged(self, resize: ResizePolicy | None, format: str | None) -> bool:
        """True when ``resize``/``format`` leave the original bytes as they are."""
        source_format, size = self._read_header()
        if resize is not None:
            check_pixels(size, self.max_pixels)
            if resize.target_size(*size) != size:
                return False
        return format is None or same_format(normalize_format(format), source_format)

    def _encoded(self, resize: ResizePolicy | None, format: str | None) -> tuple[bytes, str]:
        target = None if format is None else normalize_format(format)
        source_format = self._read_header()[0]
        if self._unchanged(resize, format):
            return self.get_bytes(), source_format
        if target is None:
            Image.init()
            target = "JPEG" if source_format == "MPO" else source_format
            target = target if target in Image.SAVE else "PNG"
        # Re-encoding drops EXIF, so apply its orientation to the pixels first.
        image = resized(oriented(self.to_pil()), resize)
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
        return f"data:{mime_type(fmt)};base64,{encode_b64(data)}"

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
            detail = f"url={preview(self._url, 80)}"
        elif self._path is not None:
            detail = f"path={preview(str(self._path), 120)}"
        elif self._image is not None:
            detail = f"mode={self._image.mode!r}, size={self._image.size}"
        else:
            detail = f"sha256={self.content_hash()[:12]!r}, nbytes={len(self.get_bytes())}"
        return f"ImageRef(kind={self._kind!r}, {detail})"
