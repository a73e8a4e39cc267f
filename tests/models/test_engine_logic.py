"""The request engine's logic (AIMD, Retry-After pauses, retries, fail-fast) without sockets or
wall time: `MockTransport` answers, `ManualClock` makes every sleep instant."""

from __future__ import annotations

import asyncio
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from pixtill.errors import ModelUnavailableError
from pixtill.models._ratelimit import AdaptiveLimit
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


def engine_with(
    handler: Callable[[HttpRequest], Any], clock: ManualClock | None = None, **config: Any
) -> tuple[RequestEngine, MockTransport, ManualClock]:
    clock = clock or ManualClock()
    transport = MockTransport(handler)
    return RequestEngine(EngineConfig(**config), transport=transport, clock=clock), transport, clock


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ------------------------------------------------------------------ AdaptiveLimit, pure


def limit_with(clock: ManualClock, **kwargs: Any) -> AdaptiveLimit:
    values: dict[str, Any] = {"minimum": 1, "maximum": 50}
    values.update(kwargs)
    return AdaptiveLimit(clock=clock.monotonic, **values)


def test_random_429s_do_not_shrink_the_window() -> None:
    """5 % random 429s (and 5 % 500s) over 10,000 responses: the window stays at the top."""
    rng = random.Random(7)
    limit = limit_with(ManualClock())
    for _ in range(10_000):
        draw = rng.random()
        if draw < 0.05:
            limit.record_rate_limited(limit.epoch, retry_after=1.0 if rng.random() < 0.5 else None)
        elif draw < 0.10:
            limit.record_response(limit.epoch)
        else:
            limit.record_success(limit.epoch)
    assert limit.value >= 45
    assert limit.paused_for() == 0.0


def test_a_real_limit_is_found_and_held() -> None:
    """A server that refuses whatever is above K=20 in flight: the window settles near K, and
    the share of 429s once settled stays low."""
    k = 20
    limit = limit_with(ManualClock(), maximum=200)
    history = []
    refused = total = 0
    for step in range(400):  # one round trip per step: the whole window is sent and answered
        window, epoch = limit.value, limit.epoch
        for slot in range(window):
            if slot >= k:
                limit.record_rate_limited(epoch)
                refused += step >= 100
            else:
                limit.record_success(epoch)
            total += step >= 100
        history.append(limit.value)
    assert history[10] <= 40  # found within a few round trips
    settled = history[100:]
    assert min(settled) >= int(0.8 * k)
    assert max(settled) <= int(1.4 * k)
    assert refused / total < 0.15  # every request above K refused: the harshest case


def test_one_burst_of_429s_decreases_once() -> None:
    limit = limit_with(ManualClock(), maximum=8, min_sample=4)
    epoch = limit.epoch
    lowered = [limit.record_rate_limited(epoch) for _ in range(8)]
    assert lowered.count(True) == 1
    assert limit.value == 4  # a 100 % share: the deepest cut, decrease=0.5
    assert limit.record_rate_limited(epoch) is False  # a late answer from the old window


def test_increase_is_one_slot_per_window_of_successes() -> None:
    limit = limit_with(ManualClock(), maximum=100, initial=10)
    for _ in range(10):
        limit.record_success()
    assert limit.value == 10 or limit.value == 11
    for _ in range(11):
        limit.record_success()
    assert limit.value == 12 or limit.value == 11
    for _ in range(200):
        limit.record_success()
    assert 20 <= limit.value <= 30  # ~ +1 per window, not +1 per success
    floor = limit_with(ManualClock(), minimum=3, maximum=100, min_sample=1, initial=10)
    for _ in range(500):
        floor.record_rate_limited(floor.epoch)
    assert floor.value == 3  # the floor holds


def test_retry_after_pauses_then_cuts_only_if_the_pause_did_not_help() -> None:
    clock = ManualClock()
    limit = limit_with(clock, maximum=40, min_sample=8)
    epoch = limit.epoch
    for _ in range(40):  # a whole window refused
        limit.record_rate_limited(epoch, retry_after=5.0)
    assert limit.value == 40  # a pause, not a cut
    assert limit.paused_for() == pytest.approx(5.0)
    clock.advance(5.0)
    assert limit.paused_for() == 0.0
    epoch = limit.epoch
    for _ in range(40):  # still refused right after the pause: a concurrency limit
        limit.record_rate_limited(epoch, retry_after=5.0)
    assert limit.value == 20
    assert limit.paused_for() == pytest.approx(5.0)
    clock.advance(5.0)
    for _ in range(40):  # it worked: the next real limit pauses first again
        limit.record_success()
    epoch = limit.epoch
    for _ in range(40):
        limit.record_rate_limited(epoch, retry_after=1.0)
    assert limit.value >= 20
    assert limit.paused_for() == pytest.approx(1.0)


