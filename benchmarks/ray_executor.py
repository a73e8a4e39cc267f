"""The same pipeline on the local executor and on Ray with 1 and 2 workers (a script, not a test).

    .venv/bin/python benchmarks/ray_executor.py                   # 2,000 rows, 200 ms, C = 500
    .venv/bin/python benchmarks/ray_executor.py --rows 4000 --workers 1 2 4

The request-engine benchmark's setup (a local OpenAI-compatible server in its own process,
``--latency-ms`` per request, ~40 KB noise PNGs as base64), through ``TextGenerationWithImage`` +
``OpenAILLM`` with ``max_concurrent_requests = --concurrency`` per worker, cache on, dataset
written. Ray is started locally (``num_cpus`` = the largest worker count) once, before timing.
Printed per executor: rows/s, wall time, the time Ray adds per row against the local run
(``(wall - local wall) / rows``, negative when Ray is faster), and the peak RSS of each worker
process (the driver's for the local run). A 2-core machine shows Ray's overhead, not its
speed-up: with N machines, each worker brings its own window of requests, its own event loop
and its own writer, so throughput grows with N until the provider's rate limit; the driver only
splits, waits and reconciles schemas.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import request_engine as engine_bench

import pipeline as pipeline_bench


def build(base_url: str, rows: int, concurrency: int, workdir: Path) -> Any:
    from pixtill.steps import LoadDataFromDicts

    pool = engine_bench.make_pool(40_000)  # rows share these strings: the graph pickles small
    data = [
        {"instruction": f"Describe image {i}.", "image": pool[i % len(pool)]} for i in range(rows)
    ]
    return pipeline_bench.caption_pipeline(
        "ray-bench",
        lambda: LoadDataFromDicts(data=data, batch_size=100),
        base_url,
        concurrency,
        workdir,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=500, help="per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import ray

    from pixtill.pipeline.executors.ray_executor import RayExecutor

    print(
        f"{args.rows} rows, latency {args.latency_ms} ms, concurrency {args.concurrency} per "
        "worker, ~40 KB PNG per row; this machine is shared (figures move 10-20 % between runs)"
    )
    header = f"{'executor':>10} {'rows/s':>8} {'wall s':>7} {'Ray +ms/row':>12}  peak RSS MB"
    print(header)
    print("-" * len(header))
    with engine_bench.local_server() as port:
        base_url = f"http://127.0.0.1:{port}/lat/{args.latency_ms}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            pipeline = build(base_url, args.rows, args.concurrency, work / "local")
            started = time.perf_counter()
            pipeline.run(output_dir=work / "local" / "out", show_progress=False)
            local_wall = time.perf_counter() - started
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            rate = args.rows / local_wall
            print(f"{'local':>10} {rate:>8.0f} {local_wall:>7.2f} {'':>12}  {rss:.0f}")
            ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
            try:
                for workers in args.workers:
                    folder = work / f"ray-{workers}"
                    pipeline = build(base_url, args.rows, args.concurrency, folder)
                    executor = RayExecutor(num_workers=workers)
                    started = time.perf_counter()
                    pipeline.run(output_dir=folder / "out", executor=executor, show_progress=False)
                    wall = time.perf_counter() - started
                    extra = (wall - local_wall) / args.rows * 1000
                    rss_text = ", ".join(f"{r:.0f}" for r in executor.last_peak_rss_mb)
                    print(
                        f"{f'ray x{workers}':>10} {args.rows / wall:>8.0f} {wall:>7.2f} "
                        f"{extra:>12.2f}  {rss_text}",
                        flush=True,
                    )
            finally:
                ray.shutdown()


if __name__ == "__main__":
    main()
