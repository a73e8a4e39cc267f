"""The ``pixtill`` argument parser and `main`: dispatch to a registered command, and turn its
errors into one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from pixtill import __version__
from pixtill.cli.registry import COMMANDS, EXIT_FAILED, EXIT_USAGE, UsageError
from pixtill.errors import PixtillError

STOP_GRACE_S = 10.0
"""Seconds a stopped command may take to wind down (a local model's batch in a worker thread
cannot be cut short) before it exits at once; a second SIGTERM does not wait."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixtill",
        description="Build multimodal datasets with vision-language and image-generation models.",
    )
    parser.add_argument("--version", action="version", version=f"pixtill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        sub.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors",
        )
        command.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command = COMMANDS[args.command]
    stopped_by: list[int] = []
    resumable = args.command == "run" and not getattr(args, "no_cache", True)
    hint = "; answered rows are cached: the same command resumes" if resumable else ""
    try:
        with _terminate_as_interrupt(stopped_by, hint):
            code = command.handler(args)
        if not stopped_by:
            return code
        # The stop request landed where an exception is swallowed (a weakref callback, a
        # `__del__`, "Exception ignored"): the command ran on, but a stop was still asked for.
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        print(f"pixtill: interrupted{' (SIGTERM)' if stopped_by else ''}{hint}", file=sys.stderr)
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    except UsageError as exc:
        return _report(args, exc, EXIT_USAGE)
    except (PixtillError, OSError) as exc:
        return _report(args, exc, EXIT_FAILED)
    except Exception as exc:  # not ours: name the type, and point at --debug
        return _report(args, exc, EXIT_FAILED, unexpected=True)


@contextmanager
def _terminate_as_interrupt(stopped_by: list[int], hint: str) -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's stop) stops a command as Ctrl-C does: workers are
    stopped, finished shards and cached answers stay, one line is printed. The previous
    handler comes back afterwards; outside the main thread nothing changes.

    The handler records the request and hands it to whatever handles SIGINT now rather than
    raising itself: while a pipeline's event loop runs that is `asyncio.Runner`'s handler,
    which cancels the run's main task (no exception is raised from the handler, so none can
    be swallowed inside a weakref callback or a ``__del__``); the run stops its workers,
    keeps what it wrote and ends in `KeyboardInterrupt`. Elsewhere it is Python's default
    handler, which raises `KeyboardInterrupt`; should that one be swallowed, `main` still
    sees the recorded request when the command returns, and exits 143.

    A step busy in a worker thread (a local model's batch: minutes for a diffusion model on a
    CPU) cannot be cancelled, so the command exits at once `STOP_GRACE_S` seconds after the
    first SIGTERM, or at a second one, as a SIGKILL would stop it: answered rows are in the
    cache, and finished shards on disk (a resumed run skips both)."""
    timers: list[threading.Timer] = []

    def give_up(signum: int, why: str) -> None:
        name = signal.Signals(signum).name
        print(f"pixtill: interrupted ({name}) and {why}: stopped at once{hint}", file=sys.stderr)
        _force_exit(128 + signum)

    def interrupt(signum: int, frame: object) -> None:
        stopped_by.append(signum)
        if len(stopped_by) > 1:
            give_up(signum, "asked again")
            return
        why = f"still busy {STOP_GRACE_S:g} s later (a local model cannot stop mid-batch)"
        timer = threading.Timer(STOP_GRACE_S, give_up, args=(signum, why))
        timer.daemon = True
        timers.append(timer)
        timer.start()
        on_sigint = signal.getsignal(signal.SIGINT)
        if callable(on_sigint):
            on_sigint(signal.SIGINT, frame)  # type: ignore[arg-type]
        else:  # SIGINT ignored (a background job of a shell) or default: stop here
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. main() called from a worker)
        yield
        return
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        signal.signal(signal.SIGTERM, previous)


def _force_exit(code: int) -> None:
    """Exit now, without unwinding the threads still busy (os._exit: the way out of a
    blocked worker); the output written so far is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report(
    args: argparse.Namespace, exc: BaseException, code: int, *, unexpected: bool = False
) -> int:
    """One line on stderr (the traceback first with ``--debug``); returns ``code``."""
    debug = getattr(args, "debug", False)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if unexpected:
        message = f"{type(exc).__name__}: {message}"
        if not debug:
            message += " (run with --debug for the traceback)"
    print(f"pixtill {args.command}: error: {message}", file=sys.stderr)
    return code
