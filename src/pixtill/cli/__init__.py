"""The ``pixtill`` command line.

Subcommands live in `COMMANDS`, a registry of name -> (help, add_arguments, handler): a new
command is one `register` call and touches no other command. A handler returns the exit code:
0 on success, 1 when the run failed, 2 for a usage or configuration problem. Errors are one
line on stderr (``--debug`` adds the traceback).

The modules: `registry` (the commands and exit codes), `entry_point` (the parser and `main`),
`pipeline_options` (``--config``/``--allow``/``--param``), one module per command
(`run_command`, `info_command`) and `wrapped_commands` (``demo``, ``view``, ``tiny-models``).
The registrations below keep the order ``pixtill --help`` lists them in.
"""

from __future__ import annotations

from pixtill.cli import info_command, run_command, wrapped_commands
from pixtill.cli.entry_point import build_parser, main
from pixtill.cli.info_command import describe_step
from pixtill.cli.pipeline_options import load_config, parse_params
from pixtill.cli.registry import (
    COMMANDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AddArguments,
    Command,
    Handler,
    UsageError,
    register,
)

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "AddArguments",
    "Command",
    "Handler",
    "UsageError",
    "build_parser",
    "describe_step",
    "load_config",
    "main",
    "parse_params",
    "register",
]

register(
    "run",
    help="run a pipeline file and save the dataset",
    add_arguments=run_command.add_arguments,
    handler=run_command.handle,
)
register(
    "info",
    help="show a pipeline file's steps and connections (loads no model)",
    add_arguments=info_command.add_arguments,
    handler=info_command.handle,
)
register(
    "demo",
    help="caption, question and repaint sample images offline, and write the dataset",
    add_arguments=wrapped_commands.add_demo_arguments,
    handler=wrapped_commands.demo,
)
register(
    "view",
    help="look at a dataset in the browser (a local page, or --export a static folder)",
    add_arguments=wrapped_commands.add_view_arguments,
    handler=wrapped_commands.view,
)
register(
    "tiny-models",
    help="build the tiny random offline models (no network) and print where they are",
    add_arguments=wrapped_commands.add_tiny_models_arguments,
    handler=wrapped_commands.tiny_models,
)
