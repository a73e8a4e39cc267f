"""Throughput of pixtill's request path against a bare aiohttp loop (a script, not a test).

    .venv/bin/python benchmarks/request_engine.py                  # 0 and 200 ms, C=100 and 500
    .venv/bin/python benchmarks/request_engine.py --rows 500 --latency-ms 50 --concurrency 64

A local OpenAI-compatible server runs in its own process (so its CPU does not share the
client's GIL) and answers every chat completion after ``latency`` ms. Each configuration drives
``--rows`` rows holding ~40 KB random-noise PNGs (a pool of 50, as base64) through

* pixtill: ``TextGenerationWithImage`` + ``OpenAILLM(max_concurrent_requests=C)``, one
  ``task.process`` call on the whole list (validation, encoding, requests, metadata included);
* bare: ``asyncio.Semaphore(C)`` + ``session.post`` of the same payload shape with a pre-built
  data URL.

Every (configuration, client) pair runs in a fresh subprocess, so the peak RSS reported is that
client's alone; the order of the two clients alternates between repeats, and after a warm-up of
C requests (connections opened) the faster repeat is kept. The Little's-law limit is C / latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MODEL = "bench-vlm"
API_KEY = "sk-bench-not-a-secret"
POOL = 50
_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A field of coloured noise."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126},
    }
).encode()


# --------------------------------------------------------------------- server process


def serve_forever() -> None:
    """The fake server: ``POST /lat/<ms>/v1/chat/completions``; prints its port, runs until
    stdin closes."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.read()
        if not body.startswith(b"{"):
            return web.json_response({"error": "expected JSON"}, status=400)
        latency = int(request.match_info["ms"]) / 1000
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=_ANSWER, content_type="application/json")

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/lat/{ms}/v1/chat/completions", chat)
    asyncio.run(serve_until_stdin_closes(app))


async def serve_until_stdin_closes(app: Any) -> None:
    """Serve the aiohttp ``app`` on 127.0.0.1 at a free port, print the port (the parent's
    `local_server` reads it), and stop when stdin closes (the parent's signal to stop)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# --------------------------------------------------------------------- client processes


def make_pool(target_bytes: int) -> list[str]:
    """``POOL`` distinct random-noise PNGs of about ``target_bytes`` each, as base64."""
    from PIL import Image

    side = max(8, int((target_bytes / 3) ** 0.5))
    rng = random.Random(1234)
    pool = []
    for _ in range(POOL):
        noise = rng.randbytes(side * side * 3)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), noise).save(buffer, format="PNG")
        pool.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return pool


def rows_for(n: int, pool: list[str], form: str = "base64") -> list[dict[str, Any]]:
    """Rows holding the images as base64 strings (as in the seed's example) or, with
    ``form="bytes"``, as Hugging Face image dicts ``{"bytes": ..., "path": None}``."""
    images: list[Any] = list(pool)
    if form == "bytes":
        images = [{"bytes": base64.b64decode(b64), "path": None} for b64 in pool]
    return [{"instruction": f"Describe image {i}.", "image": images[i % POOL]} for i in range(n)]


def run_pixtill(
    base_url: str, rows: list[dict[str, Any]], concurrency: int, checks: bool = True
) -> float:
    from pixtill.models.llms import OpenAILLM
    from pixtill.pipeline import Pipeline
    from pixtill.steps.tasks import TextGenerationWithImage

    llm = OpenAILLM(
        model=MODEL,
        base_url=base_url,
        api_key=API_KEY,
        max_concurrent_requests=concurrency,
        timeout=120,
    )
    # Without checks: no decode-check of each image and no raw input (image hashes) in metadata.
    # Declared in a pipeline that never runs (so no "hasn't received a pipeline" warning): the
    # benchmark drives the task directly, to time the request engine without the executor.
    with Pipeline(name="bench-request-engine"):
        task = TextGenerationWithImage(
            name="bench", llm=llm, validate_images=checks, add_raw_input=checks
        )
    task.load()
    try:
        warm = next(task.process(rows[:concurrency]))  # opens the connections
        assert all(r["generation"] for r in warm)
        started = time.perf_counter()
        out = next(task.process(rows))
        elapsed = time.perf_counter() - started
    finally:
        task.unload()
    failed = [r for r in out if r["generation"] is None]
    if failed or len(out) != len(rows):
        raise SystemExit(f"pixtill: {len(failed)} failed rows, e.g. {failed[:1]}")
    return elapsed


def _data_url(image: Any) -> str:
    b64 = image if isinstance(image, str) else base64.b64encode(image["bytes"]).decode("ascii")
    return f"data:image/png;base64,{b64}"


def chat_payload(instruction: str, image_url: str) -> dict[str, Any]:
    """The bare clients' chat-completions request: one user turn, text then image."""
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": instruction},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
    }


