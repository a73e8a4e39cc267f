"""Head-of-line blocking: a pipeline against a server that answers 5 % of requests with a 500
(a script, not a test).

    .venv/bin/python benchmarks/head_of_line.py                  # 2,000 rows, 200 ms, C = 500
    .venv/bin/python benchmarks/head_of_line.py --rows 5000 --error-pct 5 --repeats 3

The setup of `pipeline.py` (~40 KB noise PNGs, ``TextGenerationWithImage`` + ``OpenAILLM``, cache
on, dataset written), against a local server in its own process that answers each request after
``--latency-ms`` with a 500 at ``--error-pct`` percent, at random. The bare reference is an aiohttp
loop at the same concurrency with the same retry policy as pixtill's transport (up to 6 retries,
full-jitter exponential backoff from 0.5 s). A failed request is retried, so rows wait out
backoffs: with a reorder buffer that only frees slots in input order, one waiting row stalls the
window (requests in flight drop far below it). Printed: rows/s of both, their ratio (median of
the pairs'), and the mean number of requests in flight at the server during each client's run
(sampled every 50 ms). Target: >= 0.9x the bare loop, requests in flight near the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import request_engine as engine_bench

import pipeline as pipeline_bench

RETRIES = 6
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0


def serve_forever() -> None:
    """``POST /err/<pct>/lat/<ms>/v1/chat/completions``; ``GET /inflight`` returns and resets
    the in-flight samples. Prints its port, runs until stdin closes."""
    from aiohttp import web

    state = {"inflight": 0}
    samples: list[int] = []

    async def chat(request: web.Request) -> web.Response:
        state["inflight"] += 1
        try:
            await request.read()
            await asyncio.sleep(int(request.match_info["ms"]) / 1000)
            if random.random() * 100 < float(request.match_info["pct"]):
                return web.json_response({"error": "injected"}, status=500)
            return web.Response(body=engine_bench._ANSWER, content_type="application/json")
        finally:
            state["inflight"] -= 1

    async def inflight(request: web.Request) -> web.Response:
        busy = [s for s in samples if s > 0]
        samples.clear()
        return web.json_response({"mean": statistics.mean(busy) if busy else 0.0})

    async def sampler() -> None:
        while True:
            samples.append(state["inflight"])
            await asyncio.sleep(0.05)

    async def main() -> None:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/err/{pct}/lat/{ms}/v1/chat/completions", chat)
        app.router.add_get("/inflight", inflight)
        task = asyncio.create_task(sampler())
        await engine_bench.serve_until_stdin_closes(app)
        task.cancel()

    asyncio.run(main())


def run_bare_with_retries(base_url: str, rows: list[dict[str, Any]], concurrency: int) -> float:
    import aiohttp

    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {engine_bench.API_KEY}"}

    async def main() -> float:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(row: dict[str, Any]) -> str:
                payload = engine_bench.chat_payload(
                    row["instruction"], engine_bench._data_url(row["image"])
                )
                for attempt in range(RETRIES + 1):
                    async with semaphore, session.post(url, json=payload, headers=headers) as r:
                        if r.status < 500:
                            r.raise_for_status()
                            body = await r.json()
                            return str(body["choices"][0]["message"]["content"])
                    if attempt < RETRIES:  # the backoff does not hold a slot
                        cap = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)
                        await asyncio.sleep(random.uniform(0.0, cap))
                raise RuntimeError("gave up")

            started = time.perf_counter()
            answers = await asyncio.gather(*(one(r) for r in rows))
            assert len(answers) == len(rows)
            return time.perf_counter() - started

    return asyncio.run(main())


def client_main(args: argparse.Namespace) -> None:
    base_url = f"http://127.0.0.1:{args.port}/err/{args.error_pct}/lat/{args.latency_ms}/v1"
    if args.client == "bare":
        pool = engine_bench.make_pool(40_000)
        rows = engine_bench.rows_for(args.rows, pool)
        result = {"elapsed": run_bare_with_retries(base_url, rows, args.concurrency)}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = pipeline_bench.run_pipeline(base_url, args.rows, args.concurrency, Path(tmp))
    print(json.dumps(result))


def _inflight(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/inflight", timeout=10) as response:
        return float(json.loads(response.read())["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--error-pct", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--client", choices=["pixtill", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever()
        return
    if args.client:
        client_main(args)
        return
    print(
        f"{args.rows} rows, latency {args.latency_ms} ms, concurrency {args.concurrency}, "
        f"{args.error_pct:g} % of requests answered 500 (retried: {RETRIES} retries, "
        f"full-jitter backoff from {BACKOFF_BASE} s)"
    )
    with engine_bench.local_server(__file__) as port:
        pairs = []
        for repeat in range(args.repeats):
            order = ("pixtill", "bare") if repeat % 2 == 0 else ("bare", "pixtill")
            result = {}
            for client in order:
                command = [
                    sys.executable,
                    os.path.abspath(__file__),
                    *("--client", client, "--port", str(port), "--rows", str(args.rows)),
                    *("--latency-ms", str(args.latency_ms), "--concurrency", str(args.concurrency)),
                    *("--error-pct", str(args.error_pct)),
                ]
                _inflight(port)  # reset the samples
                result[client] = engine_bench.run_client_process(client, command)
                result[client]["inflight"] = _inflight(port)
            pairs.append(result)
            pix, bare = result["pixtill"], result["bare"]
            pix_rate, bare_rate = args.rows / pix["elapsed"], args.rows / bare["elapsed"]
            print(
                f"  pixtill {pix_rate:7.0f} rows/s (in flight ~{pix['inflight']:.0f})"
                f"   bare {bare_rate:7.0f} rows/s (in flight ~{bare['inflight']:.0f})"
                f"   ratio {pix_rate / bare_rate:.2f}",
                flush=True,
            )
        ratios = [p["bare"]["elapsed"] / p["pixtill"]["elapsed"] for p in pairs]
        print(f"median ratio pixtill / bare: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
