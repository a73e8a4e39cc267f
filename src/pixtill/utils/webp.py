"""A WebP structure check without decoding pixels: the RIFF container's declared size is all
there and every chunk inside it is complete. Source: the WebP container specification
(RFC 9649, section 2).
"""

from __future__ import annotations

import struct


class WebPStructureError(ValueError):
    """The bytes start like a WebP but are not a complete one."""


def check_webp(data: bytes | bytearray | memoryview) -> None:
    """Raise `WebPStructureError` unless the RIFF container and its chunks are complete."""
    view = memoryview(data)
    if len(view) < 12 or bytes(view[:4]) != b"RIFF" or bytes(view[8:12]) != b"WEBP":
        raise WebPStructureError("no WebP signature")
    (riff_size,) = struct.unpack_from("<I", view, 4)
    end = 8 + riff_size
    if end > len(view):
        raise WebPStructureError(
            f"truncated WebP: the file says {end} bytes, {len(view)} are there"
        )
    offset = 12
    seen_image = False
    while offset + 8 <= end:
        kind = bytes(view[offset : offset + 4])
        (length,) = struct.unpack_from("<I", view, offset + 4)
        stop = offset + 8 + length + (length & 1)  # chunks are padded to even sizes
        if offset + 8 + length > end:
            name = kind.decode("latin-1")
            raise WebPStructureError(f"truncated WebP: its {name!r} chunk at byte {offset} is cut")
        seen_image = seen_image or kind in (b"VP8 ", b"VP8L", b"ANMF")
        offset = stop
    if not seen_image:
        raise WebPStructureError("broken WebP: no image data chunk")
