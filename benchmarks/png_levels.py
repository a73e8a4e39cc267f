"""What PNG's zlib level costs when a PIL image is encoded for a chat request's data URL (a
script, not a test).

A PIL image in a chat message is sent as a lossless PNG data URL. The script encodes a
``--side``-pixel photo-like image (smooth colour fields plus sensor-like noise, the hard case
for a lossless coder) and a flat one (a diagram: solid shapes on a plain background) at zlib
levels 1, 3 and 6 (Pillow's default, the reference), ``--repeat`` times each, and prints the
median encode time, the size, both as ratios to level 6, and what the extra bytes cost on the
wire at ``--mbps`` (base64 included). Each encoding is decoded once to check it is lossless.

    .venv/bin/python benchmarks/png_levels.py [--side 1024] [--repeat 7] [--mbps 100]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image, ImageDraw

LEVELS = (1, 3, 6)
REFERENCE = 6


def photo_like(side: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    noise = rng.normal(0.0, 4.0, smooth.shape)  # a camera's noise: what makes photos costly
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def flat(side: int) -> Image.Image:
    image = Image.new("RGB", (side, side), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    for k in range(12):
        x, y = (k * 83) % (side - 200), (k * 131) % (side - 200)
        draw.rectangle((x, y, x + 180, y + 120), fill=(30 * k % 255, 90, 200 - 10 * k))
        draw.text((x + 10, y + 10), f"box {k}", fill="black")
    return image


def encode(image: Image.Image, level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def measure(name: str, image: Image.Image, repeat: int, mbps: float) -> None:
    results: dict[int, tuple[float, int]] = {}
    for level in LEVELS:
        data = encode(image, level)
        decoded = Image.open(io.BytesIO(data))
        assert decoded.tobytes() == image.tobytes(), "PNG must stay lossless"
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            encode(image, level)
            times.append(time.perf_counter() - start)
        results[level] = (statistics.median(times), len(data))
    ref_time, ref_size = results[REFERENCE]
    print(f"{name} {image.size[0]}x{image.size[1]}:")
    for level, (seconds, size) in results.items():
        wire_ms = (size - ref_size) * 4 / 3 * 8 / (mbps * 1e6) * 1e3  # base64 on the wire
        saved_ms = (ref_time - seconds) * 1e3
        print(
            f"  level {level}: {seconds * 1e3:7.1f} ms ({seconds / ref_time:.2f}x), "
            f"{size / 1e6:6.3f} MB ({size / ref_size:.2f}x); vs level {REFERENCE}: "
            f"{saved_ms:+7.1f} ms CPU saved, {wire_ms:+6.1f} ms more on a {mbps:g} Mbit/s link"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mbps", type=float, default=100.0)
    args = parser.parse_args()
    measure("photo-like", photo_like(args.side), args.repeat, args.mbps)
    measure("flat", flat(args.side), args.repeat, args.mbps)


if __name__ == "__main__":
    main()
