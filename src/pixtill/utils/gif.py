"""A GIF structure check without decoding pixels: every block and data sub-block complete, up
to the trailer byte. Source: the GIF89a specification (W3C / CompuServe, 1990), sections 17-27.
"""

from __future__ import annotations

import struct

SIGNATURES = (b"GIF87a", b"GIF89a")
_EXTENSION, _IMAGE, _TRAILER = 0x21, 0x2C, 0x3B


class GIFStructureError(ValueError):
    """The bytes start like a GIF but are not a complete one."""


def _color_table(flags: int) -> int:
    return 3 * (1 << ((flags & 0x07) + 1)) if flags & 0x80 else 0


def gif_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(width, height)`` (the logical screen) of a GIF whose blocks are all complete.

    Raises `GIFStructureError` when it is cut short or has no image.
    """
    view = memoryview(data)
    if bytes(view[:6]) not in SIGNATURES:
        raise GIFStructureError("no GIF signature")
    end = len(view)
    if end < 13:
        raise GIFStructureError("truncated GIF: it ends in its header")
    width, height, flags = struct.unpack_from("<HHB", view, 6)
    offset = 13 + _color_table(flags)
    images = 0
    while True:
        if offset >= end:
            raise GIFStructureError(f"truncated GIF: no trailer (it ends at byte {end})")
        kind = view[offset]
        if kind == _TRAILER:
            if not images:
                raise GIFStructureError("broken GIF: no image before the trailer")
            return width, height
        if kind == _EXTENSION:
            offset += 2
        elif kind == _IMAGE:
            if offset + 10 > end:
                raise GIFStructureError(f"truncated GIF: an image header at byte {offset} is cut")
            offset += 10 + _color_table(view[offset + 9]) + 1  # + the LZW code size
            images += 1
        else:
            raise GIFStructureError(f"broken GIF: unknown block 0x{kind:02X} at byte {offset}")
        while True:  # data sub-blocks, ended by a zero-length one
            if offset >= end:
                raise GIFStructureError(f"truncated GIF: a data block is cut at byte {end}")
            length = view[offset]
            offset += 1 + length
            if length == 0:
                break
