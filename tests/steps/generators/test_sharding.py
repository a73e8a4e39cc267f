"""Every loader's shards partition its rows exactly, numbered by their global position."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pixtill.steps import GeneratorStep, LoadDataFromDicts, LoadDataFromIterable
from pixtill.steps.generators.images_folder import LoadImagesFromFolder
from pixtill.steps.generators.sharding import contiguous_range
from pixtill.steps.typing import GeneratorStepOutput

ROWS = [{"id": i} for i in range(23)]


def _shards(
    step: GeneratorStep | Callable[[], GeneratorStep], world_size: int
) -> list[list[tuple[int, Any]]]:
    """Each rank's ``(number, row)`` pairs; ``step`` may be a factory (one copy per rank, as
    each rank of a cluster has its own)."""
    out = []
    for rank in range(world_size):
        pairs = []
        own = step() if callable(step) and not isinstance(step, GeneratorStep) else step
        for numbers, rows, _ in own.process_shard(rank, world_size):
            pairs.extend(zip(numbers, rows))
        out.append(pairs)
    return out


def _check_partition(
    step: GeneratorStep | Callable[[], GeneratorStep], world_size: int, expected: list[Any]
) -> None:
    shards = _shards(step, world_size)
    numbers = [n for shard in shards for n, _ in shard]
    assert sorted(numbers) == list(range(len(expected)))
    by_number = {n: row for shard in shards for n, row in shard}
    assert [by_number[n] for n in range(len(expected))] == expected


class Counter(GeneratorStep):
    """A user's loader with no `process_shard` of its own: the default (round robin) applies."""

    count: int = 23

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        rows = [{"id": i} for i in range(offset, self.count)]
        for start in range(0, len(rows), 5):
            yield rows[start : start + 5], start + 5 >= len(rows)


@pytest.mark.parametrize("world_size", [1, 2, 4, 23, 30])
def test_in_memory_and_custom_loaders_partition(world_size: int) -> None:
    _check_partition(LoadDataFromDicts(data=ROWS, batch_size=4), world_size, ROWS)
    _check_partition(LoadDataFromIterable(data=ROWS, batch_size=4), world_size, ROWS)

    def lazy() -> GeneratorStep:  # a one-shot generator: each rank has its own
        return LoadDataFromIterable(data=(dict(r) for r in ROWS), batch_size=4)

    _check_partition(lazy, world_size, ROWS)
    _check_partition(Counter(batch_size=4), world_size, ROWS)


def test_known_sizes_cut_contiguous_blocks() -> None:
    assert [list(contiguous_range(7, r, 3)) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [len(contiguous_range(2, r, 4)) for r in range(4)] == [1, 1, 0, 0]
    shards = _shards(LoadDataFromDicts(data=ROWS, batch_size=4), 2)
    assert [n for n, _ in shards[1]] == list(range(12, 23))
    with pytest.raises(ValueError, match="rank"):
        list(LoadDataFromDicts(data=ROWS).process_shard(2, 2))


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_an_images_folder_partitions(tmp_path: Path, world_size: int) -> None:
    for i in range(9):
        folder = tmp_path / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (2, 2), (i, 0, 0)).save(folder / f"{i}.png")
    step = LoadImagesFromFolder(folder=str(tmp_path), batch_size=2)
    step.load()
    try:
        expected = [row["path"] for rows, _ in step.process(0) for row in rows]
        shards = _shards(step, world_size)
        by_number = {n: row["path"] for shard in shards for n, row in shard}
        assert sorted(by_number) == list(range(9))
        assert [by_number[n] for n in range(9)] == expected
    finally:
        step.unload()


def test_an_images_folder_rank_reads_only_its_sidecars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixtill.steps.generators import images_folder

    for i in range(6):
        Image.new("RGB", (2, 2), (i, 0, 0)).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(f"caption {i}")
    reads: list[str] = []
    real = images_folder.read_bytes

    def recording(path: Path) -> bytes:
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(images_folder, "read_bytes", recording)
    step = LoadImagesFromFolder(folder=str(tmp_path), batch_size=2)
    step.load()
    try:
        texts = [row["text"] for _, rows, _ in step.process_shard(1, 3) for row in rows]
    finally:
        step.unload()
    assert texts == ["caption 2", "caption 3"]
    assert sorted(reads) == ["2.txt", "3.txt"]  # no other rank's sidecar was read
