"""What the pre-send structure checks cost, against decoding the pixels (the only other way to
catch a cut JPEG/GIF/WebP). Prints microseconds per image and the ratio, measured in one run.

    .venv/bin/python benchmarks/image_checks.py [--side 1024] [--repeat 50]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from PIL import Image

from pixtill.images import ImageRef


def timed(func: Callable[[], object], repeat: int) -> float:
    """Best-of-three mean microseconds per call."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            func()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    image = Image.effect_noise((args.side, args.side), 50).convert("RGB")
    print(f"{args.side}x{args.side} noisy RGB image; microseconds per image (best of 3)")
    print(f"{'format':6} {'bytes':>10} {'check':>10} {'decode':>10} {'ratio':>7}")
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        data = buffer.getvalue()

        def check(data: bytes = data) -> None:
            ImageRef.from_value(data).validate()

        def decode(data: bytes = data) -> None:
            Image.open(io.BytesIO(data)).load()

        checked, decoded = timed(check, args.repeat), timed(decode, args.repeat)
        ratio = decoded / checked
        print(f"{fmt:6} {len(data):>10} {checked:>10.0f} {decoded:>10.0f} {ratio:>6.0f}x")


if __name__ == "__main__":
    main()
