"""A JPEG structure check without decoding pixels: the marker segments up to the first scan are
walked (each complete, a frame header with a size before the scan), and an end-of-image marker
must follow the scan data.

Pillow's ``verify`` does not look at JPEG data at all, and a decoder that meets the end of a
cut file fills the rest with grey, so a JPEG cut at 60 % would otherwise be sent and captioned.
Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so any
``FF D9`` after the first scan is a real end of image (searched from the end, where it usually
is, so an intact file costs microseconds). Source: ITU-T T.81 (JPEG),
annex B (the marker syntax).
"""

from __future__ import annotations

import struct

SIGNATURE = b"\xff\xd8\xff"
_SOS = 0xDA
_EOI = 0xD9
# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, _EOI})
_U16 = struct.Struct(">H")


class JPEGStructureError(ValueError):
    """The bytes start like a JPEG but are not a complete one."""


def jpeg_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(width, height)`` of a JPEG whose header segments are complete and whose scan data is
    followed by an end-of-image marker.

    Cost: one pass over the header segments plus one ``find`` over the rest (C speed).
    Raises `JPEGStructureError` naming what is wrong (truncated, no frame header, no end).
    """
    buffer = data if isinstance(data, (bytes, bytearray)) else bytes(data)
    if not buffer.startswith(SIGNATURE):
        raise JPEGStructureError("no JPEG signature")
    end = len(buffer)
    offset = 2
    size: tuple[int, int] | None = None
    while True:
        # Markers may be padded with any number of 0xFF fill bytes.
        while (
            offset < end
            and buffer[offset] == 0xFF
            and offset + 1 < end
            and (buffer[offset + 1] == 0xFF)
        ):
            offset += 1
        if offset + 2 > end:
            raise JPEGStructureError(f"truncated JPEG: it ends in its header at byte {offset}")
        if buffer[offset] != 0xFF:
            raise JPEGStructureError(f"broken JPEG: no marker at byte {offset}")
        marker = buffer[offset + 1]
        if marker == _EOI:
            raise JPEGStructureError("broken JPEG: it ends before any image data")
        if marker in _STANDALONE:
            offset += 2
            continue
        if offset + 4 > end:
            raise JPEGStructureError(f"truncated JPEG: it ends in a segment at byte {offset}")
        (length,) = _U16.unpack_from(buffer, offset + 2)
        if length < 2:
            raise JPEGStructureError(f"broken JPEG: segment length {length} at byte {offset}")
        stop = offset + 2 + length
        if stop > end:
            raise JPEGStructureError(
                f"truncated JPEG: the segment FF{marker:02X} at byte {offset} is cut"
            )
        if marker in _SOF:
            if length < 8:
                raise JPEGStructureError("broken JPEG: a frame header is too short")
            height, width = struct.unpack_from(">HH", buffer, offset + 5)
            if not width or not height:
                raise JPEGStructureError(f"broken JPEG: the frame header says {width}x{height}")
            size = (width, height)
        elif marker == _SOS:
            if size is None:
                raise JPEGStructureError("broken JPEG: image data before any frame header")
            if buffer.rfind(b"\xff\xd9", stop) < 0:  # from the end: where it usually is
                raise JPEGStructureError(
                    "truncated JPEG: no end-of-image marker after the image data"
                )
            return size
        offset = stop
