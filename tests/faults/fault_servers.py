"""Small servers that fail the way real ones do, scripted per row by markers in its text.

`FaultyOpenAI` speaks the chat and image APIs (aiohttp): ``[[image400]]`` (a 400 saying the
image URL could not be fetched, quoting it), ``[[status:C]]``, ``[[nochoices]]``,
``[[nullcontent]]``, ``[[badjson]]`` (a JSON body cut short), ``[[html]]`` (a proxy's HTML page
with status 200), ``[[hang]]``; for images ``[[url404]]``, ``[[urlhang]]``, ``[[urlbig]]``
(result URLs that fail), ``[[notimage]]`` and ``[[cutpng]]`` (base64 that is no whole image).
`raw_server` is a bare TCP server for faults below HTTP: connection resets and bodies shorter
than their ``Content-Length``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from PIL import Image

_MARKER = re.compile(r"\[\[([a-z0-9]+)(?::([0-9]+))?\]\]")


def png(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 220)).save(buffer, format="PNG")
    return buffer.getvalue()


def _text_and_image_url(payload: dict[str, Any]) -> tuple[str, str | None]:
    text, image = "", None
    for message in payload.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            text += content
            continue
        for part in content or []:
            if part.get("type") == "text":
                text += part["text"]
            elif part.get("type") == "image_url":
                image = part["image_url"]["url"]
    return text, image


class FaultyOpenAI:
    """An OpenAI-compatible server with scripted faults (see the module docs)."""

    def __init__(self) -> None:
        self.base = ""  # set by the test once serving

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/files/{name}", self._file)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        text, image = _text_and_image_url(payload)
        markers = dict(_MARKER.findall(text))
        if "image400" in markers:
            shown = image if image and image.startswith("http") else "the data URL"
            message = f"Failed to download image from {shown}: 404 Not Found"
            return web.json_response({"error": {"message": message}}, status=400)
        if "status" in markers:
            status = int(markers["status"])
            return web.json_response({"error": {"message": "scripted"}}, status=status)
        if "nochoices" in markers:
            return web.json_response({"id": "x", "choices": []})
        if "nullcontent" in markers:
            choice = {"index": 0, "message": {"role": "assistant", "content": None}}
            return web.json_response({"choices": [{**choice, "finish_reason": "length"}]})
        if "badjson" in markers:
            return web.Response(
                text='{"choices": [{"index": 0, "mess', content_type="application/json"
            )
        if "html" in markers:
            return web.Response(
                text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        if "hang" in markers:
            await asyncio.sleep(30)
        message = {"role": "assistant", "content": f"ok: {text}"}
        return web.json_response({"choices": [{"index": 0, "message": message}]})

    async def _images(self, request: web.Request) -> web.StreamResponse:
        prompt = (await request.json())["prompt"]
        markers = dict(_MARKER.findall(prompt))
        item: dict[str, str]
        if "url404" in markers:
            item = {"url": f"{self.base}/files/missing.png"}
        elif "urlhang" in markers:
            item = {"url": f"{self.base}/files/hang.png"}
        elif "urlbig" in markers:
            item = {"url": f"{self.base}/files/big.png"}
        elif "notimage" in markers:
            item = {"b64_json": base64.b64encode(b"this is not an image at all").decode()}
        elif "cutpng" in markers:
            data = png(64, 64)
            item = {"b64_json": base64.b64encode(data[: len(data) * 6 // 10]).decode()}
        else:
            item = {"b64_json": base64.b64encode(png()).decode()}
        return web.json_response({"created": 0, "data": [item]})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "hang.png":
            await asyncio.sleep(30)
        if name == "big.png":
            return web.Response(body=b"\0" * 300_000, content_type="image/png")
        raise web.HTTPNotFound()


@contextmanager
def raw_server(mode: str) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads one request per connection and then ``mode``:
    "reset" closes at once (RST), "short" sends a 200 whose body stops at half its
    Content-Length. Yields the base URL; stopped at the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    if mode == "reset":
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    else:
                        body = json.dumps({"choices": []}).encode() * 4
                        head = (
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n"
                        )
                        conn.sendall(head.encode() + body[: len(body) // 2])
                except OSError:
                    pass

    thread = threading.Thread(target=serve, name="test-raw-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
