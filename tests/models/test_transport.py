"""RequestEngine against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import pickle
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from http_servers import serve
from pixtill.errors import ModelUnavailableError
from pixtill.models._ratelimit import AdaptiveLimit, SlotPool, TokenBucket, parse_retry_after
from pixtill.models.transport import (
    EngineConfig,
    EngineStats,
    RequestEngine,
    RequestError,
)

SECRET = "sk-test-SECRET-0123456789"


def fast_config(**overrides: Any) -> EngineConfig:
    """Small backoffs so retries cost milliseconds."""
    values: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 10.0}
    values.update(overrides)
    return EngineConfig(**values)


@dataclass
class Backend:
    """A fake model server whose behaviour is chosen by path and query string."""

    current: int = 0
    max_current: int = 0
    total: int = 0
    attempts: Counter[Any] = field(default_factory=Counter)
    times: defaultdict[Any, list[float]] = field(default_factory=lambda: defaultdict(list))
    auth: list[str | None] = field(default_factory=list)
    global_429: int = 0  # answer 429 to this many requests of /global, whoever sends them

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/echo", self.echo)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/flaky", self.flaky)
        app.router.add_post("/global", self.global_limited)
        app.router.add_post("/status", self.status)
        app.router.add_post("/badjson", self.badjson)
        app.router.add_post("/pyjson", self.pyjson)
        app.router.add_get("/bytes", self.bytes_)
        return app

    async def _enter(self, request: web.Request) -> Any:
        self.total += 1
        self.auth.append(request.headers.get("Authorization"))
        payload = await request.json() if request.can_read_body else None
        key = payload.get("id") if isinstance(payload, dict) else None
        self.attempts[key] += 1
        self.times[key].append(time.monotonic())
        return payload

    async def echo(self, request: web.Request) -> web.Response:
        payload = await self._enter(request)
        return web.json_response(
            {"echo": payload, "content_type": request.headers.get("Content-Type")}
        )

    async def slow(self, request: web.Request) -> web.Response:
        payload = await self._enter(request)
        self.current += 1
        self.max_current = max(self.max_current, self.current)
        try:
            await asyncio.sleep(float(payload.get("sleep", 0.02)))
        finally:
            self.current -= 1
        return web.json_response({"id": payload["id"]})

    async def flaky(self, request: web.Request) -> web.Response:
        """Fail the first ``fail`` attempts of each id with ``code`` (and ``Retry-After``)."""
        payload = await self._enter(request)
        query = request.query
        if self.attempts[payload["id"]] <= int(query.get("fail", "1")):
            headers = {}
            if "retry_after" in query:
                headers["Retry-After"] = query["retry_after"]
            return web.json_response(
                {"error": "try again"}, status=int(query.get("code", "500")), headers=headers
            )
        return web.json_response({"id": payload["id"]})

    async def global_limited(self, request: web.Request) -> web.Response:
        payload = await self._enter(request)
        await asyncio.sleep(0.01)
        if self.global_429 > 0:
            self.global_429 -= 1
            return web.json_response({"error": "rate limited"}, status=429)
        return web.json_response({"id": payload["id"]})

    async def status(self, request: web.Request) -> web.Response:
        payload = await self._enter(request)
        if payload.get("hang"):
            await asyncio.sleep(30)
        code = int(request.query.get("code", "400"))
        return web.json_response({"error": {"message": "bad request: field x"}}, status=code)

    async def pyjson(self, request: web.Request) -> web.Response:
        await self._enter(request)
        return web.Response(body=b'{"lp": -Infinity, "x": NaN}', content_type="application/json")

    async def badjson(self, request: web.Request) -> web.Response:
        await self._enter(request)
        return web.Response(body=b'{"choices": [', content_type="application/json")

    async def bytes_(self, request: web.Request) -> web.StreamResponse:
        await self._enter(request)
        size = int(request.query.get("n", "1000"))
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        if request.query.get("chunked"):
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, size, 4096):
                await resp.write(data[i : i + 4096])
            await resp.write_eof()
            return resp
        return web.Response(body=data, content_type="application/octet-stream")


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def base_url(backend: Backend) -> Iterator[str]:
    with serve(backend.app()) as url:
        yield url


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def using(engine: RequestEngine, coro: Any) -> Any:
    try:
        return await coro
    finally:
        await engine.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ success and the window


def test_post_json_success(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(), headers={"Authorization": f"Bearer {SECRET}"})
    result = run(using(engine, engine.post_json(f"{base_url}/echo", {"id": 1, "x": "é"})))
    assert result == {"echo": {"id": 1, "x": "é"}, "content_type": "application/json"}
    assert backend.auth == [f"Bearer {SECRET}"]
    stats = engine.stats
    assert (stats.done, stats.in_flight, stats.retried, stats.failed) == (1, 0, 0, 0)
    assert stats.latency_count == 1
    assert stats.mean_latency > 0
    assert stats.snapshot()["done"] == 1


def test_window_is_full_and_never_exceeded(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(max_concurrent_requests=16))

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(engine.post_json(f"{base_url}/slow", {"id": i}) for i in range(200))
        )

    results = run(using(engine, main()))
    assert [r["id"] for r in results] == list(range(200))
    assert backend.max_current == 16
    assert backend.total == 200
    assert set(backend.attempts.values()) == {1}
    assert engine.stats.done == 200
    assert engine.stats.in_flight == 0


def test_sliding_window_not_batches(base_url: str) -> None:
    engine = RequestEngine(fast_config(max_concurrent_requests=4))
    fast_done_before_slow: list[int] = []
    fast_done = 0

    async def slow() -> None:
        await engine.post_json(f"{base_url}/slow", {"id": "slow", "sleep": 1.0})
        fast_done_before_slow.append(fast_done)

    async def fast(i: int) -> None:
        nonlocal fast_done
        await engine.post_json(f"{base_url}/slow", {"id": i, "sleep": 0.005})
        fast_done += 1

    async def main() -> None:
        slow_task = asyncio.ensure_future(slow())
        await asyncio.sleep(0)  # let the slow one take its slot first
        await asyncio.gather(slow_task, *(fast(i) for i in range(200)))

    run(using(engine, main()))
    assert fast_done == 200
    assert fast_done_before_slow[0] >= 50


# ------------------------------------------------------------------ retries


def test_429_then_success(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config())
    result = run(using(engine, engine.post_json(f"{base_url}/flaky?code=429", {"id": 7})))
    assert result == {"id": 7}
    assert backend.attempts[7] == 2
    stats = engine.stats
    assert (stats.rate_limited, stats.retried, stats.done, stats.failed) == (1, 1, 1, 0)


def testparse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("100000") == 600.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(past) == 0.0
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 31


def test_500_then_success(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config())
    url = f"{base_url}/flaky?code=500&fail=2"
    assert run(using(engine, engine.post_json(url, {"id": 3}))) == {"id": 3}
    assert backend.attempts[3] == 3
    assert engine.stats.retried == 2
    assert engine.stats.done == 1


def test_400_fails_at_once(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config())
    with pytest.raises(RequestError) as info:
        run(using(engine, engine.post_json(f"{base_url}/status?code=400", {"id": 1})))
    err = info.value
    assert (err.status, err.attempts, err.retryable) == (400, 1, False)
    assert "bad request: field x" in err.body
    assert str(err).startswith("HTTP 400 after 1 attempt (POST ")
    assert "bad request: field x" in str(err)
    assert backend.total == 1
    assert engine.stats.failed == 1
    assert engine.stats.retried == 0


def test_500_exhausts_retries(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(max_retries=2))
    with pytest.raises(RequestError) as info:
        run(using(engine, engine.post_json(f"{base_url}/status?code=503", {"id": 1})))
    assert (info.value.status, info.value.attempts, info.value.retryable) == (503, 3, True)
    assert "after 3 attempts" in str(info.value)
    assert backend.total == 3


def test_timeout_fails_one_request_only(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(timeout=0.3, max_retries=1, max_concurrent_requests=8))

    async def main() -> list[Any]:
        hung = engine.post_json(f"{base_url}/status", {"id": "hung", "hang": True})
        others = [engine.post_json(f"{base_url}/slow", {"id": i}) for i in range(40)]
        return await asyncio.gather(hung, *others, return_exceptions=True)

    start = time.monotonic()
    results = run(using(engine, main()))
    assert time.monotonic() - start < 5
    err = results[0]
    assert isinstance(err, RequestError)
    assert (err.status, err.attempts, err.retryable) == (None, 2, True)
    assert str(err).startswith("timeout after 2 attempts")
    assert [r["id"] for r in results[1:]] == list(range(40))
    assert backend.attempts["hung"] == 2
    assert engine.stats.done == 40
    assert engine.stats.failed == 1


def test_bodies_with_nan_and_infinity_are_read(base_url: str) -> None:
    engine = RequestEngine(fast_config())
    result = run(using(engine, engine.post_json(f"{base_url}/pyjson", {"id": 1})))
    assert result["lp"] == float("-inf") and math.isnan(result["x"])


def test_malformed_json_is_not_retried(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config())
    with pytest.raises(RequestError) as info:
        run(using(engine, engine.post_json(f"{base_url}/badjson", {"id": 1})))
    err = info.value
    assert (err.status, err.attempts, err.retryable) == (200, 1, False)
    assert "malformed JSON body" in str(err)
    assert '{"choices": [' in str(err)
    assert backend.total == 1
    assert engine.stats.done == 0
    assert engine.stats.failed == 1


def test_connection_refused_is_a_dead_server(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/chat?key={SECRET}"
    engine = RequestEngine(fast_config(max_retries=2))
    caplog.set_level(logging.DEBUG, logger="pixtill.transport")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        run(using(engine, engine.post_json(url, {"id": 1})))
    assert time.monotonic() - start < 3
    err = info.value
    assert "refused" in str(err).lower()
    assert "is the server running" in str(err)
    assert SECRET not in str(err)
    assert "/v1/chat" in str(err)
    assert engine.stats.retried == 0
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ pacing


def test_token_bucket_reservations() -> None:
    bucket = TokenBucket(10.0, 1.0, clock=lambda: 100.0)  # time stands still
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[0] == 0.0
    assert waits == sorted(waits)
    assert waits[4] == pytest.approx(0.4, abs=0.01)
    bucket.refund()
    assert bucket.reserve() == pytest.approx(0.4, abs=0.01)


# ------------------------------------------------------------------ secrets, sessions, misc


def test_headers_never_leak(caplog: pytest.LogCaptureFixture, base_url: str) -> None:
    caplog.set_level(logging.DEBUG, logger="pixtill.transport")
    engine = RequestEngine(fast_config(max_retries=1), headers={"Authorization": SECRET})
    assert SECRET not in repr(engine)
    assert SECRET not in str(engine)

    async def main() -> tuple[Any, ...]:
        return await asyncio.gather(
            engine.post_json(f"{base_url}/status?code=401", {"id": 1}, headers={"X-Key": SECRET}),
            engine.post_json(f"{base_url}/status?code=502", {"id": 2}),
            return_exceptions=True,
        )

    errors = run(using(engine, main()))
    for err in errors:
        assert isinstance(err, (RequestError, ModelUnavailableError))
        assert SECRET not in str(err)
        assert SECRET not in repr(err)
        assert SECRET not in repr(vars(err))
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_engine_survives_successive_event_loops(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config())
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

    assert run(third())["echo"] == {"id": 3}
    assert not engine.transport._sessions  # type: ignore[attr-defined]
    assert engine.stats.done == 3


def test_get_bytes(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(max_response_bytes=50_000))

    async def main() -> None:
        assert await engine.get_bytes(f"{base_url}/bytes?n=1000") == bytes(range(256)) * 3 + bytes(
            232
        )
        body = await engine.get_bytes(f"{base_url}/bytes?n=40000&chunked=1", timeout=5)
        assert len(body) == 40000
        for query in ("n=60000", "n=60000&chunked=1", "n=5000&chunked=1"):
            cap = 1000 if query == "n=5000&chunked=1" else None
            with pytest.raises(RequestError) as info:
                await engine.get_bytes(f"{base_url}/bytes?{query}", max_bytes=cap)
            assert info.value.retryable is False
            assert info.value.attempts == 1
            assert "response too large" in str(info.value)

    run(using(engine, main()))
    assert backend.total == 5
    assert engine.stats.done == 2


def test_request_error_pickles() -> None:
    err = RequestError("HTTP 400", status=400, body="nope", attempts=1, url="http://h/p")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is RequestError
    assert (clone.status, clone.body, clone.attempts, str(clone)) == (400, "nope", 1, str(err))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_concurrent_requests"):
        EngineConfig(max_concurrent_requests=2, min_concurrent_requests=3)
    with pytest.raises(ValueError, match="extra"):
        EngineConfig(api_key="x")  # type: ignore[call-arg]
    assert EngineStats().mean_latency == 0.0


def test_slot_pool_follows_the_limit() -> None:
    limit = AdaptiveLimit(minimum=1, maximum=4, decrease=0.5, min_sample=1, initial=2)
    pool = SlotPool(limit)

    async def main() -> None:
        assert pool.try_acquire()
        assert pool.try_acquire()
        assert not pool.try_acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        cancelled = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        assert pool.waiting == 2
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert pool.waiting == 1
        assert limit.record_rate_limited(limit.epoch)  # 2 -> 1: a release frees nothing
        pool.release()
        await asyncio.sleep(0)
        assert not waiter.done()
        assert limit.record_success()  # 1 -> 2
        pool.wake()
        await asyncio.wait_for(waiter, 1)
        assert pool.in_use == 2

    asyncio.run(main())


def test_unserialisable_payload_raises_and_frees_its_slot(base_url: str) -> None:
    engine = RequestEngine(fast_config(max_concurrent_requests=1))

    async def main() -> Any:
        with pytest.raises(TypeError):
            await engine.post_json(f"{base_url}/echo", {"id": object()})
        with pytest.raises(ValueError, match="JSON"):
            await engine.post_json(f"{base_url}/echo", {"id": float("nan")})
        assert engine.stats.in_flight == 0
        return await engine.post_json(f"{base_url}/echo", {"id": 1})

    assert run(using(engine, main()))["echo"] == {"id": 1}


def test_cancelled_requests_free_the_window(backend: Backend, base_url: str) -> None:
    engine = RequestEngine(fast_config(max_concurrent_requests=2))

    async def main() -> Any:
        tasks = [
            asyncio.ensure_future(engine.post_json(f"{base_url}/slow", {"id": i, "sleep": 10}))
            for i in range(6)
        ]
        await asyncio.sleep(0.2)
        assert engine.stats.in_flight == 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert engine.stats.in_flight == 0
        return await asyncio.wait_for(engine.post_json(f"{base_url}/echo", {"id": "after"}), 5)

    assert run(using(engine, main()))["echo"] == {"id": "after"}
    assert backend.total == 3


def test_encode_json_is_compact_json_and_refuses_nan() -> None:
    import json as _json

    from pixtill.models.transport import encode_json

    url = "data:image/png;base64," + "bnVsbA" * 1000  # base64 text that holds "null"
    payload = {
        "messages": [
            {
                "content": [
                    {"type": "text", "text": 'say "hi"\n'},
                    {"type": "image_url", "image_url": {"url": url}},
                ]
            }
        ],
        "n": 2,
        "stop": None,
        "logit_bias": {42: 1.5},
    }
    body = encode_json(payload)
    assert body == _json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="JSON"):
            encode_json({"temperature": bad})
        with pytest.raises(ValueError, match="JSON"):
            encode_json({"a": None, "b": [bad]})