def test_429s_from_before_the_cut_cause_one_cut_only() -> None:
    """A burst of 429s answered while the attempts started before the cut still hold the
    server: one cut, and until those attempts end, no vote and no new start beyond them."""
    clock = ManualClock()
    limit = limit_with(clock, maximum=100, min_sample=8)
    old = [limit.started() for _ in range(100)]  # the first window, all sent at once
    for epoch in old[:35]:
        limit.record_success(epoch, latency=0.2)
        limit.finished(epoch)
    lowered = []
    for epoch in old[35:60]:  # then 25 refused; the 15th makes a 30 % share of 50 responses
        lowered.append(limit.record_rate_limited(epoch))
        limit.finished(epoch)
    assert lowered.count(True) == 1
    assert limit.value == 51  # cut to 85 (x0.85), held at the 51 attempts out at the cut
    for _ in range(3):  # recovery: new attempts are refused too (the server is still full)
        votes = [limit.started() for _ in range(50)]
        assert limit.epoch not in votes
        for epoch in votes:
            assert limit.record_rate_limited(epoch) is False
            limit.finished(epoch)
    assert limit.value == 51
    for epoch in old[60:]:  # the old attempts succeed: recovery ends, votes count again
        clock.advance(0.005)
        limit.record_success(epoch, latency=0.2)
        limit.finished(epoch)
    assert limit.value == 85
    epoch = limit.started()
    assert epoch == limit.epoch
    lowered = [limit.record_rate_limited(limit.started()) for _ in range(50)]
    assert lowered.count(True) == 1  # a real limit in the new window: the next cut
    assert limit.value < 85


def test_a_cut_never_falls_below_the_concurrency_the_server_sustained() -> None:
    """Little's law: 300 successes/s of 0.1 s each = 30 requests held at once. Two bursts of
    429s (the second refusing everything) leave the window at about 30, where halving twice
    would leave 10, as it does when nothing has succeeded."""
    clock = ManualClock()
    limit = limit_with(clock, maximum=40, min_sample=8)
    for _ in range(600):  # two seconds of 300 successes/s
        clock.advance(1 / 300)
        limit.record_success(limit.epoch, latency=0.1)
    assert limit.sustained() == pytest.approx(30.0, rel=0.05)
    idle = limit_with(ManualClock(), maximum=40, min_sample=8)
    for window in (limit, idle):
        for _ in range(2):
            epoch = window.epoch
            for _ in range(40):
                window.record_rate_limited(epoch)
    assert 28 <= limit.value <= 30
    assert idle.value == 10
    clock.advance(10.0)  # ten silent seconds: nothing is sustained any more
    assert limit.sustained() == 0.0


def test_converges_near_k_on_a_server_that_refuses_above_k(monkeypatch: Any) -> None:
    """A simulated server holding at most K=64 requests of 200 ms (429 at once above that),
    C=500, a client that spends 0.5 ms of one core on each attempt: within two seconds the
    window is near K and stays there, the server answers about K/latency successes a second,
    and few requests are refused once settled. (Halving on every burst of 429s answered by a
    still-full server fell to 33 and took 6 s to climb back.)"""
    monkeypatch.setattr("pixtill.models._retry.random", random.Random(3))
    k, latency, cpu_cost = 64, 0.2, 0.0005
    clock = ManualClock()
    held, cpu_free_at = 0, 0.0
    log: list[tuple[float, bool, int]] = []  # (time, success, window)

    async def server(request: HttpRequest) -> HttpResponse:
        nonlocal held, cpu_free_at
        cpu_free_at = max(clock.now, cpu_free_at) + cpu_cost  # attempts queue for the CPU
        await clock.sleep(cpu_free_at - clock.now)
        if held >= k:
            log.append((clock.now, False, engine.limit.value))
            return HttpResponse(429)
        held += 1
        try:
            await clock.sleep(latency)
        finally:
            held -= 1
        log.append((clock.now, True, engine.limit.value))
        return OK

    engine, _, _ = engine_with(server, clock, max_concurrent_requests=500, max_retries=8)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(engine.post_json("http://x/v1/c", {"i": i}) for i in range(2000))
        )

    assert len(run(main())) == 2000
    settled = [entry for entry in log if 2.0 <= entry[0] < 7.0]
    assert min(window for _, _, window in settled) >= int(0.85 * k)
    assert max(window for _, _, window in settled) <= int(1.1 * k)
    successes = sum(ok for _, ok, _ in settled)
    assert successes >= 0.85 * (k / latency) * 5  # the target of benchmarks/rate_limits.py
    refused = [ok for at, ok, _ in log if at >= 3.0]
    assert refused.count(False) / len(refused) < 0.1


