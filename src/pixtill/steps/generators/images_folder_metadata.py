"""The metadata an images folder carries: a ``metadata.jsonl`` / ``metadata.csv`` file (Hugging
Face's ImageFolder convention: one record per image, whose ``file_name`` is the image's path
relative to the folder) indexed by offset so a record is read only when its image is, and the
errors a bad metadata file or sidecar raises."""

from __future__ import annotations

import csv
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pixtill.errors import PixtillError

FILE_NAME = "file_name"


class SidecarError(PixtillError, ValueError):
    """A metadata file or per-image sidecar that cannot be read or parsed."""

    def __init__(self, path: Path, message: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"'{path}'" if line is None else f"'{path}', line {line}"
        super().__init__(f"bad metadata in {where}: {message}")


def decode_text(path: Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 text (a leading BOM dropped); ``first_line`` is the line number ``data`` starts on."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise SidecarError(path, f"not UTF-8 text ({exc.reason})", line=line) from exc


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SidecarError(path, f"cannot read it: {exc.strerror or exc}") from exc


def _normalize_name(name: str) -> str:
    return posixpath.normpath(name.strip().replace(os.sep, "/"))


@dataclass
class MetadataIndex:
    """Where each record of the folder's metadata file starts: ``file_name -> (offset, line)``."""

    path: Path
    columns: list[str] = field(default_factory=list)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    header: list[str] | None = None  # CSV only

    @property
    def is_csv(self) -> bool:
        return self.path.suffix == ".csv"

    def _add(self, record: dict[str, Any], offset: int, line: int, reserved: set[str]) -> None:
        name = record.get(FILE_NAME)
        if not isinstance(name, str) or not name.strip():
            raise SidecarError(self.path, f"no {FILE_NAME!r} string in the record", line=line)
        key = _normalize_name(name)
        if key in self.offsets:
            first = self.offsets[key][1]
            raise SidecarError(
                self.path, f"{FILE_NAME} {name!r} listed again (first on line {first})", line=line
            )
        self.offsets[key] = (offset, line)
        for column in record:
            if column == FILE_NAME or column in self.columns:
                continue
            if column in reserved:
                raise SidecarError(
                    self.path,
                    f"column {column!r} clashes with the step's own column of that name "
                    "(rename it, or set image_column/path_column)",
                    line=line,
                )
            self.columns.append(column)

    # -- JSON Lines ------------------------------------------------------------------------

    def _parse_json_line(self, raw: bytes, line: int) -> dict[str, Any]:
        text = decode_text(self.path, raw, line)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SidecarError(
                self.path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=line
            ) from exc
        if not isinstance(record, dict):
            raise SidecarError(
                self.path, f"expected a JSON object, got {type(record).__name__}", line=line
            )
        return record

    def _build_jsonl(self, reserved: set[str]) -> None:
        with self.path.open("rb") as file:
            offset = 0
            for line, raw in enumerate(file, start=1):
                if raw.strip():
                    self._add(self._parse_json_line(raw, line), offset, line, reserved)
                offset += len(raw)

    # -- CSV -------------------------------------------------------------------------------

    @staticmethod
    def _lines(file: IO[bytes], path: Path, position: list[int]) -> Iterator[str]:
        """Decoded lines. ``position`` is ``[byte offset, line number]`` of the last line read
        (updated as lines are read)."""
        for raw in file:
            position[0] += len(raw)
            position[1] += 1
            yield decode_text(path, raw, position[1])

    def _build_csv(self, reserved: set[str]) -> None:
        with self.path.open("rb") as file:
            position = [0, 0]
            reader = csv.reader(self._lines(file, self.path, position), strict=True)
            try:
                header = next(reader, None)
                if header is None:
                    raise SidecarError(self.path, "the file is empty", line=1)
                if FILE_NAME not in header:
                    raise SidecarError(self.path, f"no {FILE_NAME!r} column in the header", line=1)
                if len(set(header)) != len(header):
                    raise SidecarError(self.path, "repeated column names in the header", line=1)
                self.header = header
                while True:
                    start, line = position[0], reader.line_num + 1
                    fields = next(reader, None)
                    if fields is None:
                        break
                    if not fields:
                        continue
                    self._add(self._csv_record(fields, line), start, line, reserved)
            except csv.Error as exc:
                raise SidecarError(self.path, f"invalid CSV: {exc}", line=reader.line_num) from exc

    def _csv_record(self, fields: list[str], line: int) -> dict[str, Any]:
        assert self.header is not None
        if len(fields) != len(self.header):
            raise SidecarError(
                self.path,
                f"{len(fields)} fields where the header has {len(self.header)}",
                line=line,
            )
        return dict(zip(self.header, fields))

    # -- both ------------------------------------------------------------------------------

    @classmethod
    def build(cls, path: Path, reserved: set[str]) -> MetadataIndex:
        index = cls(path)
        try:
            if index.is_csv:
                index._build_csv(reserved)
            else:
                index._build_jsonl(reserved)
        except OSError as exc:
            raise SidecarError(path, f"cannot read it: {exc.strerror or exc}") from exc
        return index

    def read(self, file: IO[bytes], key: str) -> dict[str, Any] | None:
        """The record for ``key`` (without ``file_name``), read from the open metadata file."""
        found = self.offsets.get(key)
        if found is None:
            return None
        offset, line = found
        file.seek(offset)
        if self.is_csv:
            reader = csv.reader(self._lines(file, self.path, [offset, line - 1]), strict=True)
            try:
                record = self._csv_record(next(reader, []), line)
            except csv.Error as exc:
                raise SidecarError(self.path, f"invalid CSV: {exc}", line=line) from exc
        else:
            record = self._parse_json_line(file.readline(), line)
        name = record.pop(FILE_NAME, None)
        if not isinstance(name, str) or _normalize_name(name) != key:
            raise SidecarError(self.path, "the file changed after load()", line=line)
        return record
