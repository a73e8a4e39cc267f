"""`once`: a request payload built at most once, for all of its attempts and fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["once"]

T = TypeVar("T")


def once(build: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """A coroutine function that runs ``build`` on its first call and then returns that result
    (concurrent callers wait for the running build): a payload built for a request's first
    attempt serves its fan-out and retries too. A failed or cancelled build is not kept: the
    next caller builds again (and sees its own error)."""
    done: list[T] = []
    running: list[asyncio.Future[None]] = []

    async def get() -> T:
        while not done:
            if running:  # another caller is building: wait for it, then look again
                await asyncio.wait(running)
                continue
            signal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            running.append(signal)
            try:
                done.append(await build())
            finally:
                running.clear()
                signal.set_result(None)
        return done[0]

    return get
