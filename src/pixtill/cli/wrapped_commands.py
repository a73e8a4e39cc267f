"""The commands that wrap other pixtill modules: ``pixtill demo``, ``pixtill view`` and
``pixtill tiny-models`` (each imports its module only when run)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pixtill.cli.registry import EXIT_OK


def add_tiny_models_arguments(parser: argparse.ArgumentParser) -> None:
    """``pixtill tiny-models``'s options."""
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder to build them in (default: the pixtill cache folder)",
    )


def tiny_models(args: argparse.Namespace) -> int:
    """Build (or find) the tiny random models and print their folders; 0."""
    from pixtill.tiny_models import ensure_tiny_models

    vlm, text_to_image = ensure_tiny_models(args.output)
    print(f"Tiny vision-language model (random weights): {vlm}")
    print(f"Tiny text-to-image pipeline (random weights): {text_to_image}")
    print("Use them as TransformersLLM(model=...) and DiffusersImageGeneration(model=...).")
    return EXIT_OK


def _viewer_cli() -> Any:
    from pixtill.viewer import cli as viewer_cli

    return viewer_cli


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """``pixtill demo``'s options (`pixtill.demo.add_arguments`)."""
    from pixtill import demo

    demo.add_arguments(parser)


def demo(args: argparse.Namespace) -> int:
    """Run the demo (`pixtill.demo.run`)."""
    from pixtill import demo

    return demo.run(args)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """``pixtill view``'s options (`pixtill.viewer.cli`)."""
    _viewer_cli().add_arguments(parser)


def view(args: argparse.Namespace) -> int:
    """Serve or export a dataset (`pixtill.viewer.cli.run`)."""
    code: int = _viewer_cli().run(args)
    return code
