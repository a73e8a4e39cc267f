"""Shards written by several ranks of one run: one final schema for all of them.

Each rank's `ShardWriter` brings its own shards to its own final schema; ranks that saw
different rows may disagree (a metadata key only where a row failed, a column that is all None
on one rank). `reconcile_files` computes the schema that holds every rank's (fields in
first-seen order, types widened, JSON columns united, image columns kept as `datasets.Image`)
and rewrites the files that differ, with `pixtill.store.schema.reconcile`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets  # type: ignore[import-untyped,unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

from pixtill.store.columns import unify
from pixtill.store.schema import Shard, reconcile
from pixtill.store.shards import PIXTILL_METADATA_KEY

_LIST_FEATURE: Any = getattr(datasets, "List", None) or datasets.Sequence


def read_schema(path: Path) -> pa.Schema:
    """The schema of an Arrow stream file (its first message only)."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_stream(source).schema


def _json_columns(schema: pa.Schema) -> frozenset[str]:
    raw = (schema.metadata or {}).get(PIXTILL_METADATA_KEY)
    return frozenset(json.loads(raw).get("json_columns", [])) if raw else frozenset()


def _image_kinds(schema: pa.Schema) -> dict[str, str]:
    try:
        features = datasets.Features.from_arrow_schema(schema)
    except Exception:  # no usable features metadata: no image columns known
        return {}
    kinds = {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            kinds[name] = "image"
        elif isinstance(getattr(feature, "feature", None), datasets.Image):
            kinds[name] = "image_list"
    return kinds


def final_schema(schemas: Sequence[pa.Schema]) -> tuple[pa.Schema, frozenset[str]]:
    """The schema that holds all of ``schemas``, and its JSON columns."""
    types: dict[str, pa.DataType] = {}
    kinds: dict[str, str] = {}
    json_columns: set[str] = set()
    for schema in schemas:
        json_columns |= _json_columns(schema)
        kinds.update(_image_kinds(schema))
        for field in schema:
            types[field.name] = unify(types.get(field.name), field.type)
    for name in json_columns:
        types[name] = pa.string()
    plain = pa.schema(list(types.items()))
    features = datasets.Features.from_arrow_schema(plain)
    for name, kind in kinds.items():
        features[name] = datasets.Image() if kind == "image" else _LIST_FEATURE(datasets.Image())
    metadata = dict(features.arrow_schema.metadata or {})
    ordered = [name for name in types if name in json_columns]
    metadata[PIXTILL_METADATA_KEY] = json.dumps({"json_columns": ordered}).encode()
    return pa.schema(list(types.items()), metadata=metadata), frozenset(json_columns)


def reconcile_files(paths: Sequence[Path]) -> None:
    """Bring every Arrow stream file in ``paths`` (one leaf, all ranks) to one schema."""
    schemas = [read_schema(path) for path in paths]
    if all(schema.equals(schemas[0], check_metadata=True) for schema in schemas[1:]):
        return
    final, json_columns = final_schema(schemas)
    shards = [
        Shard(path=None, schema=schema, json_columns=_json_columns(schema), arrow_path=path)
        for path, schema in zip(paths, schemas)
    ]
    reconcile(shards, final, json_columns)
