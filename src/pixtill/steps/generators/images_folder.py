"""Rows from a folder of image files, with optional metadata beside them.

Every file whose extension matches becomes one row ``{image: ImageRef, path: "sub/a.png",
**metadata}``. Nothing is decoded or even opened here: the `ImageRef` reads the file when a
later step needs it, so a corrupt file (or a text file named ``.png``) still makes a row and is
reported, per row, by whichever step uses the image.

Metadata, when ``metadata=True``:

* ``metadata.jsonl`` or ``metadata.csv`` in the folder itself (the Hugging Face ``imagefolder``
  convention): one record per image, whose ``file_name`` is the image's path relative to the
  folder (``sub/a.png``). Its other columns are added to the row (``None`` for images that have
  no record). CSV values stay strings. The file is checked and indexed at `load` (file names and
  byte offsets, not the records); records are read again as their rows are made.
* ``<stem>.json`` beside an image (``sub/a.json`` for ``sub/a.png``): a JSON object whose keys
  are added to the row.
* ``<stem>.txt`` beside an image: its text (stripped) goes into a ``text`` column.

Later sources win on a shared key: ``metadata.jsonl``, then ``.json``, then ``.txt``. A sidecar
that cannot be parsed raises `SidecarError` naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from pixtill.errors import StepConfigError
from pixtill.images import ImageRef
from pixtill.steps.base import GeneratorStep
from pixtill.steps.generators.batching import batches_with_last
from pixtill.steps.generators.images_folder_metadata import (
    MetadataIndex,
    SidecarError,
    decode_text,
    read_bytes,
)
from pixtill.steps.generators.sharding import ShardBatch
from pixtill.steps.typing import GeneratorStepOutput, Row, StepColumns

DEFAULT_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tiff"]
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
TEXT_COLUMN = "text"


@dataclass
class _Found:
    """One matching image file, and the names beside it (for its sidecars)."""

    relative: str
    path: Path
    siblings: frozenset[str]


@dataclass
class _Level:
    directory: Path
    prefix: str
    entries: Iterator[os.DirEntry[str]]
    names: frozenset[str]
    identity: tuple[int, int]


class LoadImagesFromFolder(GeneratorStep):
    """One row per image file under ``folder``: ``{image_column: ImageRef, path_column: str}``
    plus any sidecar metadata (see the module docs).

    Files are listed lazily, one directory at a time, in a deterministic order: each
    directory's entries sorted by name, sub-folders walked where they sort (so ``a/x.png`` comes
    before ``b.png``). Names starting with ``.`` (hidden files, macOS ``._*`` resource forks)
    are skipped; extensions match case-insensitively. ``path_column`` holds the path relative to
    ``folder`` with ``/`` separators; ``None`` leaves it out.
    """

    folder: Path = Field(description="The folder of images.")
    recursive: bool = Field(default=True, description="Also walk sub-folders.")
    extensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXTENSIONS),
        description="File extensions that count as images (case-insensitive).",
    )
    image_column: str = Field(default="image", description="Column for the `ImageRef`.")
    path_column: str | None = Field(
        default="path", description="Column for the relative path; None to leave it out."
    )
    metadata: bool = Field(
        default=True, description="Read metadata.jsonl/metadata.csv and .json/.txt sidecars."
    )
    num_examples: int | None = Field(default=None, ge=0, description="Use at most this many.")

    _root: Path | None = PrivateAttr(default=None)
    _index: MetadataIndex | None = PrivateAttr(default=None)

    @field_validator("extensions")
    @classmethod
    def _normalize_extensions(cls, value: list[str]) -> list[str]:
        normalized = []
        for ext in value:
            ext = ext.strip().lower()
            if not ext or ext == ".":
                raise ValueError("an extension may not be empty")
            normalized.append(ext if ext.startswith(".") else f".{ext}")
        return normalized

    @model_validator(mode="after")
    def _check_columns(self) -> LoadImagesFromFolder:
        if not self.image_column:
            raise StepConfigError("image_column may not be empty")
        if self.path_column is not None and self.path_column in ("", self.image_column):
            raise StepConfigError(
                f"path_column {self.path_column!r} must be a non-empty name other than "
                f"image_column {self.image_column!r}"
            )
        return self

    # -- lifecycle --------------------------------------------------------------------------

    def _checked_root(self) -> Path:
        root = self.folder.expanduser().absolute()
        if not root.exists():
            raise FileNotFoundError(f"step {self.name!r}: no such images folder: '{root}'")
        if not root.is_dir():
            raise NotADirectoryError(f"step {self.name!r}: not a folder: '{root}'")
        return root

    def _reserved(self) -> set[str]:
        return {self.image_column} | ({self.path_column} if self.path_column else set())

    def load(self) -> None:
        """Check the folder exists, and check and index its metadata file if it has one."""
        super().load()
        root = self._checked_root()
        index = None
        if self.metadata:
            present = [root / name for name in METADATA_FILES if (root / name).is_file()]
            if len(present) > 1:
                raise StepConfigError(
                    f"step {self.name!r}: '{root}' has both {' and '.join(METADATA_FILES)}; "
                    "keep one"
                )
            if present:
                index = MetadataIndex.build(present[0], self._reserved())
        self._root, self._index = root, index

    def unload(self) -> None:
        self._root = self._index = None
        super().unload()

    @property
    def outputs(self) -> StepColumns:
        """The image and path columns, then the metadata file's columns (known after `load`).
        Keys from per-image sidecars are not listed: they appear on the rows that have them."""
        columns = [self.image_column]
        if self.path_column is not None:
            columns.append(self.path_column)
        if self._index is not None:
            columns.extend(self._index.columns)
        return columns

    def image_columns(self) -> list[str]:
        """The image column (after output mappings)."""
        return [self.output_mappings.get(self.image_column, self.image_column)]

    # -- listing ----------------------------------------------------------------------------

    def _level(self, directory: Path, prefix: str) -> _Level:
        with os.scandir(directory) as scan:
            entries = sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name)
        st = directory.stat()
        return _Level(
            directory,
            prefix,
            iter(entries),
            frozenset(e.name for e in entries),
            (st.st_dev, st.st_ino),
        )

    def _walk(self, root: Path) -> Iterator[_Found]:
        extensions = tuple(self.extensions)
        skip_at_root = set(METADATA_FILES) if self.metadata else set()
        stack = [self._level(root, "")]
        while stack:
            level = stack[-1]
            entry = next(level.entries, None)
            if entry is None:
                stack.pop()
                continue
            relative = level.prefix + entry.name
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                if not self.recursive:
                    continue
                child = self._level(Path(entry.path), relative + "/")
                if any(child.identity == parent.identity for parent in stack):
                    continue  # a symlink back to an ancestor
                stack.append(child)
            elif is_file and entry.name.lower().endswith(extensions):
                if level.prefix == "" and entry.name in skip_at_root:
                    continue
                yield _Found(relative, Path(entry.path), level.names)

    def total_rows(self) -> int:
        """How many rows `process` yields from offset 0: the matching files (up to
        ``num_examples``). Lists the folder; reads no file."""
        root = self._root if self._root is not None else self._checked_root()
        return sum(1 for _ in islice(self._walk(root), self.num_examples))

    # -- rows -------------------------------------------------------------------------------

    def _sidecars(self, found: _Found) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        reserved = self._reserved()
        stem = found.path.stem
        json_name, text_name = f"{stem}.json", f"{stem}.txt"
        if json_name in found.siblings and json_name != found.path.name:
            path = found.path.with_name(json_name)
            try:
                value = json.loads(decode_text(path, read_bytes(path)))
            except json.JSONDecodeError as exc:
                raise SidecarError(
                    path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
                ) from exc
            if not isinstance(value, dict):
                raise SidecarError(path, f"expected a JSON object, got {type(value).__name__}")
            clashes = sorted(reserved & set(value))
            if clashes:
                raise SidecarError(path, f"key {clashes[0]!r} clashes with the step's own column")
            extra.update(value)
        if text_name in found.siblings and text_name != found.path.name:
            path = found.path.with_name(text_name)
            if TEXT_COLUMN in reserved:
                raise SidecarError(path, f"its {TEXT_COLUMN!r} column clashes with the step's own")
            extra[TEXT_COLUMN] = decode_text(path, read_bytes(path)).strip()
        return extra

    def _row(self, found: _Found, meta_file: IO[bytes] | None) -> Row:
        row: Row = {self.image_column: ImageRef("path", path=found.path)}
        if self.path_column is not None:
            row[self.path_column] = found.relative
        if self.metadata:
            index = self._index
            if index is not None and meta_file is not None:
                record = index.read(meta_file, found.relative) or {}
                row.update({column: record.get(column) for column in index.columns})
            row.update(self._sidecars(found))
        return row

    def process_shard(self, rank: int = 0, world_size: int = 1) -> Iterator[ShardBatch]:
        """A contiguous block of the sorted listing; only its files and sidecars are read."""
        return self._contiguous_shard(self.total_rows(), rank, world_size)

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        """Yield ``(rows, is_last)`` batches of ``batch_size`` rows, skipping ``offset`` files."""
        if offset < 0:
            raise ValueError(f"offset must be at least 0, got {offset}")
        if self._root is None:
            raise RuntimeError(f"step {self.name!r}: call load() before process()")
        root, index = self._root, self._index
        if self.num_examples is not None and offset >= self.num_examples:
            yield [], True
            return
        files = islice(self._walk(root), offset, self.num_examples)
        meta_file = index.path.open("rb") if index is not None else None
        try:
            # Look ahead in the listing only: a row's sidecars are read as its batch is made.
            for found, last in batches_with_last(files, self.batch_size):
                yield [self._row(item, meta_file) for item in found], last
        finally:
            if meta_file is not None:
                meta_file.close()


__all__ = ["DEFAULT_EXTENSIONS", "LoadImagesFromFolder", "SidecarError"]
