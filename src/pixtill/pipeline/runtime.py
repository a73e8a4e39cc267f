"""Process tuning for a run: opt-in, because it changes the whole process.

What it does, and why (each measured on the request-engine benchmark's setup):

- caps glibc's malloc arenas (`pixtill.utils.memory`): worker threads otherwise leave fragmented
  arenas behind and the peak RSS grows with the number of rows. Irreversible for the process.
- freezes the GC heap for the run (`pixtill.utils.gc_freeze`): full collections otherwise walk
  every object the imports left behind; undone when the run ends.
- lowers the priority of the run's writer and cache threads (`pixtill.utils.thread_priority`),
  so that encoding shards never delays the event loop that keeps requests in flight.

The CLI turns it on (``pixtill run``); a library call (``Pipeline.run``) leaves the caller's
process alone unless it passes ``tune_process=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pixtill.utils.gc_freeze import frozen_heap
from pixtill.utils.memory import limit_malloc_arenas
from pixtill.utils.thread_priority import lower_thread_priority


@dataclass(frozen=True)
class Runtime:
    """How a run may treat its process; ``Runtime(tune=True)`` is the CLI's."""

    tune: bool = False

    @contextmanager
    def session(self) -> Iterator[None]:
        """The block a run executes in: tuned (arenas capped, heap frozen) or untouched."""
        if not self.tune:
            yield
            return
        limit_malloc_arenas()  # before any step starts a thread
        with frozen_heap():
            yield

    @property
    def background_thread_init(self) -> Callable[[], object] | None:
        """The initializer for the run's background threads (writer, cache): None, or one
        that lowers the thread's priority."""
        return lower_thread_priority if self.tune else None
