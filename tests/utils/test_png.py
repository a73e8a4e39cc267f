from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from pixtill.utils.png import PNGStructureError, plain_png_size, png_size


def _png(width: int = 7, height: int = 5) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_size_of_an_intact_png_matches_pillow() -> None:
    data = _png(7, 5)
    assert png_size(data) == (7, 5)
    assert png_size(memoryview(data)) == (7, 5)
    assert png_size(data + b"trailing bytes after IEND") == (7, 5)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[: len(d) // 2], "truncated PNG"),
        (lambda d: d[:-12], "truncated PNG: it ends inside a chunk"),
        (lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:], "bad CRC"),
        (lambda d: b"not a png at all", "no PNG signature"),
        (lambda d: d[:8] + _chunk(b"IEND", b""), "first chunk is not a valid IHDR"),
        (
            lambda d: d[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)),
            "IHDR says 0x5",
        ),
        (lambda d: d[:33] + _chunk(b"IEND", b""), "no image data"),
    ],
)
def test_damaged_pngs_are_refused_with_the_reason(damage, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PNGStructureError, match=message):
        png_size(damage(_png()))


def _variant(mode: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, (6, 4))
    if mode == "P":
        image.putpalette([i % 256 for i in range(768)])
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _with_chunk_before_idat(data: bytes, chunk: bytes) -> bytes:
    idat = data.index(b"IDAT") - 4
    return data[:idat] + chunk + data[idat:]


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


PNG_VARIANTS = {
    "RGB": lambda: _variant("RGB"),
    "L": lambda: _variant("L"),
    "interlaced RGB": lambda: _variant("RGB", interlace=1),
    "RGB with a text chunk": lambda: _with_chunk_before_idat(
        _variant("RGB"), _chunk(b"tEXt", b"Comment\x00hello")
    ),
    "RGBA": lambda: _variant("RGBA"),
    "LA": lambda: _variant("LA"),
    "P": lambda: _variant("P"),
    "1-bit": lambda: _variant("1"),
    "16-bit gray": lambda: _variant("I;16"),
    "RGB with tRNS": lambda: _variant("RGB", transparency=(0, 0, 0)),
    "L with tRNS": lambda: _variant("L", transparency=0),
    "RGB with EXIF orientation 6": lambda: _variant("RGB", exif=_exif(6)),
    "RGB with EXIF orientation 1": lambda: _variant("RGB", exif=_exif(1)),
}


@pytest.mark.parametrize("name", list(PNG_VARIANTS))
def test_plain_png_size_answers_only_when_pillow_would_say_nothing_to_prepare(name: str) -> None:
    from pixtill.images import ImageRef
    from pixtill.images.modes import needs_preparation

    data = PNG_VARIANTS[name]()
    plain = plain_png_size(data)
    with Image.open(io.BytesIO(data)) as image:
        pillow_says = needs_preparation(image)
        size = image.size
    if plain is not None:  # the fast answer is never wrong ...
        assert plain == size
        assert not pillow_says
    # ... and the common forms get it.
    assert (plain is not None) == (name in {"RGB", "L", "interlaced RGB", "RGB with a text chunk"})
    # `ImageRef` gives Pillow's answer either way.
    assert ImageRef.from_value(data).needs_preparation() is pillow_says


@pytest.mark.parametrize("data", [b"", b"GIF89a" + bytes(40), _png()[:30], _png()[:36]])
def test_plain_png_size_leaves_anything_else_to_pillow(data: bytes) -> None:
    assert plain_png_size(data) is None
