"""A row whose image value cannot be read keeps that value: the image column is null (a
`datasets.Image` that would open a missing path on every read is worse), and the value as the
user gave it is in ``pixtill_metadata["original_<column>"]``, through a run and a reload."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import pytest

from faults.fault_servers import FaultyOpenAI, png
from http_servers import serve
from models.fake_providers import FAST
from pixtill.distiset import Distiset
from pixtill.models.llms import OpenAILLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import METADATA_COLUMN, TextGenerationWithImage
from pixtill.store.shards import ShardWriter


@pytest.fixture
def server() -> Iterator[FaultyOpenAI]:
    fake = FaultyOpenAI()
    with serve(fake.app()) as base:
        fake.base = base
        yield fake


def test_an_unreadable_image_path_is_kept_in_the_saved_row(
    server: FaultyOpenAI, tmp_path: Path
) -> None:
    good = "data:image/png;base64," + base64.b64encode(png()).decode()
    missing = str(tmp_path / "photos" / "cat 1.png")
    data = [
        {"instruction": "a", "image": good},
        {"instruction": "b", "image": missing},
        {"instruction": "c", "image": good},
    ]
    llm = OpenAILLM(model="m", base_url=f"{server.base}/v1", api_key="k", **FAST)
    with Pipeline(name="kept", cache_dir=tmp_path / "cache") as pipeline:
        LoadDataFromDicts(name="load", data=data) >> TextGenerationWithImage(name="v", llm=llm)
    pipeline.run(use_cache=False, output_dir=tmp_path / "out")
    rows = list(Distiset.load_from_disk(tmp_path / "out")["v"])  # every row reads back
    assert rows[1]["image"] is None
    assert rows[1][METADATA_COLUMN]["original_image"] == missing
    assert "column 'image'" in rows[1][METADATA_COLUMN]["error_v"]
    assert rows[0]["image"] is not None and rows[2]["image"] is not None
    assert rows[0][METADATA_COLUMN].get("original_image") is None


def test_the_writer_keeps_non_images_of_a_list_column_and_rows_without_metadata(
    tmp_path: Path,
) -> None:
    writer = ShardWriter(tmp_path, image_columns=["images", "image"])
    given: list[dict[str, Any]] = [
        {"images": [png(), "nowhere.png"], "image": b"not an image"},
        {"images": [png()], "image": png(), METADATA_COLUMN: {"error_x": "e"}},
    ]
    writer.write(given)
    table = pq.read_table(writer.close()[0]).to_pylist()
    assert table[0]["images"][1] is None and table[0]["images"][0]["bytes"] == png()
    meta = table[0][METADATA_COLUMN]
    assert meta["original_images"] == ["nowhere.png"]
    assert base64.b64decode(meta["original_image"].split(",", 1)[1]) == b"not an image"
    assert table[1][METADATA_COLUMN]["error_x"] == "e"
    assert table[1][METADATA_COLUMN]["original_image"] is None
    assert METADATA_COLUMN not in given[0]  # the caller's rows are not changed
