"""How a row's values become Arrow columns: image values as Hugging Face image dicts, URL
columns as text, JSON fallbacks, and the widening of a column's type from chunk to chunk.

Column kinds: ``image`` / ``image_list`` (stored as ``datasets.Image()``), ``text`` (an image
column of URLs, kept as strings), ``json`` (a column pyarrow cannot type, stored as JSON
strings) and ``value`` (typed by pyarrow).
"""

from __future__ import annotations

import json
import os
from pathlib import PurePath
from typing import Any, Literal

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
from PIL import Image as PILImage

from pixtill.images import ImageError, ImageRef, coerce_image, is_image_value
from pixtill.utils.b64 import encode_b64

ColumnKind = Literal["image", "image_list", "text", "json", "value"]
ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    TypeError,
)


# -- values ----------------------------------------------------------------------------------


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.lstrip()[:8].lower().startswith(("http://", "https://"))


def to_hf_image(value: Any, *, column: str | None = None, row: int | None = None) -> Any:
    """``value`` as a Hugging Face image dict ``{"bytes", "path"}`` with the bytes embedded; None
    stays None. An http(s) URL is kept as the path (never fetched). The image is checked
    (`ImageRef.validate`), so that a truncated or corrupt one fails here (`ImageError`) rather
    than when the dataset is read."""
    if value is None:
        return None
    if is_url(value):
        return {"bytes": None, "path": str(value).strip()}
    given_path: str | None = None
    if isinstance(value, dict) and set(value) <= {"bytes", "path"} and value.get("path"):
        given_path = os.fspath(value["path"])
    elif isinstance(value, (str, PurePath)):
        given_path = os.fspath(value).strip()
    ref = coerce_image(value, row=row, column=column)
    if ref.url is not None:
        return {"bytes": None, "path": ref.url}
    data = ref.get_bytes()
    path: str | None = None
    if ref.kind == "path":
        usable = given_path is not None and not given_path[:5].lower().startswith("file:")
        path = given_path if usable else str(ref.path)
    elif isinstance(value, dict):
        path = given_path
    if ref.kind != "pil":  # a PIL image was encoded by us
        try:
            # Header, pixel limit and file structure (a truncated PNG fails here); decoding
            # every pixel of every image would cost more than the rest of the write.
            (ref if ref.kind == "bytes" else ImageRef("bytes", data=data)).validate()
        except ImageError as exc:
            raise exc.at(row=row, column=column) from exc
    return {"bytes": data, "path": path}


def as_text(value: Any) -> Any:
    """A value of a URL column: strings as is, images as a URL or data URL."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [as_text(item) for item in value]
    if is_image_value(value):
        ref = ImageRef.from_value(value)
        return ref.url if ref.url is not None else ref.to_data_url()
    return to_json(value)


def json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return encode_b64(value)
    if isinstance(value, ImageRef):
        return value.reference()
    if isinstance(value, PILImage.Image):
        return ImageRef.from_value(value).reference()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=json_default)


def estimate_nbytes(row: dict[str, Any]) -> int:
    """A cheap estimate of what a row adds to a chunk: strings and images by size, lists of
    them item by item, anything else (metadata dicts) as a flat 64 bytes. It only decides when
    to convert a chunk; shard sizes are measured on the converted arrays."""
    return sum(value_nbytes(value) for value in row.values())


def value_nbytes(value: Any, *, in_list: bool = False) -> int:
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, ImageRef):
        if value.kind == "bytes":
            return len(value.get_bytes())
        if value.kind == "path" and value.path is not None:
            try:
                return value.path.stat().st_size
            except OSError:
                return 64
        if value.kind == "pil":
            width, height = value.size
            return width * height * 3
        return 64
    if isinstance(value, PILImage.Image):
        return value.width * value.height * 3
    if isinstance(value, (list, tuple)) and not in_list:
        return sum(value_nbytes(item, in_list=True) for item in value)
    return 64


# -- typing columns --------------------------------------------------------------------------


def informative(values: list[Any]) -> Any:
    """The first value that tells what a column holds: not None and not an empty list (for a
    list, its first non-None element wrapped in a list)."""
    for value in values:
        if isinstance(value, (list, tuple)):
            for item in value:
                if item is not None:
                    return [item]
        elif value is not None:
            return value
    return None


def decide(sample: Any, explicit: bool) -> ColumnKind:
    is_list = isinstance(sample, list)
    first = sample[0] if is_list else sample
    if is_url(first) or (isinstance(first, ImageRef) and first.url is not None):
        return "text" if explicit or is_image_value(first) else "value"
    if explicit or is_image_value(first):
        return "image_list" if is_list else "image"
    return "value"


def has_empty_struct(dtype: pa.DataType) -> bool:
    if pa.types.is_struct(dtype):
        return dtype.num_fields == 0 or any(
            has_empty_struct(dtype.field(i).type) for i in range(dtype.num_fields)
        )
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return has_empty_struct(dtype.value_type)
    return False


def unify(old: pa.DataType | None, new: pa.DataType) -> pa.DataType:
    if old is None or old == new:
        return new
    merged = pa.unify_schemas(
        [pa.schema([("c", old)]), pa.schema([("c", new)])], promote_options="permissive"
    )
    return merged.field("c").type


def conform(array: pa.Array, dtype: pa.DataType) -> pa.Array:
    """``array`` cast to the wider ``dtype``: struct fields matched by name (missing ones null),
    lists element-wise, null to anything (not left to ``cast``, which differs across pyarrow
    versions on structs)."""
    if array.type == dtype:
        return array
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), type=dtype)
    mask = array.is_null() if array.null_count else None
    if pa.types.is_struct(dtype) and pa.types.is_struct(array.type):
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        children = [
            conform(array.field(f.name), f.type)
            if f.name in names
            else pa.nulls(len(array), f.type)
            for f in dtype
        ]
        return pa.StructArray.from_arrays(children, fields=list(dtype), mask=mask)
    if pa.types.is_list(dtype) and pa.types.is_list(array.type):
        if array.offset:  # a slice: copy it so that its offsets start at 0
            array = pa.concat_arrays([array])
        values = conform(array.values, dtype.value_type)  # offsets index into the whole child
        return pa.ListArray.from_arrays(array.offsets, values, type=dtype, mask=mask)
    return array.cast(dtype)


def conform_chunked(column: pa.ChunkedArray, dtype: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array([conform(chunk, dtype) for chunk in column.chunks], type=dtype)
