"""``pixtill run`` stopped by Ctrl-C (SIGINT) or ``kill`` (SIGTERM): one line saying so, the
conventional exit status, and a run that the same command resumes without asking again for
what was answered."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from http_servers import serve
from pixtill.cli import entry_point
from pixtill.cli.entry_point import main
from pixtill.cli.registry import COMMANDS, Command
from pixtill.distiset import Distiset

ROWS = 60
CONFIG = """\
pipeline:
  name: stopped
  cache_dir: {cache}
  steps:
    - name: load
      type: pixtill.steps.LoadDataFromDicts
      params:
        data: [{rows}]
    - name: ask
      type: pixtill.steps.tasks.TextGeneration
      params:
        llm:
          type: pixtill.models.llms.OpenAILLM
          params: {{model: m, base_url: "{base}/v1", max_concurrent_requests: 4}}
  connections:
    - {{from: load, to: ask}}
"""


class SlowServer:
    """Answers each chat after 0.2 s and counts what it answered."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self.enough = threading.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.Response:
        text = (await request.json())["messages"][-1]["content"]
        await asyncio.sleep(0.2)
        self.answered.append(text)
        if len(self.answered) >= 12:
            self.enough.set()
        message = {"role": "assistant", "content": f"ok {text}"}
        return web.json_response({"choices": [{"index": 0, "message": message}]})


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_run_says_so_and_resumes(tmp_path: Path, signum: int, code: int) -> None:
    server = SlowServer()
    with serve(server.app()) as base:
        config = tmp_path / "run.yaml"
        rows = ", ".join(f'{{instruction: "q{i}"}}' for i in range(ROWS))
        config.write_text(CONFIG.format(cache=tmp_path / "cache", rows=rows, base=base))
        pixtill = Path(sys.executable).with_name("pixtill")
        command = [str(pixtill), "run", "-c", str(config), "-o", str(tmp_path / "out")]
        command.append("--no-progress")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert server.enough.wait(60), "the run never got going"
            process.send_signal(signum)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == code, err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("pixtill: interrupted"), err
        assert "the same command resumes" in lines[-1]
        first = set(server.answered)
        server.answered.clear()
        start = time.monotonic()
        again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - start < 120
    # what the first run got an answer for (and stored) is not asked again; at most the
    # requests that were on the wire when it stopped are
    assert len(set(server.answered) & first) <= 4
    rows_out = list(Distiset.load_from_disk(tmp_path / "out")["ask"])
    assert sorted(row["instruction"] for row in rows_out) == sorted(f"q{i}" for i in range(ROWS))
    assert all(row["generation"] == f"ok {row['instruction']}" for row in rows_out)


# -- the stop itself, without a subprocess or a timing: the signal is raised in-process at a
# chosen point (`signal.raise_signal` runs the Python handler before it returns) ------------


def _main_with(
    handler: Callable[[argparse.Namespace], int], monkeypatch: pytest.MonkeyPatch
) -> int:
    monkeypatch.setitem(COMMANDS, "stopme", Command("test", lambda parser: None, handler))
    return main(["stopme"])


def test_a_sigterm_swallowed_where_exceptions_are_ignored_still_exits_143(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hunt's race: the stop lands in a weakref callback or ``__del__``, where Python
    prints "Exception ignored" and goes on; the command must not then exit 0."""

    def swallowing(args: argparse.Namespace) -> int:
        with contextlib.suppress(KeyboardInterrupt):  # what a `__del__` does with it
            signal.raise_signal(signal.SIGTERM)
        return 0

    assert _main_with(swallowing, monkeypatch) == 143
    assert capsys.readouterr().err.strip() == "pixtill: interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_a_sigterm_during_an_event_loop_cancels_the_run_without_raising_in_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    async def run() -> None:
        worker = asyncio.create_task(asyncio.sleep(3600))
        signal.raise_signal(signal.SIGTERM)
        seen.append("the handler raised nothing here")
        try:
            await worker
        finally:
            worker.cancel()
            seen.append("cleaned up")

    def handler(args: argparse.Namespace) -> int:
        asyncio.run(run())
        seen.append("ran to the end")
        return 0

    assert _main_with(handler, monkeypatch) == 143
    assert seen == ["the handler raised nothing here", "cleaned up"]
    assert capsys.readouterr().err.strip() == "pixtill: interrupted (SIGTERM)"


def test_a_sigterm_stops_even_when_sigint_is_ignored(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shell's background job ignores SIGINT; ``kill`` must still stop it."""
    seen: list[str] = []

    def handler(args: argparse.Namespace) -> int:
        signal.raise_signal(signal.SIGTERM)
        seen.append("went on")
        return 0

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert _main_with(handler, monkeypatch) == 143
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == []
    assert capsys.readouterr().err.strip() == "pixtill: interrupted (SIGTERM)"


def test_a_step_stuck_in_a_worker_thread_exits_at_once_after_the_grace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local model's batch in a worker thread cannot be cancelled: the trial run of a
    diffusion model on 2 CPUs ignored SIGTERM for over 10 minutes. After the grace the
    command exits at once (as a SIGKILL would), saying so."""
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    monkeypatch.setattr(entry_point, "_force_exit", fake_exit)
    monkeypatch.setattr(entry_point, "STOP_GRACE_S", 0.0)

    def stuck(args: argparse.Namespace) -> int:
        with contextlib.suppress(KeyboardInterrupt):  # the worker thread does not see it
            signal.raise_signal(signal.SIGTERM)
        assert exited.wait(30)  # the real exit would end the process here
        return 0

    _main_with(stuck, monkeypatch)
    assert codes == [143]
    err = capsys.readouterr().err
    assert "pixtill: interrupted (SIGTERM) and still busy 0 s later" in err
    assert "stopped at once" in err


def test_a_second_sigterm_exits_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    codes: list[int] = []
    monkeypatch.setattr(entry_point, "_force_exit", codes.append)

    def stuck(args: argparse.Namespace) -> int:
        for _ in range(2):
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        return 0

    _main_with(stuck, monkeypatch)
    assert codes == [143]
    assert "interrupted (SIGTERM) and asked again: stopped at once" in capsys.readouterr().err
