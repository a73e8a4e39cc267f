"""Run an ``aiohttp.web`` app on 127.0.0.1 in a background thread, for tests.

    with serve(app) as base_url:          # e.g. "http://127.0.0.1:43817"
        ...                               # talk to it from any thread / event loop

The server has its own thread and event loop, so tests may drive clients with ``asyncio.run``
(or several successive ones) while it runs.  Handlers are cancelled when their client
disconnects, and shutdown waits at most ``shutdown_timeout`` seconds for handlers still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

__all__ = ["serve"]


@contextmanager
def serve(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    shutdown_timeout: float = 0.5,
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host``; yield the base URL (no trailing slash)."""
    started: concurrent.futures.Future[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = (
        concurrent.futures.Future()
    )

    async def main() -> None:
        stop = asyncio.Event()
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=shutdown_timeout,
            handler_cancellation=True,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, 0)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException as exc:
            await runner.cleanup()
            started.set_exception(exc)
            return
        started.set_result((f"http://{host}:{port}", asyncio.get_running_loop(), stop))
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="test-http-server")
    thread.start()
    try:
        url, loop, stop = started.result(timeout=startup_timeout)
    except BaseException:
        thread.join(timeout=startup_timeout)
        raise
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=shutdown_timeout + 10.0)
        if thread.is_alive():  # pragma: no cover - would mean a wedged server loop
            raise RuntimeError("test HTTP server did not stop")
