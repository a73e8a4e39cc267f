"""The quality steps' costs (a script, not a test).

    .venv/bin/python benchmarks/quality.py              # all three
    .venv/bin/python benchmarks/quality.py --hashes 1000000 --skip-ocr

Printed:

1. dedup: `cluster_hashes` on N random 64-bit hashes (default 100,000) with 2% near copies
   (1-3 flipped bits), rows/s at max_distance 4 and 8, next to the bare reference `np.unique`
   (exact duplicates only) on the same array: the price of near-duplicate search.
2. OCR: ms per image for `OCR.read` on drawn signs and two-line documents (360x120 px and
   360x140 px), median of 3 passes over 20 images, with onnxruntime's default threads and 1.
3. judge overhead: µs per row that `VisionJudge` adds around its model (prompt rendering,
   image part, schema, validation of the reply, output columns), with an instant fake model
   that answers the schema, next to `TextGenerationWithImage` with the same instant model
   (the bare reference: the same image, no schema or validation).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image

from pixtill.models.llms.base import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps.quality import VisionJudge, verdict_schema
from pixtill.steps.quality.hashing import cluster_hashes
from pixtill.steps.tasks import TextGenerationWithImage


def bench_dedup(n: int) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    copies = rng.choice(n, n // 50, replace=False)
    for target in copies:
        source = rng.integers(0, n)
        flips = rng.choice(64, int(rng.integers(1, 4)), replace=False)
        value = hashes[source]
        for bit in flips:
            value ^= np.uint64(1) << np.uint64(int(bit))
        hashes[target] = value
    start = time.perf_counter()
    np.unique(hashes, return_index=True, return_inverse=True)
    bare = time.perf_counter() - start
    print(f"dedup on {n:,} hashes (2% near copies):")
    print(f"  bare np.unique (exact only)   {n / bare:>14,.0f} rows/s")
    for distance in (4, 8):
        start = time.perf_counter()
        labels = cluster_hashes(hashes, distance)
        took = time.perf_counter() - start
        groups = len(np.unique(labels))
        print(
            f"  cluster_hashes, distance {distance}    {n / took:>14,.0f} rows/s"
            f"  ({took:.2f} s, {n - groups:,} rows in a group with an earlier one,"
            f" {bare / took:.2f}x the bare rate)"
        )


def bench_ocr() -> None:
    from pixtill.demo_quality import draw_document
    from pixtill.steps.quality import OCR

    texts = ["OPEN 9 TO 5", "NO PARKING", "FRAGILE", "COFFEE 3.50\nTOTAL 3.50", "EXIT 12"]
    images = []
    for k in range(20):
        buffer = io.BytesIO()
        draw_document(texts[k % len(texts)], "black", "white").save(buffer, format="PNG")
        images.append(buffer.getvalue())
    print("OCR (RapidOCR PP-OCRv4, CPU):")
    for threads in (None, 1):
        # Declared in a pipeline that never runs (so no "hasn't received a pipeline" warning):
        # the benchmark times the OCR engine itself.
        with Pipeline(name="bench-ocr"):
            step = OCR(name="ocr", threads=threads)
        start = time.perf_counter()
        step.load()
        load = time.perf_counter() - start
        step.read(images[0])  # warm-up
        passes = []
        for _ in range(3):
            start = time.perf_counter()
            for image in images:
                step.read(image)
            passes.append((time.perf_counter() - start) / len(images) * 1000)
        step.unload()
        label = "default threads" if threads is None else f"{threads} thread"
        print(
            f"  {label:<16} {statistics.median(passes):6.1f} ms/image (passes "
            f"{', '.join(f'{p:.1f}' for p in passes)}; engine load {load:.2f} s)"
        )


class InstantJudge(AsyncLLM):
    """Answers at once: the schema's verdict when asked for one, else a fixed text."""

    @property
    def model_name(self) -> str:
        return "bench/instant"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        schema = kwargs.get("structured_output")
        if schema is None:
            return {"generations": ["a caption"] * num_generations}
        verdict: dict[str, Any] = {
            name: prop["maximum"]
            for name, prop in schema["properties"].items()
            if prop.get("type") == "integer"
        }
        verdict["rationale"] = "fine"
        return {"generations": [json.dumps(verdict)] * num_generations}


def bench_judge(rows: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    image = buffer.getvalue()
    batch = [{"image": image, "prompt": f"a red square number {k}"} for k in range(rows)]
    # Declared in a pipeline that never runs (so no "hasn't received a pipeline" warning): the
    # benchmark times the steps' own work, without the executor.
    with Pipeline(name="bench-judge"):
        judge = VisionJudge(name="judge", llm=InstantJudge(), rubric="prompt_adherence")
        bare = TextGenerationWithImage(
            name="bare", llm=InstantJudge(), template="{{ prompt }}", columns=["prompt"]
        )
    schema = verdict_schema(judge.rubric)
    assert schema["required"]
    timings: dict[str, list[float]] = {"judge": [], "bare": []}
    for step in (judge, bare):
        step.load()
        step.process_batch(batch[:50])  # warm-up
    for _ in range(3):
        for name, step in (("bare", bare), ("judge", judge)):
            start = time.perf_counter()
            out = step.process_batch(batch)
            timings[name].append((time.perf_counter() - start) / rows * 1e6)
            assert len(out) == rows
    for step in (judge, bare):
        step.unload()
    bare_us, judge_us = statistics.median(timings["bare"]), statistics.median(timings["judge"])
    print(f"judge overhead ({rows:,} rows, instant model, median of 3):")
    print(f"  TextGenerationWithImage (bare)  {bare_us:7.1f} µs/row")
    print(
        f"  VisionJudge                     {judge_us:7.1f} µs/row "
        f"(+{judge_us - bare_us:.1f} µs/row, {judge_us / bare_us:.2f}x the bare task)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--judge-rows", type=int, default=2_000)
    parser.add_argument("--skip-ocr", action="store_true")
    args = parser.parse_args()
    print("(a shared 2-core machine: figures move by 10-20% between runs)\n")
    bench_dedup(args.hashes)
    print()
    if not args.skip_ocr:
        bench_ocr()
        print()
    bench_judge(args.judge_rows)


if __name__ == "__main__":
    main()
