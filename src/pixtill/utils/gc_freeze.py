"""Keep the cyclic garbage collector off the objects that exist before a run starts.

A run allocates a few container objects per row, so CPython's collector runs every few rows,
and every full (oldest-generation) collection walks all the objects the imports left behind:
pyarrow, datasets, pydantic and aiohttp hold hundreds of thousands. Measured over three
3,000-row pipeline runs with ~40 KB images and no network: ~52 us of collector time per row
(323 ms of it in four full collections, pauses that also stall the event loop), ~14 us
frozen. `gc.freeze` moves those objects to a permanent generation that collections skip;
`gc.unfreeze` at the end hands them back, so cyclic garbage among them is still collected,
only later. ``PIXTILL_GC_FREEZE=0`` turns this off.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # runs inside the frozen region (runs in parallel threads share it)


def _enabled() -> bool:
    return os.environ.get("PIXTILL_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no")


@contextmanager
def frozen_heap() -> Iterator[bool]:
    """Freeze the heap for the duration of the block; yields whether it is frozen."""
    global _depth
    if not _enabled():
        yield False
        return
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()


__all__ = ["frozen_heap"]
