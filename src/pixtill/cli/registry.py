"""The registry of ``pixtill`` subcommands and the exit codes their handlers return.

`COMMANDS` maps name -> (help, add_arguments, handler): a new command is one `register` call
and touches no other command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from pixtill.errors import PixtillError

AddArguments = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(PixtillError):
    """Bad command-line input or configuration: exit code 2."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: AddArguments
    handler: Handler


COMMANDS: dict[str, Command] = {}


def register(name: str, *, help: str, add_arguments: AddArguments, handler: Handler) -> None:
    """Add a subcommand (``pixtill <name> ...``)."""
    if name in COMMANDS:
        raise ValueError(f"a pixtill command named {name!r} is already registered")
    COMMANDS[name] = Command(help, add_arguments, handler)
