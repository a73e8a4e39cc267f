"""A rank of a sharded run reads only its data files (or Parquet row groups), and the ranks'
rows together are the unsharded rows exactly, under global numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixtill.steps.generators import file_shards
from pixtill.steps.generators.file_shards import SHARD_STRIDE
from pixtill.steps.generators.huggingface import LoadDataFromFileSystem, LoadDataFromHub

ROWS = [{"id": i, "text": f"row {i}"} for i in range(30)]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _parquet_files(root: Path) -> list[Path]:
    """Three files of 12, 0 and 18 rows, in row groups of 5 rows."""
    cuts = [(0, 12), (12, 12), (12, 30)]
    paths = []
    for k, (start, end) in enumerate(cuts):
        path = root / f"part-{k}.parquet"
        table = pa.Table.from_pylist(
            ROWS[start:end], schema=pa.schema([("id", pa.int64()), ("text", pa.string())])
        )
        pq.write_table(table, path, row_group_size=5)
        paths.append(path)
    return paths


def _jsonl_files(root: Path) -> list[Path]:
    paths = []
    for k, (start, end) in enumerate([(0, 7), (7, 8), (8, 21), (21, 30)]):
        path = root / f"part-{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[start:end]))
        paths.append(path)
    return paths


def _rank_rows(
    make: Callable[[], Any], rank: int, world_size: int, files: list[Path], reads: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    step = make()
    step.plan_shard(rank, world_size)
    step.load()
    try:
        reads.clear()
        return [
            (n, row)
            for numbers, rows, _ in step.process_shard(rank, world_size)
            for n, row in zip(numbers, rows)
        ]
    finally:
        step.unload()


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_parquet_ranks_read_only_their_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world_size: int
) -> None:
    files = _parquet_files(tmp_path)
    reads: list[str] = []
    real_open = file_shards.open_file

    def counting_open(path: str, storage_options: Any) -> Any:
        reads.append(Path(path).name)
        return real_open(path, storage_options)

    monkeypatch.setattr(file_shards, "open_file", counting_open)
    seen: dict[int, dict[str, Any]] = {}
    opened: list[list[str]] = []
    for rank in range(world_size):
        make = lambda: LoadDataFromFileSystem(  # noqa: E731
            data_files=str(tmp_path / "*.parquet"), batch_size=4, cache_dir=tmp_path / "c"
        )
        pairs = _rank_rows(make, rank, world_size, files, reads)
        opened.append(list(reads))
        for n, row in pairs:
            assert n not in seen
            seen[n] = row
    assert sorted(seen) == list(range(30))  # exact global positions, from the footers
    assert [seen[n] for n in range(30)] == ROWS
    # Seven row groups hold rows (3 + 4, in two files): each is read by exactly one rank, once.
    assert sum(len(r) for r in opened) == 7
    # Nothing was prepared: no Arrow cache of the dataset.
    assert not list((tmp_path / "c").rglob("*.arrow"))


def test_parquet_num_examples_caps_the_global_rows(tmp_path: Path) -> None:
    _parquet_files(tmp_path)
    seen = []
    for rank in range(3):
        step = LoadDataFromFileSystem(
            data_files=str(tmp_path / "*.parquet"), num_examples=13, cache_dir=tmp_path / "c"
        )
        step.plan_shard(rank, 3)
        step.load()
        seen += [n for numbers, _, _ in step.process_shard(rank, 3) for n in numbers]
        step.unload()
    assert sorted(seen) == list(range(13))


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("world_size", [2, 4])
def test_json_lines_ranks_read_only_their_files(
    tmp_path: Path, streaming: bool, world_size: int
) -> None:
    files = _jsonl_files(tmp_path)
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(world_size):
        step = LoadDataFromFileSystem(
            data_files=[str(f) for f in files],
            batch_size=4,
            streaming=streaming,
            cache_dir=tmp_path / f"c{rank}",
        )
        step.plan_shard(rank, world_size)
        step.load()
        # Hide every other rank's files: reading one would fail.
        own = [files[k] for k in range(len(files)) if (k * world_size) // len(files) == rank]
        hidden = {f: f.read_bytes() for f in files if f not in own}
        for f in hidden:
            f.unlink()
        try:
            for numbers, rows, _ in step.process_shard(rank, world_size):
                for n, row in zip(numbers, rows):
                    assert n not in seen
                    seen[n] = row
        finally:
            step.unload()
            for f, data in hidden.items():
                f.write_bytes(data)
        assert not list((tmp_path / f"c{rank}").rglob("*.arrow"))
    assert [seen[n] for n in sorted(seen)] == ROWS  # every row once, in input order
    assert {n // SHARD_STRIDE for n in seen} == {0, 1, 2, 3}  # numbered by file


def test_a_streaming_hub_dataset_is_cut_by_shard(tmp_path: Path) -> None:
    files = _jsonl_files(tmp_path)
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(2):
        step = LoadDataFromHub(
            repo_id="json", data_files=[str(f) for f in files], streaming=True, batch_size=3
        )
        step.load()
        for numbers, rows, _ in step.process_shard(rank, 2):
            for n, row in zip(numbers, rows):
                assert n not in seen
                seen[n] = row
        assert {n // SHARD_STRIDE for n in seen} <= ({0, 1} if rank == 0 else {0, 1, 2, 3})
        step.unload()
    assert [seen[n] for n in sorted(seen)] == ROWS


def _hub_rank_rows(
    repo: str | Path, rank: int, world_size: int, cache: Path, **kwargs: Any
) -> list[tuple[int, dict[str, Any]]]:
    step = LoadDataFromHub(repo_id=str(repo), batch_size=4, cache_dir=cache, **kwargs)
    step.plan_shard(rank, world_size)
    step.load()
    try:
        return [
            (n, row)
            for numbers, rows, _ in step.process_shard(rank, world_size)
            for n, row in zip(numbers, rows)
        ]
    finally:
        step.unload()


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_a_prepared_hub_split_of_parquet_files_is_cut_by_row_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world_size: int
) -> None:
    # A local folder laid out like a Hub dataset repository (no download).
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for k, path in enumerate(_parquet_files(tmp_path)):
        path.rename(tmp_path / "repo" / "data" / f"train-{k:05d}-of-00003.parquet")
    reads: list[str] = []
    real_open = file_shards.open_file

    def counting_open(path: str, storage_options: Any) -> Any:
        reads.append(Path(path).name)
        return real_open(path, storage_options)

    monkeypatch.setattr(file_shards, "open_file", counting_open)
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(world_size):
        pairs = _hub_rank_rows(tmp_path / "repo", rank, world_size, tmp_path / "c")
        for n, row in pairs:
            assert n not in seen
            seen[n] = row
    assert sorted(seen) == list(range(30))  # the unsharded positions, from the footers
    assert [seen[n] for n in range(30)] == ROWS
    # Footers: 3 files per rank at load; then each of the 7 row groups with rows read once.
    assert len(reads) == 3 * world_size + 7
    assert not list((tmp_path / "c").rglob("*.arrow"))  # no rank prepared the split


def test_a_prepared_hub_split_of_json_lines_is_cut_by_file(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    files = _jsonl_files(tmp_path / "repo")
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(2):
        own = files[:2] if rank == 0 else files[2:]
        hidden = {f: f.read_bytes() for f in files if f not in own}
        step = LoadDataFromHub(
            repo_id="json", data_files=[str(f) for f in files], cache_dir=tmp_path / "c"
        )
        step.plan_shard(rank, 2)
        step.load()
        for f in hidden:  # reading another rank's file would fail
            f.unlink()
        try:
            for numbers, rows, _ in step.process_shard(rank, 2):
                for n, row in zip(numbers, rows):
                    assert n not in seen
                    seen[n] = row
        finally:
            step.unload()
            for f, data in hidden.items():
                f.write_bytes(data)
    assert [seen[n] for n in sorted(seen)] == ROWS
    assert {n // SHARD_STRIDE for n in seen} == {0, 1, 2, 3}
    assert not list((tmp_path / "c").rglob("*.arrow"))


def test_a_sliced_hub_split_is_prepared_and_cut_into_blocks(tmp_path: Path) -> None:
    files = [str(f) for f in _jsonl_files(tmp_path)]
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(3):
        pairs = _hub_rank_rows(
            "json", rank, 3, tmp_path / "c", split="train[:20]", data_files=files
        )
        seen.update(pairs)
    assert sorted(seen) == list(range(20))
    assert [seen[n] for n in range(20)] == ROWS[:20]
