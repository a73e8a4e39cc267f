"""`DatasetsLoader`: the iteration over a ``datasets.Dataset`` or ``IterableDataset`` that the
loaders built on Hugging Face ``datasets`` share (`pixtill.steps.generators.huggingface`).

A non-streaming dataset is memory-mapped Arrow read one slice at a time, a streaming one is
iterated row by row; a rank of a sharded run reads only its files or row groups
(`pixtill.steps.generators.file_shards`). ``datasets`` is imported by ``load()``, not here.
"""

from __future__ import annotations

import gc
import importlib
import threading
import warnings
from abc import abstractmethod
from collections.abc import Generator, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.errors import StepConfigError
from pixtill.steps.base import GeneratorStep
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.file_shards import RowGroup, read_parquet_shard, read_stream_shard
from pixtill.steps.generators.sharding import ShardBatch
from pixtill.steps.typing import GeneratorStepOutput, Row, StepColumns

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


def import_datasets() -> Any:
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


class DatasetsLoader(GeneratorStep):
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
        datasets = import_datasets()
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
