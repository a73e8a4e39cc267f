"""Where a streaming task formats its rows: inline on the event loop when that is cheap, or in
one worker thread per step when image work (PNG encoding, decoding, resizing) would stall the
loop and every request in flight."""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from pixtill.images import ImageRef
from pixtill.steps.typing import Row


class PrepareThread:
    """One worker thread per step for `prepare_row` off the event loop: calls run one at a
    time, in order (user code written for distilabel's `format_input` never expects two at
    once), and never wait in the loop's default pool, where the models encode images to send.
    A copy of the step (a replica, a pickled step) gets its own, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="pixtill-prepare")
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __reduce__(self) -> tuple[type[PrepareThread], tuple[()]]:
        return (PrepareThread, ())


class PrepareCost:
    """When a step's rows are formatted on the event loop: the median of the last `WINDOW`
    inline formatting times (seconds); once at least `MIN_SAMPLES` are known and the median
    passes `LIMIT`, every later row of the step goes to the worker thread. A thread hop costs
    ~50 us plus GIL hand-offs between the loop and the worker, which on a small machine cost a
    pipeline a fifth of its throughput when paid for rows that took 30 us to format; a
    millisecond of formatting on the loop, though, delays every request in flight by as much.
    A median, not a mean, so one slow first call (lazy imports) or a GC pause decides nothing."""

    LIMIT = 0.001
    WINDOW = 8
    MIN_SAMPLES = 3

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=self.WINDOW)
        self.offload = False

    def record(self, seconds: float) -> None:
        self.recent.append(seconds)
        if len(self.recent) >= self.MIN_SAMPLES and statistics.median(self.recent) > self.LIMIT:
            self.offload = True


def holds_pil_image(row: Row, columns: Sequence[str]) -> bool:
    """Whether one of the row's image values is (or wraps) a PIL image, whose data URL needs a
    PNG encode: milliseconds to a second, never for the loop."""
    for column in columns:
        value = row.get(column)
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if isinstance(item, Image.Image):
                return True
            if isinstance(item, ImageRef) and item.kind == "pil":
                return True
    return False
