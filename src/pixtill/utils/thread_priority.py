"""Run background threads at a lower OS scheduling priority than the event loop.

A streaming run is paced by its one event-loop thread. The shard writer and the cache writer
do their work (encoding, and kernel time writing files) on the same few cores; at equal
priority the scheduler makes the loop wait behind them (measured: ~45 us of run-queue wait
per row on 2 cores, against ~2 us for a bare aiohttp loop). Their work can wait: their queues
are bounded, so a lagging writer slows the run through backpressure, never by losing rows.
Linux only (threads have their own nice value there); elsewhere this does nothing.
"""

from __future__ import annotations

import os
import sys
import threading

BACKGROUND_NICE = 10


def lower_thread_priority(increment: int = BACKGROUND_NICE) -> bool:
    """Raise the calling thread's nice value by ``increment``; True when it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError:
        return False
    return True


__all__ = ["BACKGROUND_NICE", "lower_thread_priority"]
