"""Cost of building a batch file: pixtill's batch request path against a bare loop (a script,
not a test).

    .venv/bin/python benchmarks/batch_requests.py               # 2,000 rows, ~40 KB PNGs
    .venv/bin/python benchmarks/batch_requests.py --rows 500

No network: it times what `OpenAIBatchLLM` does before the upload, for ``--rows`` chat inputs
each holding one ~40 KB random-noise PNG (a pool of 50, as bytes):

* pixtill: every image decoded once (a corrupt one must fail its row now, not hours later at
  the provider), the request built (data URL), and the JSONL line encoded;
* bare: the same JSONL line from a pre-built data URL with ``json.dumps`` (no decoding).

Prints seconds, rows per second and the ratio pixtill / bare (best of 3 repeats of each).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import time
from typing import Any

from PIL import Image

from pixtill.images import ImageRef
from pixtill.models.llms import OpenAIBatchLLM
from pixtill.models.llms._batch import _encoded, check_images


def _noise_png(seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (116, 116), bytes(rng.getrandbits(8) for _ in range(116**2 * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def _pixtill(llm: OpenAIBatchLLM, pool: list[bytes], rows: int) -> int:
    size = 0
    for i in range(rows):
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Describe picture {i}."},
                    {"type": "image", "image": ImageRef.from_value(pool[i % len(pool)])},
                ],
            }
        ]
        check_images(messages)
        for line in await llm._request_lines(i, messages, 1, {"max_tokens": 64}):
            size += len(_encoded(llm._wire_line(line)))
    return size


def _bare(urls: list[str], rows: int) -> int:
    size = 0
    for i in range(rows):
        body = {
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Describe picture {i}."},
                        {"type": "image_url", "image_url": {"url": urls[i % len(urls)]}},
                    ],
                }
            ],
            "max_tokens": 64,
        }
        line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        size += len(json.dumps(line).encode()) + 1
    return size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    pool = [_noise_png(k) for k in range(50)]
    urls = ["data:image/png;base64," + base64.b64encode(p).decode() for p in pool]
    llm = OpenAIBatchLLM(model="gpt-4o-mini", api_key="sk-bench-not-a-secret")
    best = {"pixtill": float("inf"), "bare": float("inf")}
    sizes = {}
    for _ in range(3):
        start = time.perf_counter()
        sizes["pixtill"] = asyncio.run(_pixtill(llm, pool, args.rows))
        best["pixtill"] = min(best["pixtill"], time.perf_counter() - start)
        start = time.perf_counter()
        sizes["bare"] = _bare(urls, args.rows)
        best["bare"] = min(best["bare"], time.perf_counter() - start)
    print(f"rows={args.rows} image={len(pool[0]) / 1024:.0f} KB PNG")
    for name in ("pixtill", "bare"):
        seconds = best[name]
        print(
            f"{name:8s} {seconds:7.3f} s  {args.rows / seconds:8.0f} rows/s  "
            f"JSONL {sizes[name] / 2**20:6.1f} MiB"
        )
    print(f"ratio pixtill/bare (time): {best['pixtill'] / best['bare']:.2f}x")


if __name__ == "__main__":
    main()
