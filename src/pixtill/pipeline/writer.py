"""The old import path of `pixtill.store.shards` (kept for code that imports it)."""

from pixtill.store.image_column import IMAGE_ARROW_TYPE
from pixtill.store.shards import ShardWriter, to_hf_image

__all__ = ["IMAGE_ARROW_TYPE", "ShardWriter", "to_hf_image"]
