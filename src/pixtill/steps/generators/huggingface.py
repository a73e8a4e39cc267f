"""Loaders built on Hugging Face ``datasets``: a Hub repository (or a local folder, or a packaged
builder such as ``"parquet"``) and local or remote data files.

Both stream batches (`pixtill.steps.generators.datasets_loader`): nothing is collected into one
big list. ``datasets`` is an optional dependency: it is imported by ``load()``, not by this
module.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from pixtill.errors import StepConfigError
from pixtill.steps.generators.datasets_loader import DatasetsLoader
from pixtill.steps.generators.file_shards import parquet_row_groups, resolve_files
from pixtill.steps.generators.read_errors import read_failure

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


class LoadDataFromHub(DatasetsLoader):
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

    A rank of a sharded run (`plan_shard` with ``world_size > 1``) prepares nothing when the
    split is whole (no ``[...]`` slice): it reads only its part of the split's data files, cut
    as `LoadDataFromFileSystem` cuts them (Parquet by row group, numbered by global position;
    other formats by file). A sliced split is prepared by every rank, which keeps its block.
    """

    repo_id: str = Field(description="Hub repository, local folder or packaged builder name.")
    split: str = Field(default="train", description="The split to load, e.g. 'train[:100]'.")
    config: str | None = Field(default=None, description="Dataset configuration (subset) name.")
    revision: str | None = Field(default=None, description="Git revision (branch, tag, commit).")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        default=None, description="Files (or glob patterns) for a packaged builder or folder."
    )

    def load(self) -> None:
        self._sharded = self._shard[1] > 1 and not self.streaming and "[" not in self.split
        super().load()

    def _load_dataset(self, datasets: Any) -> Any:
        cache_dir = None if self.cache_dir is None else str(self.cache_dir)
        if not self._sharded:
            return datasets.load_dataset(
                self.repo_id,
                self.config,
                split=self.split,
                streaming=self.streaming,
                revision=self.revision,
                data_files=self.data_files,
                storage_options=self.storage_options,
                cache_dir=cache_dir,
            )
        # What `load_dataset(streaming=True)` does, keeping the builder for its file list:
        # the files in the order an unsharded run reads them, so row numbers match its own.
        builder = datasets.load_dataset_builder(
            self.repo_id,
            self.config,
            revision=self.revision,
            data_files=self.data_files,
            storage_options=self.storage_options,
            cache_dir=cache_dir,
        )
        dataset = builder.as_streaming_dataset(split=self.split)
        files = (builder.config.data_files or {}).get(self.split)
        if builder.name == "parquet" and files:
            self._row_groups = parquet_row_groups([str(f) for f in files], self.storage_options)
        return dataset


class LoadDataFromFileSystem(DatasetsLoader):
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
