"""`ImageDeduplication` and the Hamming clustering under it."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pixtill.steps.quality import ImageDeduplication
from pixtill.steps.quality.hashing import cluster_hashes


def photo(seed: int, size: int = 96) -> Image.Image:
    """A picture with structure (random rectangles), so perceptual hashes differ by seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (rng.randrange(256), 128, 128))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size), rng.randrange(size)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + rng.randrange(10, 50), y + rng.randrange(10, 50)), fill=colour)
    return image


def encoded(image: Image.Image, fmt: str = "PNG", **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_clusters_by_hamming_distance() -> None:
    hashes = [0b1111, 0b1110, 1 << 63, 0b1111, (1 << 63) | 0b11, 0xFFFF]
    assert cluster_hashes(hashes, 0).tolist() == [0, 1, 2, 0, 4, 5]
    assert cluster_hashes(hashes, 1).tolist() == [0, 0, 2, 0, 4, 5]
    assert cluster_hashes(hashes, 2).tolist() == [0, 0, 2, 0, 2, 5]
    assert cluster_hashes([], 3).tolist() == []
    with pytest.raises(ValueError, match="between 0 and 16"):
        cluster_hashes([1], 17)


def test_banded_search_finds_what_all_pairs_find() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 60, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(b) for b in rng.integers(0, 64, 200)]
    noisy = np.array([base[i % 60] ^ flips[i] ^ flips[(i * 7) % 200] for i in range(200)])
    hashes = np.concatenate([base, noisy])
    for distance in (1, 2, 4, 7):
        labels = cluster_hashes(hashes, distance)
        # Reference: all pairs, then connected components by repeated relabelling.
        close = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= distance
        reference = np.arange(len(hashes))
        for _ in range(len(hashes)):
            reference = np.array([reference[close[i]].min() for i in range(len(hashes))])
        assert labels.tolist() == reference.tolist()


def test_exact_and_near_duplicates_keep_the_first_row() -> None:
    a, b = photo(1), photo(2)
    rows = [
        {"id": 0, "image": encoded(a)},
        {"id": 1, "image": encoded(b)},
        {"id": 2, "image": encoded(a)},  # the same bytes
        {"id": 3, "image": encoded(a.convert("RGB"), "JPEG", quality=70)},  # re-encoded
        {"id": 4, "image": encoded(b.resize((80, 80)))},  # resized
        {"id": 5, "image": encoded(photo(3))},
    ]
    step = ImageDeduplication(name="dedup", drop_duplicates=False)
    (out,) = step.process_applying_mappings(rows)
    assert [r["dedup_cluster"] for r in out] == [0, 1, 0, 0, 1, 5]
    assert [r["is_duplicate"] for r in out] == [False, False, True, True, True, False]
    assert all(len(r["image_phash"]) == 16 for r in out)

    (kept,) = ImageDeduplication(name="dedup").process_applying_mappings(rows)
    assert [r["id"] for r in kept] == [0, 1, 5]


def test_exact_only_and_keep_best_by_score() -> None:
    a = photo(1)
    rows = [
        {"id": 0, "image": encoded(a), "score": 2},
        {"id": 1, "image": encoded(a, "JPEG", quality=70), "score": 5},
        {"id": 2, "image": encoded(a), "score": 4},
        {"id": 3, "image": encoded(a), "score": None},
    ]
    exact = ImageDeduplication(name="exact", max_distance=None, drop_duplicates=False)
    (out,) = exact.process_applying_mappings(rows)
    assert [r["dedup_cluster"] for r in out] == [0, 1, 0, 0]
    assert all(r["image_phash"] is None for r in out)
    best = ImageDeduplication(name="best", keep="best", score_column="score")
    (kept,) = best.process_applying_mappings(rows)
    assert [r["id"] for r in kept] == [1]
    lowest = ImageDeduplication(
        name="lowest", keep="best", score_column="score", higher_is_better=False
    )
    (kept,) = lowest.process_applying_mappings(rows)
    assert [r["id"] for r in kept] == [0]
    with pytest.raises(ValueError, match="needs a score_column"):
        ImageDeduplication(name="bad", keep="best")


def test_an_unreadable_image_is_kept_alone_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = [{"image": b"not an image"}, {"image": encoded(photo(1))}]
    (out,) = ImageDeduplication(name="dedup").process_applying_mappings(rows)
    assert len(out) == 2 and out[0]["image_phash"] is None
    assert "row 0, column 'image'" in caplog.text
