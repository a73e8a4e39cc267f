"""The resize policy: how large an image a model may receive."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ResizePolicy:
    """Shrink images to at most ``max_side`` on the longest side and ``max_pixels`` in area."""

    max_side: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_side", "max_pixels"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"ResizePolicy.{name} must be at least 1, got {limit}")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to resize to: aspect ratio kept, never larger, each side at least 1."""
        if width < 1 or height < 1:
            raise ValueError(f"invalid image size {width}x{height}")
        scale = 1.0
        if self.max_side is not None and max(width, height) > self.max_side:
            scale = self.max_side / max(width, height)
        if self.max_pixels is not None and width * height > self.max_pixels:
            scale = min(scale, math.sqrt(self.max_pixels / (width * height)))
        if scale >= 1.0:
            return width, height
        new_w = min(width, max(1, math.floor(width * scale + 1e-9)))
        new_h = min(height, max(1, math.floor(height * scale + 1e-9)))
        if self.max_pixels is not None and new_w * new_h > self.max_pixels:
            # Rounding, or a side clamped to 1 pixel on an extreme aspect ratio.
            if new_w >= new_h:
                new_w = max(1, self.max_pixels // new_h)
            else:
                new_h = max(1, self.max_pixels // new_w)
        return new_w, new_h