# ------------------------------------------------------------------ the engine on a mock


def test_retry_after_is_slept_on_the_injected_clock() -> None:
    answers = iter([HttpResponse(429, b"slow down", {"Retry-After": "3"}), OK])
    engine, transport, clock = engine_with(lambda r: next(answers), backoff_base=0.1)
    assert run(engine.post_json("http://x/v1/chat", {"a": 1})) == {"ok": True}
    assert len(transport.requests) == 2
    assert 3.0 <= clock.sleeps[0] <= 3.1
    assert engine.stats.rate_limited == 1


def test_backoff_is_exponential_and_capped() -> None:
    answers = iter([HttpResponse(503)] * 5 + [OK])
    engine, _, clock = engine_with(
        lambda r: next(answers), backoff_base=1.0, backoff_max=4.0, fail_fast_attempts=0
    )
    run(engine.post_json("http://x/v1/chat", {}))
    caps = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= s <= c for s, c in zip(clock.sleeps, caps))
    assert engine.stats.retried == 5


def test_timeouts_are_retried_once_then_fail() -> None:
    def hang(request: HttpRequest) -> HttpResponse:
        raise TransportError(ErrorKind.TIMEOUT, "timeout")

    engine, transport, _ = engine_with(hang, fail_fast_attempts=0)
    with pytest.raises(RequestError) as info:
        run(engine.post_json("http://x/v1/chat", {}))
    assert info.value.kind is ErrorKind.TIMEOUT
    assert (info.value.attempts, len(transport.requests)) == (2, 2)


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (TransportError(ErrorKind.CONNECTION, "connection refused", fatal=True), "server running"),
        (TransportError(ErrorKind.CONNECTION, "host name not found", fatal=True), "host name"),
        (HttpResponse(401, b'{"error": "bad key"}'), "credentials"),
        (HttpResponse(403), "credentials"),
        (HttpResponse(404, b"Not Found"), "need /v1 in base_url"),
    ],
)
def test_dead_or_misconfigured_server_fails_fast(answer: Any, needle: str) -> None:
    def handler(request: HttpRequest) -> HttpResponse:
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, HttpResponse)
        return answer

    engine, transport, _ = engine_with(handler)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(engine.post_json("http://h:1/chat/completions?k=s", {}) for _ in range(50)),
            return_exceptions=True,
        )

    results = run(main())
    assert all(isinstance(r, ModelUnavailableError) for r in results)
    assert needle in str(results[0])
    assert "http://h:1/chat/completions" in str(results[0])
    assert "k=s" not in str(results[0])
    assert len(transport.requests) <= 50  # nobody retried
    error = pickle.loads(pickle.dumps(results[0].located(model="m", step="s")))
    assert str(error).startswith("step 's': model 'm' at http://h:1/chat/completions")


def test_every_first_attempt_failing_is_systemic() -> None:
    engine, transport, _ = engine_with(lambda r: HttpResponse(500, b"boom"), fail_fast_attempts=5)

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", {}) for _ in range(3)))

    with pytest.raises(ModelUnavailableError, match="each of the first 5 attempts failed"):
        run(main())
    assert len(transport.requests) <= 8


def test_after_a_success_errors_are_per_request() -> None:
    answers = iter([OK] + [HttpResponse(404, b"no such thing")] * 3)
    engine, _, _ = engine_with(lambda r: next(answers))

    async def main() -> None:
        await engine.post_json("http://x/v1/c", {})
        with pytest.raises(RequestError) as info:
            await engine.post_json("http://x/v1/c", {})
        assert info.value.kind is ErrorKind.BAD_REQUEST
        assert info.value.status == 404

    run(main())


def test_image_fetch_errors_never_declare_the_model_dead() -> None:
    engine, _, _ = engine_with(lambda r: HttpResponse(404))
    with pytest.raises(RequestError):
        run(engine.get_bytes("http://images/x.png"))


