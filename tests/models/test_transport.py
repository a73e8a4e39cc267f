"""RequestEngine's request handling (window, retries, errors, cancellation, secrets, pacing) on a
`MockTransport` and the virtual `ManualClock`: no sockets, no wall time. The aiohttp transport
itself has its loopback smoke tests in ``test_aiohttp_transport.py``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import pickle
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from pixtill.errors import ModelUnavailableError
from pixtill.models._pacing import TokenBucket
from pixtill.models._ratelimit import AdaptiveLimit, SlotPool, parse_retry_after
from pixtill.models.http import (
    ErrorKind,
    HttpRequest,
    HttpResponse,
    ManualClock,
    MockTransport,
    TransportError,
)
from pixtill.models.transport import EngineConfig, EngineStats, RequestEngine, RequestError

SECRET = "sk-test-SECRET-0123456789"
BASE = "http://model.test"


def fast_config(**overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 10.0}
    values.update(overrides)
    return EngineConfig(**values)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, json.dumps(payload).encode(), headers or {}, "application/json")


@dataclass
class Server:
    """A fake model server on the mock transport; behaviour chosen by path and query string.
    ``slow`` and ``hang`` take virtual time on ``clock``; ``block`` waits until ``release``."""

    clock: ManualClock = field(default_factory=ManualClock)
    current: int = 0
    max_current: int = 0
    total: int = 0
    attempts: Counter[Any] = field(default_factory=Counter)
    auth: list[str | None] = field(default_factory=list)
    release: asyncio.Event | None = None

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.total += 1
        self.auth.append(request.headers.get("Authorization"))
        payload = json.loads(request.body) if request.body else None
        key = payload.get("id") if isinstance(payload, dict) else None
        self.attempts[key] += 1
        path, _, query_text = request.url.removeprefix(BASE).partition("?")
        query = dict(part.split("=") for part in query_text.split("&") if part)
        if path == "/echo":
            ctype = request.headers.get("Content-Type")
            return _json({"echo": payload, "content_type": ctype})
        if path in ("/slow", "/block"):
            self.current += 1
            self.max_current = max(self.max_current, self.current)
            try:
                if path == "/block":
                    self.release = self.release or asyncio.Event()
                    await self.release.wait()
                else:
                    await self.clock.sleep(float(payload.get("sleep", 0.02)))
            finally:
                self.current -= 1
            return _json({"id": key})
        if path == "/flaky" and self.attempts[key] <= int(query.get("fail", "1")):
            headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            return _json({"error": "try again"}, int(query.get("code", "500")), headers)
        if path == "/flaky":
            return _json({"id": key})
        if path == "/status":
            if payload.get("hang"):
                await self.clock.sleep(request.timeout)
                raise TransportError(ErrorKind.TIMEOUT, "timeout")
            return _json({"error": {"message": "bad request: field x"}}, int(query["code"]))
        if path == "/pyjson":
            return HttpResponse(200, b'{"lp": -Infinity, "x": NaN}', {}, "application/json")
        if path == "/badjson":
            return HttpResponse(200, b'{"choices": [', {}, "application/json")
        raise AssertionError(f"unexpected {request.url}")


def engine_on(server: Server, config: EngineConfig, **kwargs: Any) -> RequestEngine:
    return RequestEngine(config, transport=MockTransport(server), clock=server.clock, **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ------------------------------------------------------------------ the virtual clock


def test_virtual_clock_overlaps_concurrent_sleeps() -> None:
    clock = ManualClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async def main() -> None:
        cancelled = asyncio.ensure_future(nap("cancelled", 0.5))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(
            nap("three", 3.0), nap("one", 1.0), nap("zero", 0.0), cancelled, return_exceptions=True
        )

    run(main())
    assert woke == [("zero", 0.0), ("one", 1.0), ("three", 3.0)]  # not 4.0: they overlap
    assert clock.now == 3.0
    assert clock.sleeps == [0.5, 3.0, 1.0, 0.0]


def test_virtual_clock_waits_for_work_in_progress() -> None:
    """Time does not jump while other tasks still make progress without sleeping."""
    clock = ManualClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(50):
            seen.append(clock.monotonic())
            await asyncio.sleep(0)
            await clock.sleep(0.0)

    async def main() -> None:
        await asyncio.gather(clock.sleep(5.0), busy())

    run(main())
    assert set(seen) == {0.0}
    assert clock.now == 5.0


# ------------------------------------------------------------------ success and the window


def test_post_json_success() -> None:
    server = Server()
    engine = engine_on(server, fast_config(), headers={"Authorization": f"Bearer {SECRET}"})
    result = run(engine.post_json(f"{BASE}/echo", {"id": 1, "x": "é"}))
    assert result == {"echo": {"id": 1, "x": "é"}, "content_type": "application/json"}
    assert server.auth == [f"Bearer {SECRET}"]
    stats = engine.stats
    assert (stats.done, stats.in_flight, stats.retried, stats.failed) == (1, 0, 0, 0)
    assert stats.latency_count == 1
    assert stats.snapshot()["done"] == 1


def test_window_is_full_and_never_exceeded() -> None:
    server = Server()
    engine = engine_on(server, fast_config(max_concurrent_requests=16))

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(engine.post_json(f"{BASE}/slow", {"id": i}) for i in range(200))
        )

    results = run(main())
    assert [r["id"] for r in results] == list(range(200))
    assert server.max_current == 16
    assert server.total == 200
    assert set(server.attempts.values()) == {1}
    assert (engine.stats.done, engine.stats.in_flight) == (200, 0)
    assert server.clock.now == pytest.approx(200 / 16 * 0.02, abs=0.021)  # full all along
    assert engine.stats.mean_latency == pytest.approx(0.02)


def test_sliding_window_not_batches() -> None:
    server = Server()
    engine = engine_on(server, fast_config(max_concurrent_requests=4))
    fast_done_before_slow: list[int] = []
    fast_done = 0

    async def slow() -> None:
        await engine.post_json(f"{BASE}/slow", {"id": "slow", "sleep": 1.0})
        fast_done_before_slow.append(fast_done)

    async def fast(i: int) -> None:
        nonlocal fast_done
        await engine.post_json(f"{BASE}/slow", {"id": i, "sleep": 0.005})
        fast_done += 1

    async def main() -> None:
        slow_task = asyncio.ensure_future(slow())
        await asyncio.sleep(0)  # let the slow one take its slot first
        await asyncio.gather(slow_task, *(fast(i) for i in range(200)))

    run(main())
    assert fast_done_before_slow == [200]  # three slots served all 200 meanwhile
    assert server.clock.now == pytest.approx(1.0)


# ------------------------------------------------------------------ retries and failures


def test_429_then_success() -> None:
    server = Server()
    engine = engine_on(server, fast_config())
    assert run(engine.post_json(f"{BASE}/flaky?code=429", {"id": 7})) == {"id": 7}
    assert server.attempts[7] == 2
    stats = engine.stats
    assert (stats.rate_limited, stats.retried, stats.done, stats.failed) == (1, 1, 1, 0)


def test_retry_after_is_honoured() -> None:
    server = Server()
    engine = engine_on(server, fast_config())
    url = f"{BASE}/flaky?code=429&retry_after=7"
    assert run(engine.post_json(url, {"id": 7})) == {"id": 7}
    assert 7.0 <= server.clock.sleeps[0] <= 7.01  # plus at most backoff_base of jitter


def test_parse_retry_after() -> None:
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


def test_500_then_success() -> None:
    server = Server()
    engine = engine_on(server, fast_config())
    assert run(engine.post_json(f"{BASE}/flaky?code=500&fail=2", {"id": 3})) == {"id": 3}
    assert server.attempts[3] == 3
    assert (engine.stats.retried, engine.stats.done) == (2, 1)


def test_400_fails_at_once() -> None:
    server = Server()
    engine = engine_on(server, fast_config())
    with pytest.raises(RequestError) as info:
        run(engine.post_json(f"{BASE}/status?code=400", {"id": 1}))
    err = info.value
    assert (err.status, err.attempts, err.retryable, err.kind) == (
        400,
        1,
        False,
        ErrorKind.BAD_REQUEST,
    )
    assert "bad request: field x" in err.body
    assert str(err).startswith(f"HTTP 400 after 1 attempt (POST {BASE}/status)")
    assert server.total == 1
    assert (engine.stats.failed, engine.stats.retried) == (1, 0)


def test_500_exhausts_retries() -> None:
    server = Server()
    engine = engine_on(server, fast_config(max_retries=2, fail_fast_attempts=0))
    with pytest.raises(RequestError) as info:
        run(engine.post_json(f"{BASE}/status?code=503", {"id": 1}))
    assert (info.value.status, info.value.attempts, info.value.retryable) == (503, 3, True)
    assert info.value.kind is ErrorKind.SERVER
    assert "after 3 attempts" in str(info.value)
    assert server.total == 3


def test_timeout_fails_one_request_only() -> None:
    server = Server()
    engine = engine_on(server, fast_config(timeout=0.3, max_retries=1, max_concurrent_requests=8))

    async def main() -> list[Any]:
        await engine.post_json(f"{BASE}/echo", {"id": "first"})  # healthy: no fail-fast
        hung = engine.post_json(f"{BASE}/status", {"id": "hung", "hang": True})
        others = [engine.post_json(f"{BASE}/slow", {"id": i}) for i in range(40)]
        return await asyncio.gather(hung, *others, return_exceptions=True)

    results = run(main())
    err = results[0]
    assert isinstance(err, RequestError)
    assert (err.status, err.attempts, err.retryable, err.kind) == (None, 2, True, ErrorKind.TIMEOUT)
    assert str(err).startswith("timeout after 2 attempts")
    assert [r["id"] for r in results[1:]] == list(range(40))
    assert server.attempts["hung"] == 2
    assert (engine.stats.done, engine.stats.failed) == (41, 1)
    assert server.clock.now < 1.0  # the 40 others did not wait behind the hung one


def test_bodies_with_nan_and_infinity_are_read() -> None:
    engine = engine_on(Server(), fast_config())
    result = run(engine.post_json(f"{BASE}/pyjson", {"id": 1}))
    assert result["lp"] == float("-inf") and math.isnan(result["x"])


def test_malformed_json_is_not_retried() -> None:
    server = Server()
    engine = engine_on(server, fast_config())
    with pytest.raises(RequestError) as info:
        run(engine.post_json(f"{BASE}/badjson", {"id": 1}))
    err = info.value
    assert (err.status, err.attempts, err.retryable) == (200, 1, False)
    assert err.kind is ErrorKind.INVALID_RESPONSE
    assert "malformed JSON body" in str(err) and '{"choices": [' in str(err)
    assert server.total == 1
    assert (engine.stats.done, engine.stats.failed) == (0, 1)


def test_connection_refused_is_a_dead_server(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: HttpRequest) -> HttpResponse:
        raise TransportError(ErrorKind.CONNECTION, "connection refused", fatal=True)

    transport = MockTransport(refuse)
    engine = RequestEngine(fast_config(max_retries=2), transport=transport, clock=ManualClock())
    caplog.set_level(logging.DEBUG, logger="pixtill.transport")
    with pytest.raises(ModelUnavailableError) as info:
        run(engine.post_json(f"http://127.0.0.1:9/v1/chat?key={SECRET}", {"id": 1}))
    err = info.value
    assert "refused" in str(err).lower()
    assert "is the server running" in str(err)
    assert SECRET not in str(err)
    assert "/v1/chat" in str(err)
    assert engine.stats.retried == 0
    assert len(transport.requests) == 1
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ pacing


def test_token_bucket_reservations() -> None:
    bucket = TokenBucket(10.0, 1.0, clock=lambda: 100.0)  # time stands still
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    bucket.refund()
    assert bucket.reserve() == pytest.approx(0.4)


# ------------------------------------------------------------------ secrets, cancellation, misc


def test_headers_never_leak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pixtill.transport")
    server = Server()
    engine = engine_on(server, fast_config(max_retries=1), headers={"Authorization": SECRET})
    assert SECRET not in repr(engine)
    assert SECRET not in str(engine)

    async def main() -> tuple[Any, ...]:
        return await asyncio.gather(
            engine.post_json(f"{BASE}/status?code=502", {"id": 2}),
            engine.post_json(f"{BASE}/status?code=401", {"id": 1}, headers={"X-Key": SECRET}),
            return_exceptions=True,
        )

    errors = run(main())
    for err in errors:
        assert isinstance(err, (RequestError, ModelUnavailableError))
        assert SECRET not in str(err)
        assert SECRET not in repr(err)
        assert SECRET not in repr(vars(err))
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_request_error_pickles() -> None:
    err = RequestError("HTTP 400", status=400, body="nope", attempts=1, url="http://h/p")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is RequestError
    assert (clone.status, clone.body, clone.attempts, str(clone)) == (400, "nope", 1, str(err))
    assert clone.kind is ErrorKind.BAD_REQUEST


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


def test_unserialisable_payload_raises_and_frees_its_slot() -> None:
    server = Server()
    engine = engine_on(server, fast_config(max_concurrent_requests=1))

    async def main() -> Any:
        with pytest.raises(TypeError):
            await engine.post_json(f"{BASE}/echo", {"id": object()})
        with pytest.raises(ValueError, match="JSON"):
            await engine.post_json(f"{BASE}/echo", {"id": float("nan")})
        assert engine.stats.in_flight == 0
        return await engine.post_json(f"{BASE}/echo", {"id": 1})

    assert run(main())["echo"] == {"id": 1}
    assert server.total == 1


def test_cancelled_requests_free_the_window() -> None:
    server = Server()
    engine = engine_on(server, fast_config(max_concurrent_requests=2))

    async def main() -> Any:
        tasks = [
            asyncio.ensure_future(engine.post_json(f"{BASE}/block", {"id": i})) for i in range(6)
        ]
        for _ in range(10):
            await asyncio.sleep(0)
        assert engine.stats.in_flight == 2
        assert server.current == 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert engine.stats.in_flight == 0
        assert server.current == 0
        return await engine.post_json(f"{BASE}/echo", {"id": "after"})

    assert run(main())["echo"] == {"id": "after"}
    assert server.total == 3


def test_close_closes_the_transport() -> None:
    transport = MockTransport(lambda r: _json({}))
    engine = RequestEngine(fast_config(), transport=transport, clock=ManualClock())

    async def main() -> None:
        async with engine:
            await engine.post_json(f"{BASE}/echo", {})

    run(main())
    assert transport.closed


def test_encode_json_is_compact_json_and_refuses_nan() -> None:
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
    assert body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="JSON"):
            encode_json({"temperature": bad})
        with pytest.raises(ValueError, match="JSON"):
            encode_json({"a": None, "b": [bad]})


def test_an_image_fetched_while_building_uses_the_requests_own_slot() -> None:
    """A builder that inlines an image URL fetches it through the engine, in the slot its
    request already holds: at a window of 1 this would otherwise wait for itself forever."""
    seen: list[tuple[str, int]] = []
    image_answers = iter([HttpResponse(503), HttpResponse(200, b"\x89PNG...")])

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append((request.method, engine.stats.in_flight))
        if request.method == "GET":
            return next(image_answers)
        assert request.body == b"upload:\x89PNG..."
        return HttpResponse(200, b"done", content_type="text/plain")

    clock = ManualClock()
    config = fast_config(max_concurrent_requests=1)
    engine = RequestEngine(config, transport=MockTransport(handler), clock=clock)

    async def build() -> bytes:
        return b"upload:" + await engine.get_bytes("http://images.test/cat.png")

    async def main() -> list[Any]:
        return await asyncio.gather(
            engine.post_body(f"{BASE}/edits", build, "application/octet-stream"),
            engine.post_body(f"{BASE}/edits", b"upload:\x89PNG...", "application/octet-stream"),
        )

    assert run(main()) == [(b"done", "text/plain")] * 2
    assert seen == [("GET", 1), ("GET", 1), ("POST", 1), ("POST", 1)]  # never two slots
    assert engine.stats.retried == 1  # the image's 503, retried inside the slot
    assert len(clock.sleeps) == 1


def test_a_failed_image_fetch_fails_its_request_only() -> None:
    def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(404 if request.method == "GET" else 200, b"{}")

    engine = RequestEngine(
        fast_config(max_concurrent_requests=1),
        transport=MockTransport(handler),
        clock=ManualClock(),
    )

    async def build() -> dict[str, Any]:
        return {"image": (await engine.get_bytes("http://images.test/gone.png")).decode()}

    async def main() -> None:
        with pytest.raises(RequestError) as info:
            await engine.post_json(f"{BASE}/echo", build)
        assert (info.value.status, info.value.method) == (404, "GET")
        assert engine.stats.in_flight == 0
        assert await engine.post_json(f"{BASE}/echo", {}) == {}  # the model is not "dead"

    run(main())


def test_credentials_go_only_to_the_models_own_origins() -> None:
    """A generated image's CDN URL, or an image URL a row holds, never receives the API key;
    the model's own host (declared, or POSTed to) does, e.g. for batch result files."""

    def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"{}", {}, "application/json")

    transport = MockTransport(handler)
    engine = RequestEngine(
        fast_config(),
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=transport,
        clock=ManualClock(),
        origins=[f"{BASE}/v1"],
    )

    async def scenario() -> None:
        await engine.get_bytes(f"{BASE}:80/v1/files/1/content")
        await engine.get_bytes("http://cdn.example.test/image.png")
        await engine.get_bytes("HTTP://MODEL.TEST.evil.test/x")
        await engine.post_json("http://other.test:8080/v1/chat", {"a": 1})
        await engine.get_bytes("http://other.test:8080/v1/files/2")
        await engine.get_bytes("http://other.test:8081/v1/files/2")

    asyncio.run(scenario())
    sent = [(r.method, r.url, r.headers.get("Authorization")) for r in transport.requests]
    assert sent == [
        ("GET", f"{BASE}:80/v1/files/1/content", f"Bearer {SECRET}"),
        ("GET", "http://cdn.example.test/image.png", None),
        ("GET", "HTTP://MODEL.TEST.evil.test/x", None),
        ("POST", "http://other.test:8080/v1/chat", f"Bearer {SECRET}"),
        ("GET", "http://other.test:8080/v1/files/2", f"Bearer {SECRET}"),
        ("GET", "http://other.test:8081/v1/files/2", None),
    ]
