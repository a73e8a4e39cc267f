"""A streaming task that takes images formats its rows off the event loop when that work is
slow (a PNG encode for a PIL image, decoding, resizing would stall every request in flight), in
one worker thread of its own, one row at a time; rows that format quickly, and text-only
tasks, stay inline."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from doubles import DescribingLLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration, TextGenerationWithImage, abstract_task
from pixtill.steps.tasks.prepare_offload import PrepareCost


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


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10 * i, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def _run_vision(tmp_path: Path, images: list[Any]) -> None:
    with Pipeline(name="cost", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"q{i}", "image": im} for i, im in enumerate(images)]
        )
        load >> WatchedVision(name="caption", llm=DescribingLLM())
    rows = pipeline.run(output_dir=tmp_path / "out", show_progress=False, use_cache=False)
    assert rows["caption"][0]["generation"] == "[0] saw user: q0 <PNG 32x24>"


def test_encoded_image_rows_that_format_quickly_stay_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a thread hop per row cost the whole pipeline a fifth of its throughput on 40 KB PNGs; the
    # limit is lifted here so that a busy test machine cannot make these rows look slow
    monkeypatch.setattr(PrepareCost, "LIMIT", float("inf"))
    WATCH.__init__()  # type: ignore[misc]
    _run_vision(tmp_path, [_png(i) for i in range(6)])
    assert [on_loop for on_loop, _ in WATCH.calls] == [True] * 6


def test_a_step_whose_rows_format_slowly_moves_them_to_its_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(range(10_000))
    slow_clock = SimpleNamespace(perf_counter=lambda: next(ticks) * 0.02)  # 20 ms a row
    monkeypatch.setattr(abstract_task, "time", slow_clock)
    WATCH.__init__()  # type: ignore[misc]
    _run_vision(tmp_path, [_png(i) for i in range(6)])
    assert [on_loop for on_loop, _ in WATCH.calls] == [True] * 3 + [False] * 3
    assert {name for on_loop, name in WATCH.calls if not on_loop} == {"pixtill-prepare_0"}


def test_prepare_cost_moves_off_the_loop_once_the_median_passes_a_millisecond() -> None:
    cost = PrepareCost()
    cost.record(0.02)  # a first call that imports lazily decides nothing
    for _ in range(50):
        cost.record(0.0002)
    assert not cost.offload
    for _ in range(3):
        cost.record(0.004)  # a few slowish rows are not a slow step
    assert not cost.offload
    for _ in range(5):
        cost.record(0.002)
    assert cost.offload
