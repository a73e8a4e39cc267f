"""Loaders built on Hugging Face ``datasets``: a Hub repository (or a local folder, or a packaged
builder such as ``"parquet"``) and local or remote data files.

Both stream batches: a non-streaming dataset is memory-mapped Arrow read one slice at a time, a
streaming one is iterated row by row. Nothing is collected into one big list.

``datasets`` is an optional dependency: it is imported by ``load()``, not by this module.
"""

from __future__ import annotations

import gc
import importlib
import posixpath
import threading
import warnings
from abc import abstractmethod
from collections.abc import Generator, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, PrivateAttr, model_validator

from pixtill.errors import StepConfigError
from pixtill.steps.base import GeneratorStep
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.file_shards import (
    RowGroup,
    parquet_row_groups,
    read_parquet_shard,
    read_stream_shard,
    resolve_files,
)
from pixtill.steps.generators.read_errors import read_failure
from pixtill.steps.generators.sharding import ShardBatch
from pixtill.steps.typing import GeneratorStepOutput, Row, StepColumns

T = TypeVar("T")
FileType = Literal["json", "jsonl", "parquet", "csv"]

_EXTENSION_TYPES: dict[str, FileType] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".zst"})
_BUILDERS: dict[FileType, str] = {
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "csv": "csv",
}


# `warnings.catch_warnings` swaps process-wide state: keep our uses of it from interleaving.
_CLEANUP_LOCK = threading.Lock()


def _close_quietly(iterator: Iterator[Any]) -> None:
    """Close a partly read ``datasets`` iterator and free what it held now.

    Some builders (CSV, through pandas) leave an open file to the garbage collector when they
    are not read to the end, which then warns (``ResourceWarning``) at some later, unrelated
    point. Collect it here instead, without the warning.
    """
    close = getattr(iterator, "close", None)
    with _CLEANUP_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        if close is not None:
            close()
        del iterator, close
        gc.collect()


def _import_datasets() -> Any:
    try:
        return importlib.import_module("datasets")
    except ImportError as exc:
        raise ImportError(
            "loading with Hugging Face `datasets` needs the package: pip install datasets"
        ) from exc


def _image_feature_columns(datasets: Any, features: Any) -> list[str]:
    if not features:
        return []
    columns = []
    for name, feature in features.items():
        inner = getattr(feature, "feature", None)  # List / Sequence / LargeList of images
        if isinstance(feature, datasets.Image) or isinstance(inner, datasets.Image):
            columns.append(name)
    return columns


def _columns_to_rows(columns: dict[str, list[Any]], count: int) -> list[Row]:
    if not columns:
        return [{} for _ in range(count)]
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


