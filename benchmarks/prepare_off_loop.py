"""How long a streaming image task keeps the event loop from serving requests while it formats
rows (a script, not a test).

A task's `format_input` checks each image and builds its data URL; a PIL image is PNG-encoded
there. On the event loop, every millisecond of that is a millisecond in which no response is
read and no request is sent. The script formats ``--rows`` rows with ``--side``-pixel images
(PIL images, and PNG bytes) through `TextGenerationWithImage.aprepare_row` as the streaming
executor does, with ``--window`` rows at once, while a ticker coroutine wakes every 1 ms and
records how late it wakes: the loop's stall. Three ways, measured in one run:

* bare: the ticker alone (the loop's own jitter, the reference);
* inline: `prepare_row` called on the loop (what the executor did before);
* off-loop: `aprepare_row` (the step's own worker thread).

    .venv/bin/python benchmarks/prepare_off_loop.py [--rows 40] [--side 1024] [--window 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from pixtill.models.llms.base import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps.tasks import TextGenerationWithImage


class Instant(AsyncLLM):
    @property
    def model_name(self) -> str:
        return "instant"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        return {"generations": ["ok"] * num_generations}


def picture(side: int, k: int) -> Image.Image:
    """A photo-like image: a gradient with noise (PNG compresses it about as well as a photo)."""
    gradient = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    noise = Image.effect_noise((side, side), 40 + k % 7).convert("RGB")
    return Image.blend(gradient, noise, 0.3)


async def stalls(work: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """(seconds the work took, worst and total ticker lateness in ms) while ``work`` runs."""
    late: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(max(0.0, time.perf_counter() - start - 0.001) * 1000)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await work()
    took = time.perf_counter() - started
    done.set()
    await tick
    return took, max(late, default=0.0), sum(late)


async def run(step: TextGenerationWithImage, rows: list[dict[str, Any]], how: str, window: int):
    semaphore = asyncio.Semaphore(window)

    async def one(index: int, row: dict[str, Any]) -> None:
        async with semaphore:
            if how == "inline":
                step.prepare_row(row, index)
            else:
                await step.aprepare_row(row, index)
            await asyncio.sleep(0)  # the request would be sent here

    async def work() -> None:
        if how == "bare":
            await asyncio.sleep(0.2)
            return
        await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))

    return await stalls(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args()
    with Pipeline(name="bench-prepare"):  # declared in a pipeline that never runs
        step = TextGenerationWithImage(name="caption", llm=Instant())
    step.load()
    pil_rows = [
        {"instruction": "Describe.", "image": picture(args.side, k)} for k in range(args.rows)
    ]
    png_rows = []
    for row in pil_rows:
        buffer = io.BytesIO()
        row["image"].save(buffer, format="PNG")
        png_rows.append({"instruction": "Describe.", "image": buffer.getvalue()})
    size_kb = statistics.mean(len(r["image"]) for r in png_rows) / 1024
    print(
        f"{args.rows} rows, {args.side}x{args.side} images (PNG ~{size_kb:.0f} KB), "
        f"window {args.window}; loop stall = how late a 1 ms ticker wakes"
    )
    print(f"{'input':10} {'way':9} {'ms/row':>7} {'worst stall ms':>15} {'total stall ms':>15}")
    for label, rows in (("PIL image", pil_rows), ("PNG bytes", png_rows)):
        for how in ("bare", "inline", "off-loop"):
            took, worst, total = asyncio.run(run(step, rows, how, args.window))
            per_row = "" if how == "bare" else f"{took / len(rows) * 1000:7.1f}"
            print(f"{label:10} {how:9} {per_row:>7} {worst:15.1f} {total:15.1f}")
    step.unload()


if __name__ == "__main__":
    main()
