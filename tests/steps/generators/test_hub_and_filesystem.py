from __future__ import annotations

import csv
import gzip
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pytest
from PIL import Image

from pixtill.errors import StepConfigError
from pixtill.images import ImageRef
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.huggingface import LoadDataFromFileSystem, LoadDataFromHub
from sample_images import image_bytes

N_ROWS = 23
ROWS = [{"id": i, "text": f"row {i}"} for i in range(N_ROWS)]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Hub, no network: only files under tmp_path (and 127.0.0.1) may be used."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    real_connect = socket.socket.connect

    def local_only(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]], features: Any = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def write_hub_folder(root: Path) -> Path:
    """A folder laid out like a Hub dataset repo: parquet shards with an Image column."""
    features = datasets.Features(
        {
            "id": datasets.Value("int64"),
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
        }
    )
    rows = [
        {
            "id": i,
            "image": {"bytes": image_bytes(4, 3, (i * 10, 0, 0)), "path": None},
            "caption": f"c{i}",
        }
        for i in range(7)
    ]
    write_parquet(root / "data" / "train-00000-of-00002.parquet", rows[:4], features)
    write_parquet(root / "data" / "train-00001-of-00002.parquet", rows[4:], features)
    (root / "README.md").write_text("# a local dataset\n", encoding="utf-8")
    return root


Factory = Callable[..., Any]


def _jsonl(tmp: Path, **kw: Any) -> Any:
    write_jsonl(tmp / "d" / "part-0.jsonl", ROWS[:10])
    write_jsonl(tmp / "d" / "part-1.jsonl", ROWS[10:])
    return LoadDataFromFileSystem(data_files=str(tmp / "d" / "*.jsonl"), cache_dir=tmp / "c", **kw)


def _parquet(tmp: Path, **kw: Any) -> Any:
    path = write_parquet(tmp / "d.parquet", ROWS)
    return LoadDataFromFileSystem(data_files=path, cache_dir=tmp / "c", **kw)


def _csv(tmp: Path, **kw: Any) -> Any:
    write_csv(tmp / "a.csv", ROWS[:15])
    write_csv(tmp / "b.csv", ROWS[15:])
    return LoadDataFromFileSystem(
        data_files=[tmp / "a.csv", str(tmp / "b.csv")], cache_dir=tmp / "c", **kw
    )


def _hub_folder(tmp: Path, **kw: Any) -> Any:
    write_parquet(tmp / "repo" / "data" / "train-00000-of-00001.parquet", ROWS)
    return LoadDataFromHub(repo_id=str(tmp / "repo"), cache_dir=tmp / "c", **kw)


def _hub_builder(tmp: Path, **kw: Any) -> Any:
    write_jsonl(tmp / "x.jsonl", ROWS)
    return LoadDataFromHub(
        repo_id="json", data_files=str(tmp / "x.jsonl"), cache_dir=tmp / "c", **kw
    )


LOADERS = {
    "jsonl": _jsonl,
    "parquet": _parquet,
    "csv": _csv,
    "hub-folder": _hub_folder,
    "hub-builder": _hub_builder,
}


@pytest.fixture(params=list(LOADERS))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    steps: list[Any] = []

    def factory(**kw: Any) -> Any:
        step = LOADERS[request.param](tmp_path, **kw)
        step.load()
        steps.append(step)
        return step

    yield factory
    for step in steps:
        step.unload()


def collect(step: Any, offset: int = 0) -> list[tuple[list[dict[str, Any]], bool]]:
    return list(step.process(offset))


def ids(batches: list[tuple[list[dict[str, Any]], bool]]) -> list[int]:
    return [row["id"] for batch, _ in batches for row in batch]


@pytest.mark.parametrize("streaming", [False, True])
def test_all_rows_in_order_in_batches(make: Factory, streaming: bool) -> None:
    step = make(batch_size=5, streaming=streaming)
    batches = collect(step)
    assert [len(b) for b, _ in batches] == [5, 5, 5, 5, 3]
    assert [last for _, last in batches] == [False, False, False, False, True]
    assert [row for b, _ in batches for row in b] == ROWS
    assert step.outputs == ["id", "text"]
    assert step.get_outputs() == {"id": True, "text": True}
    assert step.image_columns() == []
    assert step.total_rows() == (None if streaming else N_ROWS)


@pytest.mark.parametrize("streaming", [False, True])
def test_offset_resumes_where_asked(make: Factory, streaming: bool) -> None:
    step = make(batch_size=5, streaming=streaming)
    batches = collect(step, offset=5)
    assert ids(batches) == list(range(5, N_ROWS))
    assert [len(b) for b, _ in batches] == [5, 5, 5, 3]
    assert batches[-1][1] and not any(last for _, last in batches[:-1])
    assert collect(step, offset=20) == [(ROWS[20:], True)]
    assert collect(step, offset=N_ROWS) == [([], True)]
    assert collect(step, offset=100) == [([], True)]


