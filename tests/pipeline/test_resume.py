"""Kill a running pipeline with SIGKILL at several points; every restart must finish the
dataset with each row exactly once, and never resend a request whose response was stored."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pixtill.distiset import Distiset

JOB = Path(__file__).with_name("resume_job.py")
ROWS = 300


def _requests(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _stored(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def _start(work: Path, hold_after: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(JOB.parent)}
    hold = [] if hold_after is None else [str(hold_after)]
    return subprocess.Popen(
        [sys.executable, str(JOB), str(work), str(ROWS), *hold],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    """Block until the child prints ``wanted`` (no polling: a thread reads its output)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
            if line.strip() == wanted:
                return
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the job never printed {wanted!r}") from None
        if line == wanted:
            return
        if line is None:
            error = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the job ended before {wanted!r}: {error}")


# Kill points count the requests of each run; every one must be reachable whatever the cache
# stored before the previous kill (a run sends at least ROWS - all requests sent so far).
@pytest.mark.parametrize("kill_after", [[20], [60, 150], [5, 100, 150]])
def test_sigkill_then_resume(tmp_path: Path, kill_after: list[int]) -> None:
    log = tmp_path / "requests.log"
    cache = tmp_path / "cache" / "cache.sqlite"
    sent_before = 0
    for threshold in kill_after:
        proc = _start(tmp_path, hold_after=threshold)
        # The child stops answering after `threshold` requests and says so: killed there,
        # it cannot have finished first however busy the machine is (generous timeout).
        _wait_for_line(proc, "HOLDING", timeout=300)
        assert len(_requests(log)) - sent_before > threshold
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.communicate()
        stored = _stored(cache)
        assert stored < ROWS, "the job finished before it was killed"
        # Rows that were stored are exactly the rows whose responses came back in full.
        sent_before = len(_requests(log))
        assert stored <= len(set(_requests(log)))
        stored_before_restart = stored
    proc = _start(tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"DONE {ROWS}" in out
    resent = _requests(log)[sent_before:]
    # The last run sent only what was not stored: no stored response was requested again.
    assert len(resent) == ROWS - stored_before_restart
    dataset = Distiset.load_from_disk(tmp_path / "saved")["echo"]
    assert dataset["instruction"] == [f"row-{i}" for i in range(ROWS)]
    assert dataset["generation"] == [f"echo row-{i}" for i in range(ROWS)]
