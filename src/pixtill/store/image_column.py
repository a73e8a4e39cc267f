"""Build a shard's image column (``{"bytes", "path"}`` structs) in memory kept across shards.

``pa.array`` copies every image into a fresh Arrow buffer that grows by doubling and is freed
after the shard is written, so each shard touches ~1.5x its image bytes of new memory. On the
VMs we measure on, first-touching memory is what costs: 70-200 ms of kernel time per 40 MB
shard (2-5 ms when the memory is reused). Here the bytes are copied once into a ``bytearray``
that the next shard reuses, and Arrow wraps it without a copy.
"""

from __future__ import annotations

import base64
import os
from array import array
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

METADATA_COLUMN = "pixtill_metadata"  # `pixtill.steps.metadata`'s (the store sits below steps)
IMAGE_ARROW_TYPE = pa.struct({"bytes": pa.binary(), "path": pa.string()})
_MAX_BINARY_BYTES = 2**31 - 1  # `binary` has 32-bit offsets


class ImageColumnBuffer:
    """One image column's byte buffer, reused by every shard the writer builds."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def build(self, values: list[dict[str, Any] | None]) -> pa.Array:
        """A struct array of ``values`` (HF image dicts or None).

        The array points into this object's buffer: it must be dropped before the next
        `build` (a still-referenced buffer is detected and a new one used instead)."""
        sizes = [0 if v is None or v["bytes"] is None else len(v["bytes"]) for v in values]
        total = sum(sizes)
        if total > _MAX_BINARY_BYTES:
            return pa.array(values, type=IMAGE_ARROW_TYPE)
        buffer = self._reserve(total)
        view = memoryview(buffer)
        offsets = array("i", [0]) * (len(values) + 1)
        position = 0
        for i, (value, size) in enumerate(zip(values, sizes)):
            if size:
                view[position : position + size] = value["bytes"]  # type: ignore[index]
                position += size
            offsets[i + 1] = position
        validity = _validity([v is not None and v["bytes"] is not None for v in values])
        data = pa.Array.from_buffers(
            pa.binary(),
            len(values),
            [validity, pa.py_buffer(offsets), pa.py_buffer(view[:total])],
        )
        paths = pa.array([None if v is None else v["path"] for v in values], type=pa.string())
        return pa.StructArray.from_arrays(
            [data, paths],
            fields=list(IMAGE_ARROW_TYPE),
            mask=null_mask([v is None for v in values]),
        )

    def _reserve(self, size: int) -> bytearray:
        buffer = self._buffer
        if buffer:
            try:  # resizing fails while an earlier array still points into the buffer
                del buffer[-1]  # (a shrink by one byte, then a grow, never moves the bytes)
                buffer.append(0)
            except BufferError:
                buffer = self._buffer = bytearray()
        if len(buffer) < size:
            buffer = self._buffer = bytearray(size + size // 4)
        return buffer


def keep_originals(rows: list[dict[str, Any]], lost: dict[int, dict[str, Any]]) -> None:
    """Keep the values an image column could not store (``lost``: row index -> column ->
    value, or list of values for a list column) in each row's metadata as
    ``original_<column>``, so that nothing the user gave is lost with the null image.

    An image column's ``{"bytes": None, "path": <original>}`` would keep a path too, but
    `datasets.Image` opens that path when the row is read, and a failed row would then stop
    every read of the dataset; metadata is plain data. Values are kept as strings: a path as
    itself, bytes as a ``data:application/octet-stream;base64,`` URL, anything else as its
    ``repr``. Rows are replaced (shallow copies), never changed in place."""
    for index, columns in lost.items():
        row = rows[index]
        metadata = row.get(METADATA_COLUMN)
        if metadata is not None and not isinstance(metadata, dict):
            continue  # a user's own column of that name: leave it alone (the warning stays)
        kept = dict(metadata or {})
        for column, value in columns.items():
            kept[f"original_{column}"] = (
                [_as_text(v) for v in value] if isinstance(value, list) else _as_text(value)
            )
        rows[index] = {**row, METADATA_COLUMN: kept}


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "data:application/octet-stream;base64," + base64.b64encode(value).decode()
    return repr(value)


def _validity(present: list[bool]) -> pa.Buffer | None:
    """An Arrow validity bitmap (1 = present), or None when nothing is missing."""
    if all(present):
        return None
    return pa.array(present, type=pa.bool_()).buffers()[1]


def null_mask(missing: list[bool]) -> pa.BooleanArray | None:
    """The ``mask`` argument Arrow's ``from_arrays`` take (True = null), or None when nothing
    is missing."""
    return pa.array(missing, type=pa.bool_()) if any(missing) else None


__all__ = [
    "IMAGE_ARROW_TYPE",
    "METADATA_COLUMN",
    "ImageColumnBuffer",
    "keep_originals",
    "null_mask",
]
