"""Kill a running pipeline with SIGKILL at several points; every restart must finish the
dataset with each row exactly once, and never resend a request whose response was stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
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


def _start(work: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(JOB.parent)}
    return subprocess.Popen(
        [sys.executable, str(JOB), str(work), str(ROWS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Kill points count the requests of each run; every one must be reachable whatever the cache
# stored before the previous kill (a run sends at least ROWS - all requests sent so far).
@pytest.mark.parametrize("kill_after", [[20], [60, 150], [5, 100, 150]])
def test_sigkill_then_resume(tmp_path: Path, kill_after: list[int]) -> None:
    log = tmp_path / "requests.log"
    cache = tmp_path / "cache" / "cache.sqlite"
    sent_before = 0
    for threshold in kill_after:
        proc = _start(tmp_path)
        deadline = time.monotonic() + 60
        while len(_requests(log)) - sent_before < threshold and proc.poll() is None:
            assert time.monotonic() < deadline, "the job never reached the kill point"
            time.sleep(0.005)
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
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"DONE {ROWS}" in out
    resent = _requests(log)[sent_before:]
    # The last run sent only what was not stored: no stored response was requested again.
    assert len(resent) == ROWS - stored_before_restart
    dataset = Distiset.load_from_disk(tmp_path / "saved")["echo"]
    assert dataset["instruction"] == [f"row-{i}" for i in range(ROWS)]
    assert dataset["generation"] == [f"echo row-{i}" for i in range(ROWS)]
