"""The local viewer server: aiohttp's web server on 127.0.0.1, in a background thread.

Routes: ``/`` (the page), ``/static/*`` (its script and style, shipped in the package),
``/api/leaves``, ``/api/rows?leaf=&offset=&limit=&q=&failed=&sort=&desc=`` (JSON) and
``/image?leaf=&row=&column=&k=&size=thumb|full``. Reading the dataset and making thumbnails
run in worker threads, so a slow page never blocks the others. Every response forbids inline
scripts and anything from another origin (Content-Security-Policy), a second wall behind the
page's never treating data as HTML.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pixtill.viewer.data import DEFAULT_PAGE_ROWS, ViewerData
from pixtill.viewer.rows import Query
from pixtill.viewer.thumbs import ImageUnavailable

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_DATA_KEY: web.AppKey[ViewerData] = web.AppKey("viewer_data", ViewerData)


def static_text(name: str) -> str:
    """A file of the page (``index.html``, ``app.js``, ``style.css``) from the package."""
    return resources.files("pixtill.viewer").joinpath("static", name).read_text(encoding="utf-8")


def image_url(leaf: int) -> Any:
    def url(row: int, column: str, position: int, size: str) -> str:
        query = urlencode({"leaf": leaf, "row": row, "column": column, "k": position, "size": size})
        return f"image?{query}"

    return url


_HOSTS_KEY: web.AppKey[frozenset[str]] = web.AppKey("viewer_hosts", frozenset)


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    hosts = request.app.get(_HOSTS_KEY)
    if hosts and request.host not in hosts:
        # A page elsewhere that rebinds its own name to 127.0.0.1 must not read the dataset.
        raise web.HTTPMisdirectedRequest(text="unexpected Host header")
    response: web.StreamResponse = await handler(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _int(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise web.HTTPBadRequest(
                text=f'{{"error": "missing {name}"}}', content_type="application/json"
            )
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "{name} must be an integer"}}', content_type="application/json"
        ) from None


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=static_text("index.html"), content_type="text/html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    return web.Response(text=static_text(name), content_type=_STATIC[name])


async def _leaves(request: web.Request) -> web.Response:
    data = request.app[_DATA_KEY]
    return web.json_response({"title": data.title, "leaves": data.leaves_json()})


async def _rows(request: web.Request) -> web.Response:
    data = request.app[_DATA_KEY]
    leaf = _int(request, "leaf", 0)
    if not 0 <= leaf < len(data.leaves):
        return web.json_response({"error": f"no leaf number {leaf}"}, status=404)
    query = Query(
        failed=request.query.get("failed") == "1",
        search=request.query.get("q", ""),
        sort=request.query.get("sort") or None,
        descending=request.query.get("desc") == "1",
    )
    offset = _int(request, "offset", 0)
    limit = _int(request, "limit", DEFAULT_PAGE_ROWS)
    loop = asyncio.get_running_loop()
    try:
        page = await loop.run_in_executor(
            None, data.page, leaf, query, offset, limit, image_url(leaf)
        )
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(page.as_json())


async def _image(request: web.Request) -> web.Response:
    data = request.app[_DATA_KEY]
    leaf, row, position = _int(request, "leaf"), _int(request, "row"), _int(request, "k", 0)
    column = request.query.get("column", "")
    size = "full" if request.query.get("size") == "full" else "thumb"
    if not 0 <= leaf < len(data.leaves):
        raise web.HTTPNotFound(text="no such leaf")
    loop = asyncio.get_running_loop()
    try:
        body, mime = await loop.run_in_executor(None, data.image, leaf, row, column, position, size)
    except (IndexError, KeyError) as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except ImageUnavailable as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    return web.Response(
        body=body, content_type=mime, headers={"Cache-Control": "private, max-age=3600"}
    )


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


def make_app(data: ViewerData, hosts: frozenset[str] = frozenset()) -> web.Application:
    """The aiohttp application serving ``data``; when ``hosts`` is given, requests whose
    ``Host`` header is not one of them are refused (421)."""
    app = web.Application(middlewares=[_security_headers])
    app[_DATA_KEY] = data
    app[_HOSTS_KEY] = hosts
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/leaves", _leaves)
    app.router.add_get("/api/rows", _rows)
    app.router.add_get("/image", _image)
    app.router.add_get("/favicon.ico", _no_content)
    return app


class ViewerServer:
    """Serves a `ViewerData` on ``host:port`` (port 0: any free port) from a background thread.

    ``start()`` returns once the socket listens (``url`` is then set); ``stop()`` closes it.
    Usable as a context manager. Raises OSError when the port is taken.
    """

    def __init__(self, data: ViewerData, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data = data
        self.host = host
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}/"
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            hosts = frozenset(
                f"{name}:{self.port}" for name in (self.host, "localhost", "127.0.0.1")
            )
            self._runner = web.AppRunner(make_app(self.data, hosts), access_log=None)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                sock.close()
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="pixtill-viewer", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.url

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> ViewerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["CSP", "ViewerServer", "image_url", "make_app", "static_text"]