class _DatasetsLoader(GeneratorStep):
    """Shared iteration over a ``datasets.Dataset`` or ``datasets.IterableDataset``."""

    streaming: bool = Field(
        default=False,
        description="Iterate lazily (IterableDataset) instead of preparing an Arrow cache first.",
    )
    num_examples: int | None = Field(
        default=None, ge=0, description="Use at most this many rows (from the start)."
    )
    storage_options: dict[str, Any] | None = Field(
        default=None, description="fsspec options for remote file systems (s3://, gs://, ...)."
    )
    cache_dir: str | Path | None = Field(
        default=None, description="Where `datasets` keeps its Arrow cache (non-streaming)."
    )

    _dataset: Any = PrivateAttr(default=None)
    _columns: list[str] = PrivateAttr(default_factory=list)
    _images: list[str] = PrivateAttr(default_factory=list)
    _shard: tuple[int, int] = PrivateAttr(default=(0, 1))
    _sharded: bool = PrivateAttr(default=False)
    _row_groups: list[RowGroup] | None = PrivateAttr(default=None)

    def plan_shard(self, rank: int, world_size: int) -> None:
        self._shard = (rank, world_size)

    def _iterable(self) -> bool:
        """Whether the loaded dataset is an ``IterableDataset`` (streaming, or a rank's lazy
        view of data files)."""
        return self.streaming or self._sharded

    @abstractmethod
    def _load_dataset(self, datasets: Any) -> Any:
        """Return the ``Dataset`` (``IterableDataset`` when streaming) to iterate; ``datasets``
        is the imported module."""

    def load(self) -> None:
        super().load()
        datasets = _import_datasets()
        dataset = self._load_dataset(datasets)
        expected = datasets.IterableDataset if self._iterable() else datasets.Dataset
        if not isinstance(dataset, expected):
            raise StepConfigError(
                f"step {self.name!r}: expected a {expected.__name__}, got "
                f"{type(dataset).__name__} (load a single split)"
            )
        self._dataset = dataset
        self._columns = self._column_names(dataset)
        self._images = _image_feature_columns(datasets, dataset.features)

    def unload(self) -> None:
        self._dataset = None
        self._sharded = False
        self._row_groups = None
        self._columns = []
        self._images = []
        super().unload()

    def _column_names(self, dataset: Any) -> list[str]:
        names = dataset.column_names
        if names is None:  # a streaming dataset whose features are unknown: look at one row
            rows = iter(dataset)
            first = next(rows, None)
            _close_quietly(rows)
            return list(first) if first is not None else []
        return list(names)

    @property
    def outputs(self) -> StepColumns:
        """The dataset's column names; empty until `load` has run."""
        return list(self._columns)

    def image_columns(self) -> list[str]:
        """Columns (after output mappings) with a `datasets.Image` feature, or a list of them;
        known after `load`."""
        return [self.output_mappings.get(column, column) for column in self._images]

    def _require_loaded(self) -> Any:
        if self._dataset is None:
            raise RuntimeError(f"step {self.name!r}: call load() before process()")
        return self._dataset

    def total_rows(self) -> int | None:
        """Rows this step yields from offset 0 (``num_examples`` applied), or ``None`` when it
        is not known: a streaming dataset, or before `load`."""
        if self._dataset is None or self._iterable():
            return None
        return self._capped(len(self._dataset))

    def _capped(self, count: int) -> int:
        return count if self.num_examples is None else min(count, self.num_examples)

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        """Yield ``(rows, is_last)`` batches of ``batch_size`` rows, skipping ``offset`` rows."""
        if offset < 0:
            raise ValueError(f"offset must be at least 0, got {offset}")
        dataset = self._require_loaded()
        if self._iterable():
            yield from self._process_streaming(dataset, offset)
        else:
            yield from self._process_arrow(dataset, offset)

    def process_shard(self, rank: int = 0, world_size: int = 1) -> Iterator[ShardBatch]:
        """Rank ``rank``'s rows, reading as little as the data allows
        (`pixtill.steps.generators.file_shards`): Parquet files cut by row group; a stream
        of at least ``world_size`` shards (data files) cut by shard; a prepared dataset cut
        into contiguous blocks. Otherwise (a stream of fewer shards, or ``num_examples`` on
        a stream) every rank reads the stream and keeps rows ``i % world_size == rank``."""
        if world_size == 1 and rank == 0:
            return super().process_shard(rank, world_size)
        dataset = self._require_loaded()
        if self._row_groups is not None:
            return self._renamed(
                read_parquet_shard(
                    self._row_groups,
                    rank,
                    world_size,
                    features=dataset.features,
                    batch_size=self.batch_size,
                    limit=self.num_examples,
                    storage_options=self.storage_options,
                )
            )
        if self._iterable() and self.num_examples is None and dataset.num_shards >= world_size:
            return self._renamed(
                read_stream_shard(dataset, rank, world_size, batch_size=self.batch_size)
            )
        total = self.total_rows()
        if total is None:
            return super().process_shard(rank, world_size)
        return self._contiguous_shard(total, rank, world_size)

    def _renamed(self, batches: Iterator[ShardBatch]) -> Iterator[ShardBatch]:
        for numbers, rows, last in batches:
            yield numbers, self._rename_outputs(rows), last

    def _process_arrow(self, dataset: Any, offset: int) -> GeneratorStepOutput:
        total = self._capped(len(dataset))
        if offset >= total:
            yield [], True
            return
        for start in range(offset, total, self.batch_size):
            end = min(start + self.batch_size, total)
            yield _columns_to_rows(dataset[start:end], end - start), end >= total

    def _process_streaming(self, dataset: Any, offset: int) -> GeneratorStepOutput:
        remaining = None if self.num_examples is None else self.num_examples - offset
        if remaining is not None and remaining <= 0:
            yield [], True
            return
        rows = self._iter_rows(dataset, offset)
        try:
            yield from batches_with_last(islice(rows, remaining), self.batch_size)
        finally:
            rows.close()

    @staticmethod
    def _iter_rows(dataset: Any, offset: int) -> Generator[Row, None, None]:
        source = iter(dataset.skip(offset) if offset else dataset)
        finished = False
        try:
            for row in source:
                yield dict(row)
            finished = True
        finally:
            if not finished:  # stopped early: num_examples, or the consumer closed us
                _close_quietly(source)


