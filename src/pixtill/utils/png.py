"""A PNG structure check without Pillow: the same test as ``PngImageFile.verify`` (every chunk
complete and its CRC right, up to IEND), done on a memoryview without copying the chunks.

Every image a task sends is checked; for PNG, Pillow's open + verify cost as much CPU as
the request itself (objects per chunk, each IDAT copied), while this is one ``zlib.crc32``
per chunk.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER = struct.Struct(">I4s")
_MAX_CHUNK = 2**31 - 1


class PNGStructureError(ValueError):
    """The bytes start like a PNG but are not a complete, intact one."""


def png_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(width, height)`` of a PNG whose chunks are all complete with the right CRC.

    Raises `PNGStructureError` naming what is wrong: truncated, a bad CRC, no IHDR first,
    no IDAT, or no IEND.
    """
    view = memoryview(data)
    if view[:8] != SIGNATURE:
        raise PNGStructureError("no PNG signature")
    size: tuple[int, int] | None = None
    seen_data = False
    offset, end = 8, len(view)
    while True:
        if offset + 12 > end:
            raise PNGStructureError(f"truncated PNG: it ends inside a chunk at byte {offset}")
        length, kind = _HEADER.unpack_from(view, offset)
        if length > _MAX_CHUNK:
            raise PNGStructureError(f"bad chunk length {length} at byte {offset}")
        stop = offset + 8 + length
        if stop + 4 > end:
            name = kind.decode("latin-1")
            raise PNGStructureError(f"truncated PNG: its {name} chunk at byte {offset} is cut")
        (crc,) = struct.unpack_from(">I", view, stop)
        if zlib.crc32(view[offset + 4 : stop]) != crc:
            name = kind.decode("latin-1")
            raise PNGStructureError(f"broken PNG: bad CRC in the {name} chunk at byte {offset}")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise PNGStructureError("broken PNG: the first chunk is not a valid IHDR")
            width, height = struct.unpack_from(">II", view, offset + 8)
            if not width or not height:
                raise PNGStructureError(f"broken PNG: IHDR says {width}x{height} pixels")
            size = (width, height)
        elif kind == b"IDAT":
            seen_data = True
        elif kind == b"IEND":
            if not seen_data:
                raise PNGStructureError("broken PNG: no image data (IDAT) before IEND")
            return size
        offset = stop + 4


def plain_png_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG that any decoder shows as it is: 8-bit grayscale or RGB,
    with no transparency (``tRNS``) and no EXIF (``eXIf``) before its pixels; None for any
    other PNG, or for bytes that do not start like one (the caller then asks Pillow).

    Reads the chunk headers up to the first IDAT only (no CRC: `png_size` checks those), so it
    costs a microsecond where Pillow's header parser cost ~50 (the check runs on every image a
    task sends). Pillow opens such a PNG as mode "L" or "RGB" with no "transparency" and no
    "exif" in its info, which is what `pixtill.images.modes.needs_preparation` reads.
    """
    view = memoryview(data)
    if len(view) < 33 or view[:8] != SIGNATURE:
        return None
    length, kind = _HEADER.unpack_from(view, 8)
    if kind != b"IHDR" or length != 13:
        return None
    width, height, depth, color_type = struct.unpack_from(">IIBB", view, 16)
    if depth != 8 or color_type not in (0, 2) or not width or not height:
        return None  # palette, alpha, 16-bit or 1-4-bit: Pillow decides
    offset, end = 33, len(view)
    while offset + 8 <= end:
        length, kind = _HEADER.unpack_from(view, offset)
        if kind == b"IDAT":
            return width, height
        if kind in (b"tRNS", b"eXIf"):
            return None
        offset += 12 + length
    return None