@pytest.mark.parametrize("streaming", [False, True])
def test_num_examples_caps_the_total(make: Factory, streaming: bool) -> None:
    step = make(batch_size=5, streaming=streaming, num_examples=12)
    batches = collect(step)
    assert ids(batches) == list(range(12))
    assert [(len(b), last) for b, last in batches] == [(5, False), (5, False), (2, True)]
    assert ids(collect(step, offset=10)) == [10, 11]
    assert collect(step, offset=12) == [([], True)]
    assert step.total_rows() == (None if streaming else 12)


@pytest.mark.parametrize("streaming", [False, True])
def test_last_flag_on_an_exact_multiple_of_the_batch_size(make: Factory, streaming: bool) -> None:
    step = make(batch_size=5, streaming=streaming, num_examples=20)
    batches = collect(step)
    assert [(len(b), last) for b, last in batches] == [(5, False)] * 3 + [(5, True)]
    one_batch = make(batch_size=N_ROWS, streaming=streaming)
    assert [(len(b), last) for b, last in collect(one_batch)] == [(N_ROWS, True)]
    empty = make(streaming=streaming, num_examples=0)
    assert collect(empty) == [([], True)]


@pytest.mark.parametrize("streaming", [False, True])
def test_output_mappings_apply(make: Factory, streaming: bool) -> None:
    step = make(batch_size=50, streaming=streaming, output_mappings={"text": "body"})
    ((rows, last),) = list(step.process_applying_mappings(3))
    assert last
    assert rows[0] == {"id": 3, "body": "row 3"}


def test_process_needs_load_and_unload_forgets(tmp_path: Path) -> None:
    step = _jsonl(tmp_path)
    assert step.outputs == []
    assert step.total_rows() is None
    with pytest.raises(RuntimeError, match="call load"):
        next(step.process())
    step.load()
    assert step.total_rows() == N_ROWS
    step.unload()
    assert step.outputs == []
    with pytest.raises(RuntimeError, match="call load"):
        next(step.process())
    with pytest.raises(ValueError, match="offset"):
        next(step.process(-1))


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_folder_with_image_column_gives_pil_images(tmp_path: Path, streaming: bool) -> None:
    root = write_hub_folder(tmp_path / "repo")
    steps = [
        LoadDataFromHub(repo_id=str(root), streaming=streaming, batch_size=3, cache_dir=tmp_path),
        LoadDataFromHub(
            repo_id="parquet",
            data_files=str(root / "data" / "*.parquet"),
            streaming=streaming,
            batch_size=3,
            cache_dir=tmp_path,
        ),
        LoadDataFromFileSystem(
            data_files=str(root / "data" / "*.parquet"),
            streaming=streaming,
            batch_size=3,
            cache_dir=tmp_path,
        ),
    ]
    for step in steps:
        step.load()
        assert step.outputs == ["id", "image", "caption"]
        assert step.image_columns() == ["image"]
        batches = collect(step, offset=2)
        assert [(len(b), last) for b, last in batches] == [(3, False), (2, True)]
        rows = [row for b, _ in batches for row in b]
        assert [r["id"] for r in rows] == [2, 3, 4, 5, 6]
        assert [r["caption"] for r in rows] == ["c2", "c3", "c4", "c5", "c6"]
        for row in rows:
            assert isinstance(row["image"], Image.Image)
            ref = ImageRef.from_value(row["image"])
            assert ref.size == (4, 3)
            assert ref.to_pil().getpixel((0, 0)) == (row["id"] * 10, 0, 0)
        step.unload()


def test_hub_split_slicing_and_unknown_split(tmp_path: Path) -> None:
    root = write_hub_folder(tmp_path / "repo")
    step = LoadDataFromHub(repo_id=str(root), split="train[:3]", cache_dir=tmp_path)
    step.load()
    assert step.total_rows() == 3
    assert ids(collect(step)) == [0, 1, 2]
    with pytest.raises(ValueError, match="test"):
        LoadDataFromHub(repo_id=str(root), split="test", cache_dir=tmp_path).load()


def test_hub_arguments_reach_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return datasets.IterableDataset.from_generator(lambda: iter(ROWS))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    step = LoadDataFromHub(
        repo_id="someone/pictures",
        config="small",
        split="validation",
        revision="v1.0",
        streaming=True,
        storage_options={"anon": True},
        batch_size=10,
    )
    step.load()
    ((args, kwargs),) = calls
    assert args == ("someone/pictures", "small")
    assert kwargs["split"] == "validation"
    assert kwargs["revision"] == "v1.0"
    assert kwargs["streaming"] is True
    assert kwargs["storage_options"] == {"anon": True}
    assert step.outputs == ["id", "text"]
    assert ids(collect(step, offset=15)) == list(range(15, N_ROWS))


