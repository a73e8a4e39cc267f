"""Loopback smoke tests of the default transport (aiohttp) on 127.0.0.1: what it sends, the
size cap while streaming, refused connections, and its per-loop sessions. No timing is
asserted; the engine's logic is tested on a mock transport (``test_transport.py``)."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from pixtill.models._aiohttp import AiohttpTransport
from pixtill.models.http import ErrorKind, HttpRequest, TransportError
from pixtill.models.transport import EngineConfig, RequestEngine, RequestError


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "echo": await request.json(),
            "content_type": request.headers.get("Content-Type"),
            "auth": request.headers.get("Authorization"),
        }
    )


async def _bytes(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("n", "1000"))
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    if not request.query.get("chunked"):
        return web.Response(body=data, content_type="application/octet-stream")
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(0, size, 4096):
        await resp.write(data[i : i + 4096])
    await resp.write_eof()
    return resp


@pytest.fixture
def base_url() -> Iterator[str]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_get("/bytes", _bytes)
    with serve(app) as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_round_trip_size_cap_and_refused_connection(base_url: str) -> None:
    engine = RequestEngine(
        EngineConfig(max_response_bytes=50_000), headers={"Authorization": "Bearer k"}
    )

    async def main() -> None:
        result = await engine.post_json(f"{base_url}/echo", {"id": 1, "x": "é"})
        assert result == {
            "echo": {"id": 1, "x": "é"},
            "content_type": "application/json",
            "auth": "Bearer k",
        }
        small = await engine.get_bytes(f"{base_url}/bytes?n=1000")
        assert small == bytes(range(256)) * 3 + bytes(232)
        assert len(await engine.get_bytes(f"{base_url}/bytes?n=40000&chunked=1")) == 40000
        for query, cap in (
            ("n=60000", None),
            ("n=60000&chunked=1", None),
            ("n=5000&chunked=1", 1000),
        ):
            with pytest.raises(RequestError) as info:
                await engine.get_bytes(f"{base_url}/bytes?{query}", max_bytes=cap)
            assert (info.value.retryable, info.value.attempts) == (False, 1)
            assert "response too large" in str(info.value)
        transport = AiohttpTransport()
        try:
            url = f"http://127.0.0.1:{free_port()}/v1"
            with pytest.raises(TransportError) as refused:
                await transport.send(HttpRequest("POST", url, {}, b"{}", timeout=10))
            assert (refused.value.kind, refused.value.fatal) == (ErrorKind.CONNECTION, True)
            assert "refused" in refused.value.reason
        finally:
            await transport.aclose()
        await engine.close()

    asyncio.run(main())
    assert engine.stats.done == 3


def test_sessions_follow_successive_event_loops(base_url: str) -> None:
    engine = RequestEngine(EngineConfig())
    assert asyncio.run(engine.post_json(f"{base_url}/echo", {"id": 1}))["echo"] == {"id": 1}
    assert asyncio.run(engine.post_json(f"{base_url}/echo", {"id": 2}))["echo"] == {"id": 2}
    # Each loop's session was closed by that loop's shutdown, not leaked.
    sessions = [state.session for state in engine.transport._sessions.values()]  # type: ignore[attr-defined]
    assert sessions
    assert all(session.closed for session in sessions)
    gc.collect()  # an unclosed session would warn here (warnings are errors)

    async def third() -> Any:
        async with engine:
            return await engine.post_json(f"{base_url}/echo", {"id": 3})

    assert asyncio.run(third())["echo"] == {"id": 3}
    assert not engine.transport._sessions  # type: ignore[attr-defined]
    assert engine.stats.done == 3
