"""The result of a pipeline run: one `datasets.Dataset` per leaf step.

A `Distiset` is a ``dict`` from leaf step name to dataset. Datasets built `from_shards` are
memory-mapped from an Arrow cache, so a large run does not have to fit in memory, and image
columns come back as `datasets.Image` features (``ds[0]["image"]`` is a PIL image).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets  # type: ignore[import-untyped,unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import yaml
from datasets.utils.py_utils import asdict  # type: ignore[import-untyped,unused-ignore]

from pixtill.images import ImageError
from pixtill.run_report import FailureSummary, summarize_failures
from pixtill.store.image_column import IMAGE_ARROW_TYPE
from pixtill.store.parquet_options import parquet_options
from pixtill.store.shards import to_hf_image

logger = logging.getLogger(__name__)

MANIFEST = "distiset.json"
MAX_UPLOAD_SHARD_BYTES = 500 * 2**20
_BATCH_ROWS = 256


def _check_leaf(name: str) -> str:
    """A leaf name is used as a folder name: refuse anything that could escape its parent."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
        raise ValueError(f"leaf name {name!r} cannot be used as a folder name")
    return name


def _image_kind(feature: Any) -> str | None:
    if isinstance(feature, datasets.Image):
        return "image"
    inner = getattr(feature, "feature", None)
    if isinstance(feature, (getattr(datasets, "List", ()), datasets.Sequence)) and isinstance(
        inner, datasets.Image
    ):
        return "image_list"
    return None


def _embed_image(value: Any) -> Any:
    """A stored image dict with the file behind a local path read in; URLs are left alone."""
    if value is None or value.get("bytes") is not None or not value.get("path"):
        return value
    path = str(value["path"])
    if path.lower().startswith(("http://", "https://", "hf://")) or not os.path.isfile(path):
        return value
    with open(path, "rb") as file:
        return {"bytes": file.read(), "path": os.path.basename(path)}


def _embed(table: pa.Table, features: Any) -> pa.Table:
    columns = []
    for name in table.column_names:
        kind = _image_kind(features[name])
        column = table.column(name)
        if kind == "image":
            values = [_embed_image(v) for v in column.to_pylist()]
            column = pa.array(values, type=IMAGE_ARROW_TYPE)
        elif kind == "image_list":
            lists = column.to_pylist()
            values = [None if v is None else [_embed_image(i) for i in v] for v in lists]
            column = pa.array(values, type=pa.list_(IMAGE_ARROW_TYPE))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=features.arrow_schema)


