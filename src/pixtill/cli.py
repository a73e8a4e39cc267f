"""The ``pixtill`` command line.

Subcommands live in `COMMANDS`, a registry of name -> (help, add_arguments, handler): a new
command is one `register` call and touches no other command. A handler returns the exit code:
0 on success, 1 when the run failed, 2 for a usage or configuration problem. Errors are one
line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pixtill import __version__
from pixtill.errors import PixtillError
from pixtill.pipeline import Pipeline
from pixtill.pipeline.executors import Executor, LocalExecutor
from pixtill.run_report import FailureSummary
from pixtill.steps.base import _Step
from pixtill.steps.tasks.base import _Task

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


# -- main --------------------------------------------------------------------------------------


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
    try:
        return command.handler(args)
    except KeyboardInterrupt:
        print("pixtill: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        return _report(args, exc, EXIT_USAGE)
    except (PixtillError, OSError) as exc:
        return _report(args, exc, EXIT_FAILED)
    except Exception as exc:  # not ours: name the type, and point at --debug
        return _report(args, exc, EXIT_FAILED, unexpected=True)


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


# -- shared helpers ----------------------------------------------------------------------------


def load_config(path: str, allow: Sequence[str]) -> Pipeline:
    """Load a pipeline file; any problem with it is a `UsageError` (exit code 2)."""
    from pixtill.pipeline.config_file import PipelineConfigError

    if allow:
        # As `python -m` would: modules beside the user are importable for `--allow`.
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
    try:
        return Pipeline.from_file(path, allow=allow)
    except PipelineConfigError as exc:
        raise UsageError(str(exc)) from exc


def parse_params(pipeline: Pipeline, assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["caption.llm.generation_kwargs.temperature=0.2"]`` -> the ``parameters`` of `run`.

    Values are YAML (numbers, booleans, lists, ``null``); a value that does not fit its field as
    YAML is tried as the plain string. Every value is validated against its field here, so a
    typo fails before anything runs. Setting a key inside a dict field (``generation_kwargs``)
    keeps the dict's other keys.
    """
    parameters: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise UsageError(f"--param {assignment!r}: expected step.field=value")
        step_name, path = parts[0], parts[1:]
        if step_name not in pipeline.steps:
            raise UsageError(
                f"--param {assignment!r}: no step {step_name!r}; steps: {sorted(pipeline.steps)}"
            )
        target: dict[str, Any] = parameters.setdefault(step_name, {})
        model: BaseModel = pipeline.steps[step_name]
        where = step_name
        while True:
            field = path.pop(0)
            fields = type(model).model_fields
            if field not in fields:
                raise UsageError(
                    f"--param {assignment!r}: {where} ({type(model).__name__}) has no field "
                    f"{field!r}; fields: {sorted(fields)}"
                )
            current = getattr(model, field)
            if path and isinstance(current, BaseModel):
                target = target.setdefault(field, {})
                if not isinstance(target, dict):
                    raise UsageError(f"--param {assignment!r}: {where}.{field} set twice")
                model, where = current, f"{where}.{field}"
                continue
            break
        if path and not isinstance(current, Mapping):
            raise UsageError(
                f"--param {assignment!r}: {where}.{field} is a {type(current).__name__}, "
                f"not a model or a dict, so it has no {'.'.join(path)!r}"
            )
        previous = target.get(field)
        base = previous if isinstance(previous, dict) else current
        value = _coerce(model, field, path, base, raw, assignment)
        target[field] = value
    return parameters


def _coerce(
    model: BaseModel, field: str, path: list[str], base: Any, raw: str, assignment: str
) -> Any:
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        parsed = raw
    candidates = [parsed] if parsed == raw else [parsed, raw]
    error: ValidationError | None = None
    for candidate in candidates:
        value = _set_in(base, path, candidate) if path else candidate
        try:
            return _validated(model, field, value)
        except ValidationError as exc:
            error = error or exc
    assert error is not None
    details = "; ".join(" ".join(str(e["msg"]).split()) for e in error.errors(include_url=False))
    raise UsageError(f"--param {assignment!r}: {details}")


def _set_in(base: Any, path: list[str], value: Any) -> dict[str, Any]:
    """A copy of dict ``base`` with ``value`` at ``path`` (intermediate dicts created)."""
    out = dict(base) if isinstance(base, Mapping) else {}
    head, rest = path[0], path[1:]
    out[head] = _set_in(out.get(head), rest, value) if rest else value
    return out


def _validated(model: BaseModel, field: str, value: Any) -> Any:
    """The value as the field would store it (validation on a copy; the model is untouched)."""
    probe = model.model_copy()
    type(model).__pydantic_validator__.validate_assignment(probe, field, value)
    return getattr(probe, field)


def _add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", required=True, metavar="FILE", help="pipeline file (.yaml/.yml/.json)"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="DOTTED.CLASS",
        help="also load this class from the file (exact dotted path; repeatable). "
        "Only pixtill's own classes load otherwise.",
    )


# -- pixtill run -------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_argument(parser)
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="STEP.FIELD=VALUE",
        help="override a step field, e.g. caption.llm.generation_kwargs.temperature=0.2 "
        "(value parsed as YAML; repeatable)",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="where the dataset is saved (default: ./pixtill-output/<pipeline name>)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="send every request again (ignore the cache)"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (the summary still prints)"
    )
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where the rows run: this process (default) or a Ray cluster (the 'ray' extra)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: the cluster to join ('auto', 'ray://host:10001'); "
        "default: start a local Ray for the run",
    )
    parser.add_argument(
        "--max-failure-rate",
        type=_failure_rate,
        default=0.0,
        metavar="RATE",
        help="accept up to this share of failed rows (0-1, e.g. 0.05) and still exit 0 "
        "(default 0: any failed row makes the exit status 1; the dataset is saved either way)",
    )