def run_bare(base_url: str, rows: list[dict[str, Any]], concurrency: int) -> float:
    import aiohttp

    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    data_urls = {
        id(image): _data_url(image) for image in {id(r["image"]): r["image"] for r in rows}.values()
    }

    async def main() -> float:
        semaphore = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(row: dict[str, Any]) -> str:
                payload = chat_payload(row["instruction"], data_urls[id(row["image"])])
                async with (
                    semaphore,
                    session.post(url, json=payload, headers=headers) as resp,
                ):
                    resp.raise_for_status()
                    body = await resp.json()
                    return str(body["choices"][0]["message"]["content"])

            await asyncio.gather(*(one(r) for r in rows[:concurrency]))  # warm-up
            started = time.perf_counter()
            answers = await asyncio.gather(*(one(r) for r in rows))
            elapsed = time.perf_counter() - started
            assert len(answers) == len(rows)
            return elapsed

    return asyncio.run(main())


def client_main(args: argparse.Namespace) -> None:
    base_url = f"http://127.0.0.1:{args.port}/lat/{args.latency_ms[0]}/v1"
    pool = make_pool(args.image_kb * 1000)
    rows = rows_for(args.rows, pool, args.image_form)
    concurrency = args.concurrency[0]
    if args.client == "pixtill":
        elapsed = run_pixtill(base_url, rows, concurrency, checks=not args.no_checks)
    else:
        elapsed = run_bare(base_url, rows, concurrency)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"elapsed": elapsed, "peak_rss_mb": peak_mb}))


# --------------------------------------------------------------------- driver


def run_client(
    client: str, port: int, latency: int, concurrency: int, args: argparse.Namespace
) -> dict[str, float]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--client",
        client,
        "--port",
        str(port),
        "--latency-ms",
        str(latency),
        "--concurrency",
        str(concurrency),
        "--rows",
        str(args.rows),
        "--image-kb",
        str(args.image_kb),
        "--image-form",
        args.image_form,
        *(["--no-checks"] if args.no_checks else []),
    ]
    return run_client_process(client, command)


def run_client_process(client: str, command: list[str]) -> dict[str, float]:
    """Run one client in a fresh process (so its peak RSS is its own); its last line is JSON."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{client} client failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextmanager
def local_server(script: str = __file__) -> Iterator[int]:
    """The benchmark server of ``script`` (run as ``script --serve``, which prints its port) in
    its own process on 127.0.0.1; yields its port, stops it after by closing its stdin."""
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(script), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 200])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--image-kb", type=int, default=40, help="size of each noise PNG")
    parser.add_argument(
        "--image-form",
        choices=["base64", "bytes"],
        default="base64",
        help="how rows hold the images: base64 strings or {'bytes': ...} dicts",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per client (order alternates)")
    parser.add_argument(
        "--no-checks",
        action="store_true",
        help="pixtill with validate_images=False and add_raw_input=False",
    )
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

    with local_server() as port:
        header = (
            f"{'latency':>8} {'C':>5} {'pixtill r/s':>12} {'bare r/s':>10} {'ratio':>6} "
            f"{'limit r/s':>10} {'pix/limit':>9} {'pix RSS MB':>10} {'bare RSS MB':>11}"
        )
        print(
            f"{args.rows} rows, ~{args.image_kb} KB PNG per row as {args.image_form}, "
            f"best of {args.repeats}{', no image checks' if args.no_checks else ''}"
        )
        print(header)
        print("-" * len(header))
        for latency in args.latency_ms:
            for concurrency in args.concurrency:
                best: dict[str, float] = {"pixtill": float("inf"), "bare": float("inf")}
                rss: dict[str, float] = {"pixtill": 0.0, "bare": 0.0}
                for repeat in range(args.repeats):
                    order = ["pixtill", "bare"] if repeat % 2 == 0 else ["bare", "pixtill"]
                    for client in order:
                        result = run_client(client, port, latency, concurrency, args)
                        best[client] = min(best[client], result["elapsed"])
                        rss[client] = max(rss[client], result["peak_rss_mb"])
                pix = args.rows / best["pixtill"]
                bare = args.rows / best["bare"]
                if latency:
                    limit = concurrency / (latency / 1000)
                    limit_text, share = f"{limit:10.0f}", f"{pix / limit:9.2f}"
                else:
                    limit_text, share = f"{'n/a':>10}", f"{'n/a':>9}"
                print(
                    f"{latency:>6}ms {concurrency:>5} {pix:>12.0f} {bare:>10.0f} "
                    f"{pix / bare:>6.2f} {limit_text} {share} {rss['pixtill']:>10.0f} "
                    f"{rss['bare']:>11.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
