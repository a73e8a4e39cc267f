from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pixtill.store.image_column import IMAGE_ARROW_TYPE
from pixtill.store.parquet_options import parquet_options

IMAGE = {"bytes": b"\x89PNG" + bytes(range(256)) * 4, "path": None}


def _table() -> pa.Table:
    rows = 3
    return pa.table(
        {
            "instruction": pa.array(["describe"] * rows),
            "image": pa.array([IMAGE] * rows, type=IMAGE_ARROW_TYPE),
            "images": pa.array([[IMAGE, IMAGE]] * rows, type=pa.list_(IMAGE_ARROW_TYPE)),
            "meta": pa.array(
                [{"score": 1.5, "tags": ["a", "b"], "crop": IMAGE}] * rows,
                type=pa.struct(
                    {"score": pa.float64(), "tags": pa.list_(pa.string()), "crop": IMAGE_ARROW_TYPE}
                ),
            ),
            "counts": pa.array([[("k", 1)]] * rows, type=pa.map_(pa.string(), pa.int64())),
        }
    )


def _written(tmp_path: Path, table: pa.Table) -> dict[str, tuple[str, tuple[str, ...]]]:
    path = tmp_path / "shard.parquet"
    with pq.ParquetWriter(path, table.schema, **parquet_options(table.schema)) as writer:
        writer.write_table(table)
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = (group.column(i) for i in range(group.num_columns))
    return {c.path_in_schema: (c.compression, c.encodings) for c in columns}


def test_image_bytes_are_stored_plain_and_the_rest_as_usual(tmp_path: Path) -> None:
    table = _table()
    written = _written(tmp_path, table)
    image_bytes = {"image.bytes", "images.list.element.bytes", "meta.crop.bytes"}
    # Every leaf the options name is a real column: nothing falls back to "uncompressed".
    assert set(written) == {path for path in parquet_options(table.schema)["compression"]}
    for path, (codec, encodings) in written.items():
        if path in image_bytes:
            assert codec == "UNCOMPRESSED", path
            assert not any("DICTIONARY" in e for e in encodings), path
        else:
            assert codec == "SNAPPY", path
    assert "RLE_DICTIONARY" in written["instruction"][1]
    assert pq.read_table(tmp_path / "shard.parquet").equals(table)


def test_without_images_the_defaults_are_kept() -> None:
    schema = pa.schema({"text": pa.string(), "n": pa.int64()})
    assert parquet_options(schema) == {"compression": "snappy", "use_dictionary": True}