def _write_parquet(dataset: Any, path: Path) -> None:
    """``dataset`` as one Parquet file with image files embedded, batch by batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = dataset.features
    schema = features.arrow_schema
    arrow = dataset.with_format("arrow")
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema, **parquet_options(schema)) as writer:
        if len(dataset) == 0:
            writer.write_table(schema.empty_table())
        for start in range(0, len(dataset), _BATCH_ROWS):
            writer.write_table(_embed(arrow[start : start + _BATCH_ROWS], features))
    os.replace(tmp, path)


def _dataset_card(repo_id: str, leaves: Mapping[str, Any]) -> str:
    configs: list[dict[str, Any]] = [
        {
            "config_name": leaf,
            "data_files": [{"split": "train", "path": f"data/{leaf}/*.parquet"}],
        }
        for leaf in leaves
    ]
    if len(configs) == 1:
        configs[0]["default"] = True
    header = yaml.safe_dump({"configs": configs, "tags": ["pixtill", "synthetic"]}, sort_keys=False)
    first = next(iter(leaves), "default")
    rows = "\n".join(
        f"| `{leaf}` | {len(ds)} | {', '.join(f'`{c}`' for c in ds.column_names)} |"
        for leaf, ds in leaves.items()
    )
    return (
        f"---\n{header}---\n\n# {repo_id.split('/')[-1]}\n\n"
        "This dataset was built with pixtill. Each subset holds the rows of one leaf step of "
        "the pipeline.\n\n| subset | rows | columns |\n|---|---|---|\n"
        f"{rows}\n\n```python\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("{repo_id}", "{first}", split="train")\n```\n'
    )


def _write_manifest(root: Path, leaves: list[str], columnless: list[str]) -> None:
    manifest = {"format": "pixtill.distiset", "version": 1, "leaves": leaves}
    manifest["columnless"] = columnless
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_dataset_state(folder: Path, dataset: Any, files: Sequence[Path]) -> None:
    """The two files `datasets.Dataset.load_from_disk` reads beside a dataset's Arrow files
    (as `datasets.Dataset.save_to_disk` writes them)."""
    state = {
        "_data_files": [{"filename": os.path.relpath(path, folder)} for path in files],
        "_fingerprint": dataset._fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info = asdict(dataset.info)
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), "utf-8")
    info_text = json.dumps({key: info[key] for key in sorted(info)}, indent=2)
    (folder / "dataset_info.json").write_text(info_text, encoding="utf-8")


class Distiset(dict[str, "datasets.Dataset"]):
    """The result of a run: one `datasets.Dataset` per leaf step (key = leaf step name)."""

    @functools.cached_property
    def failures(self) -> FailureSummary:
        """The rows that failed, by step and cause, read from each row's ``error_<step>``
        metadata (`pixtill.run_report`); ``str()`` of it is the report for people."""
        return summarize_failures(self)

    @classmethod
    def from_shards(
        cls, shards: Mapping[str, Sequence[Path]], *, cache_dir: Path | None = None
    ) -> Distiset:
        """Load each leaf's Parquet shards (in order) as one memory-mapped dataset; a leaf with
        no shards gets an empty dataset. The Arrow copies go to ``cache_dir`` (default: the
        `datasets` cache)."""
        out = cls()
        bars_were_off = datasets.utils.logging.is_progress_bar_enabled() is False
        datasets.disable_progress_bars()  # the run already showed its own progress
        try:
            for leaf, paths in shards.items():
                if not paths:
                    out[leaf] = datasets.Dataset.from_dict({})
                    continue
                features = datasets.Features.from_arrow_schema(pq.read_schema(paths[0]))
                out[leaf] = datasets.Dataset.from_parquet(
                    [str(p) for p in paths],
                    features=features,
                    cache_dir=None if cache_dir is None else str(cache_dir),
                )
        finally:
            if not bars_were_off:
                datasets.enable_progress_bars()
        return out

    @classmethod
    def from_arrow_files(cls, files: Mapping[str, Sequence[Path]]) -> Distiset:
        """Memory-map each leaf's Arrow stream files (in order) as one dataset, without
        copying them; a leaf with no files gets an empty dataset. The files must outlive it."""
        out = cls()
        for leaf, paths in files.items():
            parts = [datasets.Dataset.from_file(str(p)) for p in paths]
            if not parts:
                out[leaf] = datasets.Dataset.from_dict({})
            else:
                out[leaf] = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        return out

    @classmethod
    def from_run_folder(cls, root: Path, files: Mapping[str, Sequence[Path]]) -> Distiset:
        """A run's datasets, whose leaves' Arrow stream files lie in ``root/<leaf>/``: each is
        memory-mapped in place, and ``root`` becomes a saved Distiset (``state.json`` and
        ``dataset_info.json`` beside the files, ``distiset.json`` at the top), so that
        `load_from_disk` reads it back and `save_to_disk` to ``root`` copies nothing. Every
        image's bytes are on disk once."""
        out = cls.from_arrow_files(files)
        columnless = []
        for leaf, dataset in out.items():
            if not dataset.column_names or not files[leaf]:
                columnless.append(leaf)
                continue
            _write_dataset_state(root / _check_leaf(leaf), dataset, files[leaf])
        _write_manifest(root, list(out), columnless)
        out._saved_at = root.resolve()
        return out

    # -- local storage -------------------------------------------------------------------
    _saved_at: Path | None = None

    def save_to_disk(self, path: str | Path) -> None:
        """One `datasets` ``save_to_disk`` folder per leaf, and a ``distiset.json`` listing them.

        A run's result saved to its own output folder is already there: nothing is copied."""
        root = Path(path)
        if self._saved_at is not None and root.resolve() == self._saved_at:
            return
        root.mkdir(parents=True, exist_ok=True)
        columnless = []
        for leaf, dataset in [(_check_leaf(leaf), dataset) for leaf, dataset in self.items()]:
            target = root / leaf
            if not dataset.column_names:  # `datasets` cannot save (or load) a table without columns
                columnless.append(leaf)
                continue
            # One shard at least: `datasets` writes none for an empty dataset, then cannot load it.
            dataset.save_to_disk(str(target), num_shards=1 if len(dataset) == 0 else None)
        _write_manifest(root, list(self), columnless)

    @classmethod
    def load_from_disk(cls, path: str | Path) -> Distiset:
        root = Path(path)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{root} is not a saved Distiset (no {MANIFEST})")
        content = json.loads(manifest.read_text(encoding="utf-8"))
        columnless = set(content.get("columnless", ()))
        return cls(
            (
                leaf,
                datasets.Dataset.from_dict({})
                if leaf in columnless
                else datasets.Dataset.load_from_disk(str(root / _check_leaf(leaf))),
            )
            for leaf in content["leaves"]
        )

    def to_parquet(self, path: str | Path) -> dict[str, Path]:
        """``path/<leaf>/data.parquet`` per leaf, with image files embedded."""
        written = {}
        for leaf, dataset in [(_check_leaf(leaf), dataset) for leaf, dataset in self.items()]:
            target = Path(path) / leaf / "data.parquet"
            _write_parquet(dataset, target)
            written[leaf] = target
        return written

    # -- the Hub -------------------------------------------------------------------------
    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> None:
        """Upload every leaf as Parquet under ``data/<leaf>/`` with a dataset card whose
        ``configs`` map each leaf to its files, in one commit (files of an earlier push under
        those folders are removed in the same commit). The token is ``token``, else
        ``HF_TOKEN``, else the one saved by ``hf auth login``."""
        import huggingface_hub
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

        token = token or os.environ.get("HF_TOKEN") or huggingface_hub.get_token()
        if not token:
            raise ValueError(
                "no Hugging Face token: pass token=..., set HF_TOKEN or run `hf auth login`"
            )
        leaves = {_check_leaf(leaf): dataset for leaf, dataset in self.items()}
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pixtill-push-") as tmp:
            operations: list[CommitOperationAdd | CommitOperationDelete] = []
            for leaf, dataset in leaves.items():
                nbytes = dataset.data.nbytes if len(dataset) else 0
                count = max(1, min(len(dataset), math.ceil(nbytes / MAX_UPLOAD_SHARD_BYTES)))
                for index in range(count):
                    name = f"data/{leaf}/train-{index:05d}-of-{count:05d}.parquet"
                    local = Path(tmp) / name
                    part = dataset.shard(count, index, contiguous=True) if count > 1 else dataset
                    _write_parquet(part, local)
                    operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=local))
            card = _dataset_card(repo_id, leaves).encode("utf-8")
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
            adding = {op.path_in_repo for op in operations}
            folders = tuple(f"data/{leaf}/" for leaf in leaves)
            for existing in api.list_repo_files(repo_id, repo_type="dataset"):
                if existing.startswith(folders) and existing not in adding:
                    operations.append(CommitOperationDelete(path_in_repo=existing))
            api.create_commit(
                repo_id=repo_id,
                repo_type="dataset",
                operations=operations,
                commit_message=commit_message or f"Upload {len(leaves)} subset(s) with pixtill",
            )
        logger.info("pushed %s to the Hub: %s", ", ".join(leaves), repo_id)

    # -- columns -------------------------------------------------------------------------
    def transform_columns_to_image(self, columns: str | list[str]) -> Distiset:
        """Turn columns of base64 strings, data URLs, bytes or paths into `datasets.Image`
        columns, in every dataset that has them (in place; returns ``self``). None stays None;
        a value that is not a readable image becomes None, with a warning."""
        names = [columns] if isinstance(columns, str) else list(columns)
        for leaf, dataset in list(self.items()):
            for column in names:
                if column not in dataset.column_names or _image_kind(dataset.features[column]):
                    continue
                dataset = _column_to_image(dataset, column, leaf)
            self[leaf] = dataset
        return self

    # -- access --------------------------------------------------------------------------
    @property
    def default(self) -> datasets.Dataset:
        """The only dataset, when there is one leaf."""
        if len(self) != 1:
            raise KeyError(
                f"Distiset.default needs exactly one leaf; this one has {len(self)}: "
                f"{sorted(self)} (index it by name instead)"
            )
        return next(iter(self.values()))

    def __repr__(self) -> str:
        if not self:
            return "Distiset({})"
        lines = [
            f"    {leaf}: Dataset(rows={len(ds)}, columns={ds.column_names})"
            for leaf, ds in self.items()
        ]
        return "Distiset({\n" + ",\n".join(lines) + "\n})"

    def _repr_html_(self) -> str:
        """A small gallery of each leaf's first rows, for notebooks (escaped HTML)."""
        from pixtill.viewer.notebook import gallery_html

        return gallery_html(self)


def _column_to_image(dataset: Any, column: str, leaf: str) -> Any:
    features = dataset.features.copy()
    features[column] = datasets.Image()

    def convert(values: list[Any], indices: list[int]) -> dict[str, list[Any]]:
        out = []
        for value, index in zip(values, indices):
            try:
                out.append(to_hf_image(value, column=column, row=index))
            except (ImageError, OSError) as exc:
                logger.warning("dataset %r: %s; stored as None", leaf, exc)
                out.append(None)
        return {column: out}

    seed = f"{dataset._fingerprint}:{column}:pixtill-to-image"
    return dataset.map(
        convert,
        input_columns=[column],
        with_indices=True,
        batched=True,
        features=features,
        new_fingerprint=hashlib.sha256(seed.encode()).hexdigest()[:32],
        desc=f"{leaf}: {column} to images",
    )


__all__ = ["Distiset"]