class LoadDataFromHub(_DatasetsLoader):
    """Rows of one split of a dataset, loaded with ``datasets.load_dataset``.

    ``repo_id`` is anything `load_dataset` accepts: a Hub repository (``"user/name"``), a local
    folder of data files, or a packaged builder (``"parquet"``, ``"json"``, ``"csv"``,
    ``"imagefolder"``...) together with ``data_files``.

    Values come as `datasets` decodes them: a column with the ``Image`` feature yields
    ``PIL.Image.Image`` objects (decoded one batch at a time), which every pixtill step
    accepts as an image. ``outputs`` are the column names, known after `load`.

    Without ``streaming`` the split is prepared (downloaded and converted to a memory-mapped
    Arrow cache) at `load`, and `total_rows` is known; with it, rows are read as they are
    yielded and ``process(offset)`` skips ``offset`` rows by reading past them.
    """

    repo_id: str = Field(description="Hub repository, local folder or packaged builder name.")
    split: str = Field(default="train", description="The split to load, e.g. 'train[:100]'.")
    config: str | None = Field(default=None, description="Dataset configuration (subset) name.")
    revision: str | None = Field(default=None, description="Git revision (branch, tag, commit).")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        default=None, description="Files (or glob patterns) for a packaged builder or folder."
    )

    def _load_dataset(self, datasets: Any) -> Any:
        return datasets.load_dataset(
            self.repo_id,
            self.config,
            split=self.split,
            streaming=self.streaming,
            revision=self.revision,
            data_files=self.data_files,
            storage_options=self.storage_options,
            cache_dir=None if self.cache_dir is None else str(self.cache_dir),
        )


class LoadDataFromFileSystem(_DatasetsLoader):
    """Rows of local or remote JSON, JSON Lines, Parquet or CSV files.

    ``data_files`` is a path, a glob pattern (``"data/*.jsonl"``, ``"data/**/*.parquet"``) or a
    list of them. ``filetype`` is inferred from the extension (compressed files such as
    ``.jsonl.gz`` included) when not given; all files must be of one type. Remote paths
    (``s3://...``) use ``storage_options``. Columns and values are as in `LoadDataFromHub`.
    """

    data_files: str | Path | list[str | Path] = Field(
        description="A file, a glob pattern, or a list of them."
    )
    filetype: FileType | None = Field(
        default=None, description="json, jsonl, parquet or csv; inferred from the extension."
    )

    _resolved: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check_filetype(self) -> LoadDataFromFileSystem:
        self.resolved_filetype()  # fail at construction, not at load()
        return self

    def _file_list(self) -> list[str]:
        files = self.data_files if isinstance(self.data_files, list) else [self.data_files]
        if not files:
            raise StepConfigError(f"step {self.name!r}: data_files is empty")
        return [str(Path(f).expanduser()) if isinstance(f, Path) else f for f in files]

    def resolved_filetype(self) -> FileType:
        """``filetype``, or the one inferred from the extensions of ``data_files``."""
        if self.filetype is not None:
            return self.filetype
        found: set[FileType] = set()
        for file in self._file_list():
            found.add(_infer_filetype(file, step=self.name))
        if {"json", "jsonl"} >= found:  # .json and .jsonl files are read by the same builder
            return "jsonl" if "jsonl" in found else "json"
        if len(found) > 1:
            raise StepConfigError(
                f"step {self.name!r}: data_files mix file types {sorted(found)}; "
                "load them with separate steps"
            )
        return found.pop()

    def load(self) -> None:
        """Open the files. A rank of a sharded run (`plan_shard` with ``world_size > 1``)
        prepares nothing: it resolves the file list, reads Parquet footers for their row
        groups, and later reads only its own files or row groups."""
        world_size = self._shard[1]
        self._sharded = world_size > 1 and not self.streaming
        super().load()
        if world_size > 1 and self.resolved_filetype() == "parquet":
            self._row_groups = parquet_row_groups(self._resolved, self.storage_options)

    def _load_dataset(self, datasets: Any) -> Any:
        builder = _BUILDERS[self.resolved_filetype()]
        files: list[str] = self._file_list()
        if self._shard[1] > 1:  # the files, resolved once, in `datasets`' order
            files = self._resolved = resolve_files(files, self.storage_options)
        try:
            return datasets.load_dataset(
                builder,
                data_files=files,
                split="train",
                streaming=self._iterable(),
                storage_options=self.storage_options,
                cache_dir=None if self.cache_dir is None else str(self.cache_dir),
            )
        except (StopIteration, datasets.exceptions.DatasetGenerationError) as exc:
            # `datasets` says "An error occurred while generating the dataset" (the parser's
            # message is its cause) or raises a bare StopIteration for no data at all.
            raise StepConfigError(
                f"step {self.name!r}: {read_failure(exc, self.resolved_filetype(), files)}"
            ) from exc


def _infer_filetype(file: str, *, step: str) -> FileType:
    name = posixpath.basename(file.replace("\\", "/")).lower()
    stem, ext = posixpath.splitext(name)
    if ext in _COMPRESSION_SUFFIXES:
        ext = posixpath.splitext(stem)[1]
    filetype = _EXTENSION_TYPES.get(ext)
    if filetype is None:
        raise StepConfigError(
            f"step {step!r}: cannot infer the file type of {file!r} from its extension; "
            f"pass filetype= (one of {sorted(set(_BUILDERS))})"
        )
    return filetype


__all__ = ["FileType", "LoadDataFromFileSystem", "LoadDataFromHub"]
