from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from pixtill.utils.png import PNGStructureError, png_size


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
