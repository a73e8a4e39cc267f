from __future__ import annotations

import gc

import pyarrow as pa

from pixtill.store.image_column import IMAGE_ARROW_TYPE, ImageColumnBuffer


def values(seed: int) -> list[dict[str, object] | None]:
    return [
        {"bytes": bytes([seed]) * 5, "path": None},
        None,
        {"bytes": None, "path": "https://example.com/a.png"},
        {"bytes": bytes([seed + 1]) * 3, "path": "local.png"},
        {"bytes": b"", "path": None},
    ]


def test_builds_what_pa_array_builds() -> None:
    built = ImageColumnBuffer().build(values(1))
    expected = pa.array(values(1), type=IMAGE_ARROW_TYPE)
    assert built.type == IMAGE_ARROW_TYPE
    assert built.equals(expected)
    assert built.to_pylist() == values(1)
    assert ImageColumnBuffer().build([]).to_pylist() == []


def test_the_buffer_is_reused_once_the_last_array_is_gone() -> None:
    column = ImageColumnBuffer()
    first = column.build(values(1))
    address = first.field("bytes").buffers()[2].address
    del first
    gc.collect()
    second = column.build(values(7))
    assert second.field("bytes").buffers()[2].address == address
    assert second.to_pylist() == values(7)


def test_an_array_still_in_use_is_never_overwritten() -> None:
    column = ImageColumnBuffer()
    kept = column.build(values(1))
    newer = column.build(values(7))
    assert kept.to_pylist() == values(1)
    assert newer.to_pylist() == values(7)