def test_a_dataset_dict_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: whole)
    with pytest.raises(StepConfigError, match="single split"):
        LoadDataFromHub(repo_id="someone/pictures").load()


def test_non_streaming_reads_one_slice_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are taken from the Arrow table one batch at a time, never all at once."""
    dataset = datasets.Dataset.from_list(ROWS)
    slices: list[slice] = []

    class Recording:
        column_names = dataset.column_names

        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, key: slice) -> Any:
            slices.append(key)
            return dataset[key]

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dataset)
    step = LoadDataFromHub(repo_id="someone/pictures", batch_size=10)
    step.load()
    step._dataset = Recording()
    batches = step.process(offset=1)
    first, last = next(batches)
    assert (len(first), last) == (10, False)
    assert slices == [slice(1, 11)]
    rest = list(batches)
    assert slices == [slice(1, 11), slice(11, 21), slice(21, 23)]
    assert [len(b) for b, _ in rest] == [10, 2]


def test_filetype_is_inferred_or_required(tmp_path: Path) -> None:
    assert LoadDataFromFileSystem(data_files="a/*.jsonl").resolved_filetype() == "jsonl"
    assert LoadDataFromFileSystem(data_files="a.JSON").resolved_filetype() == "json"
    assert LoadDataFromFileSystem(data_files=["a.json", "b.jsonl"]).resolved_filetype() == "jsonl"
    assert LoadDataFromFileSystem(data_files=Path("x.csv.gz")).resolved_filetype() == "csv"
    assert LoadDataFromFileSystem(data_files="s3://b/k.parquet").resolved_filetype() == "parquet"
    assert LoadDataFromFileSystem(data_files="d/*", filetype="csv").resolved_filetype() == "csv"
    with pytest.raises(ValueError, match="pass filetype="):
        LoadDataFromFileSystem(data_files="d/*")
    with pytest.raises(ValueError, match="mix file types"):
        LoadDataFromFileSystem(data_files=["a.csv", "b.parquet"])
    with pytest.raises(ValueError, match="empty"):
        LoadDataFromFileSystem(data_files=[])


@pytest.mark.parametrize("streaming", [False, True])
def test_compressed_jsonl_and_explicit_filetype(tmp_path: Path, streaming: bool) -> None:
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    step = LoadDataFromFileSystem(data_files=packed, streaming=streaming, cache_dir=tmp_path)
    step.load()
    assert ids(collect(step)) == list(range(N_ROWS))
    odd = write_jsonl(tmp_path / "rows.data", ROWS[:4])
    step = LoadDataFromFileSystem(
        data_files=odd, filetype="jsonl", streaming=streaming, cache_dir=tmp_path
    )
    step.load()
    assert ids(collect(step)) == [0, 1, 2, 3]


def test_missing_files_fail_at_load(tmp_path: Path) -> None:
    step = LoadDataFromFileSystem(data_files=tmp_path / "nope.jsonl", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        step.load()


def test_batches_with_last() -> None:
    rows = [{"i": i} for i in range(5)]
    assert list(batches_with_last(iter(rows), 2)) == [
        (rows[:2], False),
        (rows[2:4], False),
        (rows[4:], True),
    ]
    assert list(batches_with_last(rows, 5)) == [(rows, True)]
    assert list(batches_with_last(rows, 1))[-1] == ([rows[4]], True)
    assert list(batches_with_last([], 3)) == [([], True)]


def test_a_consumer_may_stop_early_without_leaking(make: Factory) -> None:
    """Closing `process` part way releases the reader's files at once (no ResourceWarning)."""
    step = make(batch_size=2, streaming=True)
    batches = step.process(offset=1)
    rows, last = next(batches)
    assert [r["id"] for r in rows] == [1, 2]
    assert not last
    batches.close()
    assert ids(collect(step, offset=21)) == [21, 22]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_shards_partition_the_rows_with_global_numbers(
    make: Factory, streaming: bool, world_size: int
) -> None:
    step = make(batch_size=4, streaming=streaming)
    seen: dict[int, dict[str, Any]] = {}
    for rank in range(world_size):
        batches = list(step.process_shard(rank, world_size))
        assert batches[-1][2] is True and all(not last for _, _, last in batches[:-1])
        for numbers, rows, _ in batches:
            for number, row in zip(numbers, rows):
                assert number not in seen, "two shards share a row number"
                seen[number] = row
    assert len(seen) == N_ROWS
    assert [seen[n] for n in sorted(seen)] == ROWS  # numbers are global and in input order
    if not streaming or world_size == 1:  # a stream cut by file numbers rows per file
        assert sorted(seen) == list(range(N_ROWS))  # the number is the row's position
