"""A streaming task that takes images formats its rows off the event loop (checking an image and
building its data URL, a PNG encode for a PIL image, would stall every request in flight), in
one worker thread of its own, one row at a time; a text-only task formats inline."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from doubles import DescribingLLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration, TextGenerationWithImage


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Watched:
    """Records, per `format_input` call, whether it ran on the loop, its thread, and overlap."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str]] = []
        self.active = 0
        self.overlapped = False
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.overlapped |= self.active > 1
            self.calls.append((_on_loop(), threading.current_thread().name))

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


WATCH = Watched()


class WatchedVision(TextGenerationWithImage):
    def format_input(self, input: dict[str, Any]) -> Any:
        WATCH.enter()
        try:
            return super().format_input(input)
        finally:
            WATCH.leave()


class WatchedText(TextGeneration):
    def format_input(self, input: dict[str, Any]) -> Any:
        WATCH.enter()
        try:
            return super().format_input(input)
        finally:
            WATCH.leave()


def test_image_rows_are_formatted_off_the_loop_one_at_a_time(tmp_path: Path) -> None:
    WATCH.__init__()  # type: ignore[misc]
    images = [Image.new("RGB", (64, 48), (20 * i, 90, 160)) for i in range(12)]
    with Pipeline(name="off-loop", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"q{i}", "image": im} for i, im in enumerate(images)]
        )
        load >> WatchedVision(name="caption", llm=DescribingLLM())
    rows = pipeline.run(output_dir=tmp_path / "out", show_progress=False, use_cache=False)[
        "caption"
    ]
    assert rows[0]["generation"] == "[0] saw user: q0 <PNG 64x48>"
    assert len(WATCH.calls) == 12
    assert not any(on_loop for on_loop, _ in WATCH.calls)
    assert {name for _, name in WATCH.calls} == {"pixtill-prepare_0"}
    assert not WATCH.overlapped


def test_text_rows_are_formatted_inline(tmp_path: Path) -> None:
    WATCH.__init__()  # type: ignore[misc]
    with Pipeline(name="inline", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(5)])
        load >> WatchedText(name="ask", llm=DescribingLLM())
    pipeline.run(output_dir=tmp_path / "out", show_progress=False, use_cache=False)
    assert [on_loop for on_loop, _ in WATCH.calls] == [True] * 5
