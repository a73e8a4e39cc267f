"""The old import path of `pixtill.store.cache` (kept for code that imports it)."""

from pixtill.store.cache import (
    NESTED_RUN_ONLY_FIELDS,
    RUN_ONLY_FIELDS,
    ResponseCache,
    decode_value,
    encode_value,
    row_key,
    step_signature,
)

__all__ = [
    "NESTED_RUN_ONLY_FIELDS",
    "RUN_ONLY_FIELDS",
    "ResponseCache",
    "decode_value",
    "encode_value",
    "row_key",
    "step_signature",
]