def test_lazy_payload_is_built_once_inside_the_window() -> None:
    built: list[int] = []
    in_flight: list[int] = []
    answers = iter([HttpResponse(500), OK])

    def handler(request: HttpRequest) -> HttpResponse:
        assert request.body == b'{"n":1}'
        return next(answers)

    engine, _, _ = engine_with(handler, max_concurrent_requests=1)

    async def build() -> dict[str, Any]:
        built.append(1)
        in_flight.append(engine.stats.in_flight)
        return {"n": 1}

    run(engine.post_json("http://x/v1/c", build))
    assert built == [1]  # not rebuilt for the retry
    assert in_flight == [1]  # built while holding the slot


def test_pause_holds_back_new_starts() -> None:
    """A real limit with Retry-After: 2 s pauses every new start for 2 s of (manual) time."""
    clock = ManualClock()
    starts: list[float] = []
    state = {"refuse": 10}  # half the window: a real limit

    def handler(request: HttpRequest) -> HttpResponse:
        starts.append(clock.now)
        if state["refuse"] > 0:
            state["refuse"] -= 1
            return HttpResponse(429, headers={"Retry-After": "2"})
        return OK

    engine, _, _ = engine_with(handler, clock, max_concurrent_requests=20, aimd_min_sample=8)

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", {}) for _ in range(20)))

    run(main())
    assert engine.limit.value == 20  # paused, not cut
    assert engine.limit.epoch == 2  # one pause (a new epoch, after one for recovery), no cut
    retried = starts[20:]
    assert retried and min(retried) >= 2.0


def test_once_builds_once_and_retries_a_failed_build() -> None:
    from pixtill.models.build_once import once

    calls: list[int] = []

    async def build() -> int:
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise ValueError("first build fails")
        return len(calls)

    async def main() -> list[Any]:
        get = once(build)
        first = await asyncio.gather(get(), return_exceptions=True)
        rest = await asyncio.gather(get(), get(), get())
        return [*first, *rest]

    result = run(main())
    assert isinstance(result[0], ValueError)
    assert result[1:] == [2, 2, 2]
    assert len(calls) == 2


def test_requests_per_minute_paces_on_the_injected_clock() -> None:
    engine, transport, clock = engine_with(lambda r: OK, requests_per_minute=600)  # 10 / s

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", {}) for _ in range(20)))

    run(main())
    assert len(transport.requests) == 20
    assert 1.7 <= clock.now <= 2.1  # 19 requests after the first at 10 per second


def test_tokens_per_minute_paces_on_the_injected_clock() -> None:
    engine, _, clock = engine_with(lambda r: OK, tokens_per_minute=60_000)  # 1000 / s

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", {}, tokens=500) for _ in range(3)))

    run(main())
    assert 0.9 <= clock.now <= 1.6


def test_a_refused_key_echoed_back_is_scrubbed_by_the_engine() -> None:
    key = "sk-live-0123456789abcdef"
    echo = HttpResponse(401, f'{{"error": "bad key {key[:15]}... / Bearer {key}"}}'.encode())
    transport = MockTransport(lambda r: echo)
    engine = RequestEngine(
        EngineConfig(), headers={"Authorization": f"Bearer {key}"}, transport=transport
    )
    with pytest.raises(ModelUnavailableError) as info:
        run(engine.post_json("http://x/v1/c", {}))
    assert key[:10] not in str(info.value)
    assert "bad key ***" in str(info.value)


def test_a_hung_server_is_given_up_on_in_about_two_minutes_even_at_concurrency_one() -> None:
    clock = ManualClock()

    def hang(request: HttpRequest) -> HttpResponse:
        clock.advance(request.timeout)  # the attempt waits its whole timeout
        raise TransportError(ErrorKind.TIMEOUT, "timeout")

    engine, transport, _ = engine_with(hang, clock, max_concurrent_requests=1)

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", {}) for _ in range(5)))

    with pytest.raises(ModelUnavailableError, match=r"no answer in 1[23][0-9] s over 2 attempts"):
        run(main())
    assert len(transport.requests) == 2
    assert clock.now < 150  # default timeout 60 s, one retry


def test_a_retry_queues_ahead_of_first_attempts() -> None:
    order: list[int] = []
    failed_once: set[int] = set()

    async def handler(request: HttpRequest) -> HttpResponse:
        n = int(request.body or b"0")
        order.append(n)
        await asyncio.sleep(0)
        if n == 0 and n not in failed_once:
            failed_once.add(n)
            return HttpResponse(500)
        return OK

    engine, _, _ = engine_with(handler, max_concurrent_requests=1, backoff_base=0.0)

    async def main() -> None:
        await asyncio.gather(*(engine.post_json("http://x/v1/c", i) for i in range(6)))  # type: ignore[arg-type]

    run(main())
    assert order.index(0, 1) <= 2  # the retry of row 0 did not wait behind rows 1-5