def _failure_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return rate


def _run(args: argparse.Namespace) -> int:
    from pixtill.pipeline.rich_progress import RichProgress

    pipeline = load_config(args.config, args.allow)
    parameters = parse_params(pipeline, args.param)
    output = Path(args.output) if args.output else Path("pixtill-output") / pipeline.name
    output = output.absolute()
    progress = RichProgress(pipeline=pipeline, dataset_path=output, bars=not args.no_progress)
    with progress:
        distiset = pipeline.run(
            parameters=parameters,
            use_cache=not args.no_cache,
            output_dir=output,  # written once, in place: save_to_disk below copies nothing
            observer=progress,
            tune_process=True,  # the CLI owns its process (see pixtill.pipeline.runtime)
            executor=_executor(args),
        )
    distiset.save_to_disk(output)  # the summary above already says how to load it
    print(f"Saved the dataset to {output}")
    print(f"Look at it in your browser: pixtill view {output}")
    return _failure_status(distiset.failures, args.max_failure_rate)


def _executor(args: argparse.Namespace) -> Executor:
    if args.executor == "ray":
        from pixtill.pipeline.executors.ray_executor import RayExecutor

        return RayExecutor(address=args.ray_address)
    return LocalExecutor()


def _failure_status(failures: FailureSummary, max_rate: float) -> int:
    """Print the failed rows grouped by cause (stderr); exit 1 when their share is over
    ``max_rate``."""
    if not failures:
        return EXIT_OK
    print(failures.format(), file=sys.stderr)
    if failures.failure_rate <= max_rate:
        print(f"(accepted: at most {max_rate:.1%} may fail, --max-failure-rate)", file=sys.stderr)
        return EXIT_OK
    print(
        f"pixtill run: error: {failures.failed} of {failures.rows} rows failed "
        f"({failures.failure_rate:.1%}); the first cause: step {failures.groups[0].step!r}: "
        f"{failures.groups[0].cause} (accept a share with --max-failure-rate)",
        file=sys.stderr,
    )
    return EXIT_FAILED


# -- pixtill info ------------------------------------------------------------------------------


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_argument(parser)


def _columns(columns: Mapping[str, bool], mappings: Mapping[str, str]) -> str:
    names = []
    for column, required in columns.items():
        name = column if column not in mappings else f"{column} (as {mappings[column]})"
        names.append(name if required else f"{name} (optional)")
    return ", ".join(names) or "-"


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_step(step: _Step) -> list[str]:
    """Lines ``pixtill info`` prints for one step (models are not loaded)."""
    lines = [
        f"  {step.name}: {_class_path(step)}",
        f"      inputs:  {_columns(step.get_inputs(), step.input_mappings)}",
        f"      outputs: {_columns(step.get_outputs(), step.output_mappings)}",
    ]
    if isinstance(step, _Task):
        model = step.model
        try:
            model_name = model.model_name
        except Exception as exc:  # a backend whose name needs loading
            model_name = f"<unknown until loaded: {type(exc).__name__}>"
        lines.append(f"      model:   {model_name} ({_class_path(model)})")
    return lines


def _info(args: argparse.Namespace) -> int:
    pipeline = load_config(args.config, args.allow)
    print(f"Pipeline {pipeline.name!r} ({args.config})")
    if pipeline.description:
        print(f"  {pipeline.description}")
    try:
        order = pipeline.topological_order()
    except PixtillError:
        order = list(pipeline.steps)
    print(f"Steps ({len(order)}):")
    for name in order:
        for line in describe_step(pipeline.steps[name]):
            print(line)
    print("Connections:")
    for upstream in order:
        successors = pipeline.successors(upstream)
        if successors:
            print(f"  {upstream} -> {', '.join(successors)}")
    if not pipeline.edges:
        print("  (none)")
    print(f"Cache folder: {pipeline.cache_dir}")
    return EXIT_OK


register(
    "run",
    help="run a pipeline file and save the dataset",
    add_arguments=_run_arguments,
    handler=_run,
)
register(
    "info",
    help="show a pipeline file's steps and connections (loads no model)",
    add_arguments=_info_arguments,
    handler=_info,
)


def _tiny_models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder to build them in (default: the pixtill cache folder)",
    )


def _tiny_models(args: argparse.Namespace) -> int:
    from pixtill.tiny_models import ensure_tiny_models

    vlm, text_to_image = ensure_tiny_models(args.output)
    print(f"Tiny vision-language model (random weights): {vlm}")
    print(f"Tiny text-to-image pipeline (random weights): {text_to_image}")
    print("Use them as TransformersLLM(model=...) and DiffusersImageGeneration(model=...).")
    return EXIT_OK


def _viewer_cli() -> Any:
    from pixtill.viewer import cli as viewer_cli

    return viewer_cli


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from pixtill import demo

    demo.add_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from pixtill import demo

    return demo.run(args)


register(
    "demo",
    help="caption, question and repaint sample images offline, and write the dataset",
    add_arguments=_demo_arguments,
    handler=_demo,
)
register(
    "view",
    help="look at a dataset in the browser (a local page, or --export a static folder)",
    add_arguments=lambda parser: _viewer_cli().add_arguments(parser),
    handler=lambda args: _viewer_cli().run(args),
)
register(
    "tiny-models",
    help="build the tiny random offline models (no network) and print where they are",
    add_arguments=_tiny_models_arguments,
    handler=_tiny_models,
)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
