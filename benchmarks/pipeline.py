"""A whole `Pipeline` run against a bare aiohttp loop (a script, not a test).

    .venv/bin/python benchmarks/pipeline.py                       # 2,000 and 20,000 rows
    .venv/bin/python benchmarks/pipeline.py --rows 500 --latency-ms 0 --concurrency 64

The setup of `request_engine.py` (a local OpenAI-compatible server in its own process, ~40 KB
noise PNGs held as base64), but driven through ``Pipeline``: a lazy loader ->
``TextGenerationWithImage`` + ``OpenAILLM``, with the cache on and the dataset written (Arrow
shards with real image columns, memory-mapped by the returned `Distiset`). Each run is a fresh
subprocess, so its peak RSS is its own. Printed per row count: pixtill rows/s, bare-loop rows/s
at the same concurrency, their ratio, the Little's-law limit, peak RSS, the cache size on disk
relative to the image bytes the rows held, and the dataset plus the cache on disk relative to
them ("disk/images"). Targets: >= 0.8x the bare loop; RSS at 20,000 rows no more than 1.2x that
at 2,000; dataset plus cache <= 1.1x the image bytes. Runs as the CLI does
(``tune_process=True``).

Each row count is measured ``--repeats`` times (default 3) as a pixtill run next to a bare run,
the order alternating; the ratio printed is the median of the pairs' ratios (every pair's
ratio is shown too), since on a shared 2-core machine both clients' rates move by 10-20%
from one run to the next.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import request_engine as engine_bench


def lazy_rows(n: int, pool: list[str]) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"instruction": f"Describe image {i}.", "image": pool[i % len(pool)]}


def caption_pipeline(
    name: str, make_loader: Callable[[], Any], base_url: str, concurrency: int, workdir: Path
) -> Any:
    """The benchmarked graph: ``make_loader()``'s rows >> a ``TextGenerationWithImage`` step
    named ``caption`` (``OpenAILLM`` against ``base_url`` at ``concurrency``), cache in
    ``workdir/cache``."""
    from pixtill.models.llms import OpenAILLM
    from pixtill.pipeline import Pipeline
    from pixtill.steps.tasks import TextGenerationWithImage

    with Pipeline(name=name, cache_dir=workdir / "cache") as pipeline:
        load = make_loader()
        caption = TextGenerationWithImage(
            name="caption",
            llm=OpenAILLM(
                model=engine_bench.MODEL,
                base_url=base_url,
                api_key=engine_bench.API_KEY,
                max_concurrent_requests=concurrency,
            ),
        )
        load >> caption
    return pipeline


def run_pipeline(base_url: str, rows: int, concurrency: int, workdir: Path) -> dict[str, float]:
    import pixtill.distiset  # noqa: F401  (imported before timing: a one-time cost)
    from pixtill.steps import LoadDataFromIterable

    pool = engine_bench.make_pool(40_000)
    pipeline = caption_pipeline(
        "bench",
        lambda: LoadDataFromIterable(data=lazy_rows(rows, pool), batch_size=100),
        base_url,
        concurrency,
        workdir,
    )
    started = time.perf_counter()
    distiset = pipeline.run(
        output_dir=workdir / "out",
        rows_per_shard=1000,
        show_progress=False,
        tune_process=True,  # as the CLI does
    )
    elapsed = time.perf_counter() - started
    dataset = distiset["caption"]
    if len(dataset) != rows or dataset["generation"][:1] == [None]:
        raise SystemExit(f"pixtill: {len(dataset)} rows written, expected {rows}")
    image_bytes = sum(len(base64.b64decode(pool[i % len(pool)])) for i in range(rows))
    cache = workdir / "cache"
    cache_bytes = sum(p.stat().st_size for p in cache.glob("cache.sqlite*"))
    dataset_bytes = sum(p.stat().st_size for p in (workdir / "out").rglob("*") if p.is_file())
    return {
        "elapsed": elapsed,
        "cache_ratio": cache_bytes / image_bytes,
        "stored_ratio": (cache_bytes + dataset_bytes) / image_bytes,
    }


def client_main(args: argparse.Namespace) -> None:
    base_url = f"http://127.0.0.1:{args.port}/lat/{args.latency_ms}/v1"
    if args.client == "bare":
        pool = engine_bench.make_pool(40_000)
        rows = engine_bench.rows_for(args.rows, pool)
        result = {"elapsed": engine_bench.run_bare(base_url, rows, args.concurrency)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_pipeline(base_url, args.rows, args.concurrency, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_client(client: str, port: int, rows: int, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--client",
        client,
        "--port",
        str(port),
        "--rows",
        str(rows),
        "--latency-ms",
        str(args.latency_ms),
        "--concurrency",
        str(args.concurrency),
    ]
    return engine_bench.run_client_process(client, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="pixtill/bare pairs per row count")
    parser.add_argument("--client", choices=["pixtill", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        args.rows = args.rows[0]
        client_main(args)
        return
    with engine_bench.local_server() as port:
        limit = args.concurrency / (args.latency_ms / 1000) if args.latency_ms else None
        print(
            f"latency {args.latency_ms} ms, concurrency {args.concurrency}, ~40 KB PNG per row; "
            f"Little's-law limit: {f'{limit:.0f} rows/s' if limit else 'n/a'}"
        )
        header = (
            f"{'rows':>7} {'pixtill r/s':>12} {'bare r/s':>9} {'ratio':>6} "
            f"{'pix/limit':>9} {'pix RSS MB':>10} {'bare RSS MB':>11} {'cache/images':>12} "
            f"{'disk/images':>11}"
            "   (rates: medians; ratio: median of the pairs'; RSS: the largest)"
        )
        print(header)
        print("-" * len(header))
        rss_by_rows = {}
        for rows in args.rows:
            pairs = []
            for repeat in range(args.repeats):
                order = ("pixtill", "bare") if repeat % 2 == 0 else ("bare", "pixtill")
                results = {client: run_client(client, port, rows, args) for client in order}
                pairs.append((results["pixtill"], results["bare"]))
            pix_rates = [rows / pix["elapsed"] for pix, _ in pairs]
            bare_rates = [rows / bare["elapsed"] for _, bare in pairs]
            ratios = [p / b for p, b in zip(pix_rates, bare_rates)]
            pix_rate, bare_rate = statistics.median(pix_rates), statistics.median(bare_rates)
            pix = max((p for p, _ in pairs), key=lambda r: r["peak_rss_mb"])
            bare = max((b for _, b in pairs), key=lambda r: r["peak_rss_mb"])
            share = f"{pix_rate / limit:9.2f}" if limit else f"{'n/a':>9}"
            rss_by_rows[rows] = pix["peak_rss_mb"]
            print(
                f"{rows:>7} {pix_rate:>12.0f} {bare_rate:>9.0f} {statistics.median(ratios):>6.2f} "
                f"{share} {pix['peak_rss_mb']:>10.0f} {bare['peak_rss_mb']:>11.0f} "
                f"{pix['cache_ratio']:>12.4f} {pix['stored_ratio']:>11.3f}   "
                f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})",
                flush=True,
            )
        if len(rss_by_rows) > 1:
            smallest, largest = min(rss_by_rows), max(rss_by_rows)
            print(
                f"peak RSS {largest} rows / {smallest} rows: "
                f"{rss_by_rows[largest] / rss_by_rows[smallest]:.2f}x"
            )


if __name__ == "__main__":
    main()
