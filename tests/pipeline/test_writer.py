from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixtill.images import ImageRef
from pixtill.store.shards import IMAGE_ARROW_TYPE, ShardWriter, to_hf_image
from sample_images import image_bytes, truncated_png


def read_all(paths: list[Path]) -> list[dict[str, Any]]:
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def pixtill_meta(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata
    return dict(json.loads(meta[b"pixtill"]))


def hf_features(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata
    return dict(json.loads(meta[b"huggingface"])["info"]["features"])


def test_shards_by_row_count_in_order(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "leaf", rows_per_shard=3)
    writer.write([{"i": i} for i in range(4)])
    assert writer.rows_written == 3
    assert writer.pending_rows == 1
    writer.write([{"i": i} for i in range(4, 10)])
    paths = writer.close()
    assert [p.name for p in paths] == [f"data-{i:05d}.parquet" for i in range(4)]
    assert [r["i"] for r in read_all(paths)] == list(range(10))
    assert writer.rows_written == 10
    assert writer.close() == paths  # idempotent
    assert not list((tmp_path / "leaf").glob("*.tmp"))
    with pytest.raises(RuntimeError, match="closed"):
        writer.write([{"i": 0}])


def test_no_rows_writes_nothing(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "leaf")
    writer.write([])
    assert writer.close() == []
    assert not (tmp_path / "leaf").exists()


def test_shards_by_size(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, rows_per_shard=1000, max_shard_bytes=10_000)
    writer.write([{"text": "x" * 3000} for _ in range(10)])
    paths = writer.close()
    assert 3 <= len(paths) <= 5
    assert len(read_all(paths)) == 10


def test_twenty_thousand_rows_make_twenty_shards(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, rows_per_shard=1000)
    for start in range(0, 20_000, 250):
        writer.write([{"i": i, "text": f"row {i}"} for i in range(start, start + 250)])
        assert writer.pending_rows < 1000  # never more than one shard in memory
    paths = writer.close()
    assert len(paths) == 20
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 20_000


def test_image_values_become_hf_image_structs(tmp_path: Path) -> None:
    png = image_bytes(4, 3)
    path = tmp_path / "pic.png"
    path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    pil = Image.new("RGB", (5, 5), (9, 9, 9))
    values: list[Any] = [
        ImageRef.from_value(png),
        None,
        pil,
        png,
        b64,
        "data:image/png;base64," + b64,
        str(path),
        {"bytes": png, "path": "orig.png"},
        {"bytes": None, "path": str(path)},
    ]
    writer = ShardWriter(tmp_path / "out", image_columns=["image"], rows_per_shard=4)
    writer.write([{"image": v} for v in values])
    paths = writer.close()
    assert pq.read_schema(paths[0]).field("image").type == IMAGE_ARROW_TYPE
    assert hf_features(paths[0])["image"] == {"_type": "Image"}
    rows = read_all(paths)
    assert rows[1]["image"] is None
    for row in rows[:1] + rows[3:]:
        assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (4, 3)
    assert Image.open(io.BytesIO(rows[2]["image"]["bytes"])).size == (5, 5)
    assert [rows[i]["image"]["path"] for i in (0, 2, 3, 4, 5)] == [None] * 5
    assert rows[6]["image"]["path"] == str(path)
    assert rows[7]["image"]["path"] == "orig.png"
    assert rows[8]["image"]["path"] == str(path)


def test_image_columns_are_detected_from_values(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path)
    writer.write(
        [
            {"a": None, "b": "plain text", "c": b"not decoded", "d": None},
            {"a": Image.new("L", (2, 2)), "b": "more", "c": image_bytes(), "d": "text"},
        ]
    )
    paths = writer.close()
    schema = pq.read_schema(paths[0])
    assert schema.field("a").type == IMAGE_ARROW_TYPE
    assert schema.field("b").type == pa.string()
    assert schema.field("d").type == pa.string()
    # bytes mark an image column; bytes that are no image are stored as null
    assert schema.field("c").type == IMAGE_ARROW_TYPE
    rows = read_all(paths)
    assert rows[0]["c"] is None
    assert rows[1]["c"]["bytes"] == image_bytes()


def test_url_image_column_stays_a_string(tmp_path: Path) -> None:
    url = "https://example.com/a.png"
    writer = ShardWriter(tmp_path, image_columns=["image"])
    writer.write([{"image": url}, {"image": None}, {"image": image_bytes(2, 2)}])
    paths = writer.close()
    assert pq.read_schema(paths[0]).field("image").type == pa.string()
    rows = read_all(paths)
    assert rows[0]["image"] == url
    assert rows[1]["image"] is None
    assert rows[2]["image"].startswith("data:image/png;base64,")


def test_list_of_images(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, image_columns=["images"], rows_per_shard=2)
    writer.write(
        [
            {"images": []},
            {"images": None},
            {"images": [image_bytes(2, 2), ImageRef.from_value(image_bytes(3, 3))]},
        ]
    )
    paths = writer.close()
    assert hf_features(paths[0])["images"] == {"feature": {"_type": "Image"}, "_type": "List"}
    assert pq.read_schema(paths[0]).equals(pq.read_schema(paths[1]))
    rows = read_all(paths)
    assert rows[0]["images"] == []
    assert rows[1]["images"] is None
    assert [Image.open(io.BytesIO(i["bytes"])).size for i in rows[2]["images"]] == [(2, 2), (3, 3)]


def test_bad_image_becomes_null_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = ShardWriter(tmp_path, image_columns=["image"])
    with caplog.at_level(logging.WARNING, logger="pixtill.store.shards"):
        writer.write(
            [
                {"image": image_bytes()},
                {"image": "no such image.png"},
                {"image": truncated_png()},  # header fine, pixels missing
                {"image": {"bytes": b"not an image", "path": "x.png"}},
            ]
        )
        paths = writer.close()
    rows = read_all(paths)
    assert rows[0]["image"] is not None
    assert [r["image"] for r in rows[1:]] == [None, None, None]
    assert "row 1" in caplog.text
    assert "row 2" in caplog.text
    assert "row 3" in caplog.text
    assert "'image'" in caplog.text


def test_all_none_first_shard_widens_later(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, rows_per_shard=2)
    writer.write([{"a": None, "b": 1}, {"a": None, "b": 2}])
    writer.write([{"a": "x", "b": 3}, {"b": 4.5, "c": [1, 2]}])
    paths = writer.close()
    schemas = [pq.read_schema(p) for p in paths]
    assert schemas[0].equals(schemas[1], check_metadata=True)
    assert schemas[0].field("a").type == pa.string()
    assert schemas[0].field("b").type == pa.float64()
    assert read_all(paths) == [
        {"a": None, "b": 1.0, "c": None},
        {"a": None, "b": 2.0, "c": None},
        {"a": "x", "b": 3.0, "c": None},
        {"a": None, "b": 4.5, "c": [1, 2]},
    ]


def test_metadata_struct_gains_keys_across_shards(tmp_path: Path) -> None:
    ok = {"raw_output_gen": "text", "statistics_gen": {"input_tokens": 3, "output_tokens": 4}}
    failed = {**ok, "raw_output_gen": None, "error_gen": "step 'gen': row 3: boom"}
    writer = ShardWriter(tmp_path, rows_per_shard=2)
    writer.write([{"pixtill_metadata": ok}, {"pixtill_metadata": ok}])
    writer.write([{"pixtill_metadata": failed}])
    paths = writer.close()
    assert pixtill_meta(paths[0]) == {"json_columns": []}
    field = pq.read_schema(paths[0]).field("pixtill_metadata")
    assert pa.types.is_struct(field.type)
    rows = [r["pixtill_metadata"] for r in read_all(paths)]
    assert rows[0] == {**ok, "error_gen": None}
    assert rows[2] == failed


def test_untypeable_column_falls_back_to_json(tmp_path: Path) -> None:
    typed = {"raw_input_gen": [{"role": "user", "content": "hi"}]}
    mixed = {
        "raw_input_gen": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ]
    }
    writer = ShardWriter(tmp_path, rows_per_shard=1)
    writer.write([{"m": typed, "n": 1}, {"m": mixed, "n": 2}, {"m": None, "n": 3}])
    paths = writer.close()
    for path in paths:
        assert pixtill_meta(path) == {"json_columns": ["m"]}
        assert pq.read_schema(path).field("m").type == pa.string()
    rows = read_all(paths)
    assert json.loads(rows[0]["m"]) == typed
    assert json.loads(rows[1]["m"]) == mixed
    assert rows[2]["m"] is None
    assert [r["n"] for r in rows] == [1, 2, 3]


def test_conflicting_types_across_shards_fall_back_to_json(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, rows_per_shard=1)
    writer.write([{"v": {"a": 1}}, {"v": "text"}, {"v": {}}])
    paths = writer.close()
    rows = read_all(paths)
    assert [json.loads(r["v"]) for r in rows] == [{"a": 1}, "text", {}]


def test_odd_values_in_json_columns(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path)
    writer.write(
        [{"v": {"big": 2**70, "blob": b"\x01", "ref": ImageRef.from_value(image_bytes())}}]
    )
    rows = read_all(writer.close())
    value = json.loads(rows[0]["v"])
    assert value["big"] == 2**70
    assert value["blob"] == base64.b64encode(b"\x01").decode()
    assert value["ref"].startswith("sha256:")


def test_to_hf_image_never_fetches_urls() -> None:
    assert to_hf_image("https://example.com/x.png") == {
        "bytes": None,
        "path": "https://example.com/x.png",
    }
    assert to_hf_image(None) is None


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows_per_shard"):
        ShardWriter(tmp_path, rows_per_shard=0)
    with pytest.raises(ValueError, match="max_shard_bytes"):
        ShardWriter(tmp_path, max_shard_bytes=0)


def test_arrow_copies_match_the_parquet_shards_after_reconciling(tmp_path: Path) -> None:
    """The Arrow stream copies (what the run's Distiset memory-maps) hold the same rows and
    the same final schema as the Parquet shards, also when a later shard changed a type."""
    writer = ShardWriter(tmp_path / "pq", rows_per_shard=2, arrow_directory=tmp_path / "arrow")
    writer.write([{"a": None, "b": 1}, {"a": None, "b": 2}])
    writer.write([{"a": "x", "b": 3}, {"b": 4.5, "c": [1, 2]}])
    paths = writer.close()
    arrow_paths = writer.arrow_paths
    assert [p.name for p in arrow_paths] == ["data-00000.arrow", "data-00001.arrow"]
    assert not list((tmp_path / "arrow").glob("*.tmp"))
    for parquet_path, arrow_path in zip(paths, arrow_paths):
        with pa.memory_map(str(arrow_path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        parquet_schema = pq.read_schema(parquet_path)  # Parquet names list items "element"
        assert table.schema.names == parquet_schema.names
        assert table.schema.metadata == parquet_schema.metadata
        assert [str(t).replace("item", "element") for t in table.schema.types] == [
            str(t) for t in parquet_schema.types
        ]
        assert table.to_pylist() == pq.read_table(parquet_path).to_pylist()


def test_no_arrow_copies_unless_asked(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, rows_per_shard=1)
    writer.write([{"a": 1}])
    writer.close()
    assert writer.arrow_paths == []
    assert not list(tmp_path.rglob("*.arrow"))


def test_rows_go_to_disk_a_chunk_at_a_time(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "leaf", rows_per_shard=1000, arrow_directory=tmp_path / "a")
    writer.write([{"i": i} for i in range(250)])
    assert writer.rows_written == 0 and writer.pending_rows == 250  # the shard is still open
    assert list((tmp_path / "leaf").glob("*.tmp"))  # ... and being written
    paths = writer.close()
    assert len(paths) == 1
    row_groups = pq.ParquetFile(paths[0]).metadata
    assert [row_groups.row_group(g).num_rows for g in range(row_groups.num_row_groups)] == [
        100,
        100,
        50,
    ]
    assert [r["i"] for r in read_all(paths)] == list(range(250))


def test_a_wider_schema_starts_a_new_shard_and_all_end_alike(tmp_path: Path) -> None:
    ok = {"raw_output_gen": "text"}
    rows = [{"i": i, "pixtill_metadata": ok} for i in range(150)]
    rows[120]["pixtill_metadata"] = {**ok, "error_gen": "boom"}
    writer = ShardWriter(tmp_path / "leaf", rows_per_shard=1000, arrow_directory=tmp_path / "a")
    writer.write(rows)
    paths = writer.close()
    assert [pq.read_metadata(p).num_rows for p in paths] == [100, 50]
    schemas = [pq.read_schema(p) for p in paths]
    assert schemas[0].equals(schemas[1], check_metadata=True)
    out = read_all(paths)
    assert [r["i"] for r in out] == list(range(150))
    assert out[0]["pixtill_metadata"] == {**ok, "error_gen": None}
    assert out[120]["pixtill_metadata"]["error_gen"] == "boom"
    arrow_rows = [
        row
        for path in writer.arrow_paths
        for row in pa.ipc.open_stream(pa.OSFile(str(path))).read_all().to_pylist()
    ]
    assert arrow_rows == out


def test_abort_removes_the_open_shard_and_keeps_finished_ones(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "leaf", rows_per_shard=100, arrow_directory=tmp_path / "a")
    writer.write([{"i": i} for i in range(150)])
    writer.abort()
    assert sorted(p.name for p in (tmp_path / "leaf").iterdir()) == ["data-00000.parquet"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["data-00000.arrow"]
    writer.abort()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        writer.write([{"i": 0}])


def test_shards_by_size_count_images_in_lists_and_files(tmp_path: Path) -> None:
    png = image_bytes(64, 64)
    path = tmp_path / "big.png"
    path.write_bytes(png)
    limit = 4 * len(png)
    writer = ShardWriter(tmp_path / "out", rows_per_shard=1000, max_shard_bytes=limit)
    writer.write([{"images": [png, png], "file": ImageRef.from_value(path)} for _ in range(6)])
    paths = writer.close()
    assert len(paths) >= 3  # ~3 images' bytes a row: never more than two rows a shard
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 6
