"""A server that answers, then dies (crash, unplugged, restart that never ends): the engine
stops the model with one `ModelUnavailableError` once nothing has succeeded for
``fail_fast_seconds`` and the last ``fail_fast_attempts`` attempts all failed; a short outage
only fails the rows that ran out of retries. Virtual time (`ManualClock`): no waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pixtill.errors import ModelUnavailableError
from pixtill.models.http import (
    ErrorKind,
    HttpRequest,
    HttpResponse,
    ManualClock,
    MockTransport,
    RequestError,
    TransportError,
)
from pixtill.models.transport import EngineConfig, RequestEngine

OK = HttpResponse(200, b'{"ok": true}', content_type="application/json")
URL = "http://gpu-box:8000/v1/chat/completions"

REFUSED = TransportError(ErrorKind.CONNECTION, "connection refused", fatal=True)


def _engine(answer: Callable[[float, HttpRequest], Any]) -> tuple[RequestEngine, ManualClock]:
    clock = ManualClock()

    async def handler(request: HttpRequest) -> HttpResponse:
        result = answer(clock.monotonic(), request)
        if result == "hang":  # the server holds the connection: the attempt times out
            await clock.sleep(request.timeout)
            raise TransportError(ErrorKind.TIMEOUT, "timeout", retryable=True)
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, HttpResponse)
        return result

    config = EngineConfig(max_concurrent_requests=4, fail_fast_attempts=8, fail_fast_seconds=120)
    return RequestEngine(config, transport=MockTransport(handler), clock=clock), clock


async def _rows(engine: RequestEngine, count: int) -> list[Any]:
    return await asyncio.gather(
        *(engine.post_json(URL, {"row": i}) for i in range(count)), return_exceptions=True
    )


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_server_that_hangs_mid_run_stops_the_model_within_minutes() -> None:
    # 2,000 rows at 4 in flight: each row's two 60 s attempts would take 16 hours
    died_at = 10.0
    engine, clock = _engine(lambda now, request: OK if now < died_at else "hang")

    async def main() -> tuple[list[Any], list[Any]]:
        before = await _rows(engine, 8)
        clock.advance(died_at)
        return before, await _rows(engine, 2000)

    before, after = _run(main())
    assert before == [{"ok": True}] * 8
    dead = [r for r in after if isinstance(r, ModelUnavailableError)]
    assert len(dead) > 1900, {type(r).__name__ for r in after}
    assert all(isinstance(r, (ModelUnavailableError, RequestError)) for r in after)
    message = str(dead[0])
    assert "gpu-box:8000" in message and "stopped answering mid-run" in message
    assert "run again to resume" in message
    assert clock.monotonic() - died_at < 300


@pytest.mark.parametrize("how", ["refused", "503"])
def test_a_server_that_refuses_mid_run_fails_its_rows_fast(how: str) -> None:
    # refusals come back at once: every row runs out of retries within a minute
    failure = REFUSED if how == "refused" else HttpResponse(503, b"upstream gone")
    engine, clock = _engine(lambda now, request: OK if now < 10 else failure)

    async def main() -> list[Any]:
        await _rows(engine, 4)
        clock.advance(10.0)
        return await _rows(engine, 500)

    results = _run(main())
    assert all(isinstance(r, (RequestError, ModelUnavailableError)) for r in results)
    assert clock.monotonic() < 10 + 180


def test_a_short_outage_fails_only_some_rows() -> None:
    engine, clock = _engine(lambda now, request: REFUSED if 10.0 <= now < 25.0 else OK)

    async def main() -> list[Any]:
        await _rows(engine, 4)
        clock.advance(10.0)
        return await _rows(engine, 40)

    results = _run(main())
    assert not any(isinstance(r, ModelUnavailableError) for r in results)
    assert sum(r == {"ok": True} for r in results) >= 1


def test_answers_that_show_the_server_alive_keep_it_alive() -> None:
    # after a success, a stream of 400s is each row's own problem, however long it lasts
    engine, clock = _engine(lambda now, request: OK if now < 1 else HttpResponse(400, b"bad row"))

    async def main() -> list[Any]:
        await _rows(engine, 2)
        clock.advance(500.0)
        return await _rows(engine, 50)

    results = _run(main())
    assert all(isinstance(r, RequestError) and r.status == 400 for r in results)
