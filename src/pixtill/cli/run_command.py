"""``pixtill run``: run a pipeline file, save the dataset, and set the exit status from the
share of failed rows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixtill.cli.pipeline_options import add_config_argument, load_config, parse_params
from pixtill.cli.registry import EXIT_FAILED, EXIT_OK
from pixtill.paths import child_path
from pixtill.pipeline.executors import Executor, LocalExecutor
from pixtill.run_report import FailureSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``pixtill run``'s options."""
    add_config_argument(parser)
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


def handle(args: argparse.Namespace) -> int:
    """Run the pipeline file, save the dataset; 0, or 1 when too many rows failed."""
    from pixtill.pipeline.rich_progress import RichProgress

    pipeline = load_config(args.config, args.allow)
    parameters = parse_params(pipeline, args.param)
    output = Path(args.output) if args.output else child_path(Path("pixtill-output"), pipeline.name)
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
            log_failures=False,  # printed below, once, wherever logging goes
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
