"""How fast `pixtill view` opens a large dataset, and whether its memory follows the size
(a script, not a test).

    .venv/bin/python benchmarks/viewer.py                   # 10,000 and 1,000,000 rows
    .venv/bin/python benchmarks/viewer.py --rows 100000

Writes a dataset shaped like a pixtill run's output (``paint/data-NNNNN.parquet`` shards of
1,000 rows in row groups of 100; columns: a small PNG image, a caption, a score, a model name
and a ``pixtill_metadata`` struct with an error on 1 row in 50), then, per row count, in a
fresh subprocess: the time to open it and serve the first page of 50 rows with one thumbnail
(what the browser asks for first), the time of a sort by score and of the failed-rows filter
over every row, and the process's peak RSS. The bare reference, measured in the same
subprocess before the viewer, reads the first row group of the first shard with pyarrow.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD_ROWS = 1000
GROUP_ROWS = 100


def write_dataset(root: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    images = []
    for k in range(16):
        out = io.BytesIO()
        Image.new("RGB", (32, 24), (16 * k, 80, 255 - 16 * k)).save(out, "PNG")
        images.append(out.getvalue())
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    meta_type = pa.struct(
        [
            ("error_caption", pa.string()),
            (
                "statistics_caption",
                pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64())]),
            ),
        ]
    )
    features = {
        "image": {"_type": "Image"},
        "caption": {"dtype": "string", "_type": "Value"},
        "score": {"dtype": "float64", "_type": "Value"},
        "model_name": {"dtype": "string", "_type": "Value"},
    }
    schema = pa.schema(
        [
            ("image", image_type),
            ("caption", pa.string()),
            ("score", pa.float64()),
            ("model_name", pa.string()),
            ("pixtill_metadata", meta_type),
        ],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    (root / "paint").mkdir(parents=True)
    for shard, start in enumerate(range(0, rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, rows - start)
        ids = range(start, start + n)
        table = pa.table(
            {
                "image": pa.array(
                    [{"bytes": images[i % 16], "path": None} for i in ids], image_type
                ),
                "caption": [f"a picture, number {i}" for i in ids],
                "score": [((i * 7919) % 1000) / 1000 for i in ids],
                "model_name": ["tiny-vlm"] * n,
                "pixtill_metadata": pa.array(
                    [
                        {
                            "error_caption": f"step 'caption': row {i}: HTTP 500"
                            if i % 50 == 7
                            else None,
                            "statistics_caption": {"input_tokens": 200, "output_tokens": 12},
                        }
                        for i in ids
                    ],
                    meta_type,
                ),
            },
            schema=schema,
        )
        pq.write_table(
            table, root / "paint" / f"data-{shard:05d}.parquet", row_group_size=GROUP_ROWS
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: Path) -> dict[str, float]:
    """Runs in the subprocess: timings in seconds, RSS in MB."""
    import pyarrow.parquet as pq

    from pixtill.viewer import ViewerData
    from pixtill.viewer.rows import Query
    from pixtill.viewer.server import image_url

    baseline_rss = peak_rss_mb()
    first = sorted((root / "paint").glob("*.parquet"))[0]
    t0 = time.perf_counter()
    with pq.ParquetFile(first) as parquet:
        parquet.read_row_group(0)
    bare = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = ViewerData.open(root)
    page = data.page(0, Query(), 0, 50, image_url(0))
    data.image(0, 0, "image", 0, "thumb")
    opened = time.perf_counter() - t0
    assert len(page.rows) == 50
    open_rss = peak_rss_mb()

    t0 = time.perf_counter()
    data.page(0, Query(sort="score", descending=True), 0, 50, image_url(0))
    sort = time.perf_counter() - t0
    t0 = time.perf_counter()
    failed = data.page(0, Query(failed=True), 0, 50, image_url(0))
    filtered = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = data.page(0, Query(search="NUMBER 4242"), 0, 50, image_url(0))
    search = time.perf_counter() - t0
    t0 = time.perf_counter()
    data.page(0, Query(), data.leaves[0].num_rows - 50, 50, image_url(0))
    last_page = time.perf_counter() - t0
    return {
        "rows": data.leaves[0].num_rows,
        "failed": failed.total,
        "bare_s": bare,
        "open_s": opened,
        "last_page_s": last_page,
        "sort_s": sort,
        "filter_s": filtered,
        "search_s": search,
        "found": found.total,
        "import_rss_mb": baseline_rss,
        "open_rss_mb": open_rss,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    print(
        "rows | open + first page + thumbnail | bare first row group | last page | "
        "sort by score | failed filter | search | RSS after import / open / peak"
    )
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="pixtill-view-bench-") as tmp:
            write_dataset(Path(tmp), rows)
            out = subprocess.run(
                [sys.executable, __file__, "--measure", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['rows']:,} | {r['open_s']:.3f} s ({r['open_s'] / r['bare_s']:.0f}x bare) | "
            f"{r['bare_s'] * 1000:.1f} ms | {r['last_page_s'] * 1000:.0f} ms | "
            f"{r['sort_s']:.2f} s | {r['filter_s']:.2f} s ({r['failed']:,} rows) | "
            f"{r['search_s']:.2f} s ({r['found']:,} rows) | "
            f"{r['import_rss_mb']:.0f} / {r['open_rss_mb']:.0f} / {r['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
