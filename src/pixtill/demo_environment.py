"""What the demo changes around its run, and restores afterwards: quiet model libraries, one
torch thread for the tiny models, no ``datasets`` bars, and the progress display."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def quiet_model_libraries() -> Iterator[None]:
    """Silence transformers' and diffusers' loading bars and notices during the demo (the
    pipeline's own progress shows what happens); restore their settings afterwards."""
    with ExitStack() as stack:
        for name in ("transformers", "diffusers"):
            try:
                module: Any = __import__(f"{name}.utils", fromlist=["logging"]).logging
            except ImportError:
                continue
            verbosity = module.get_verbosity()
            bars = module.is_progress_bar_enabled()
            module.set_verbosity_error()
            module.disable_progress_bar()
            stack.callback(module.set_verbosity, verbosity)
            if bars:
                stack.callback(module.enable_progress_bar)
        yield


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch limited to ``count`` threads per operation, restored afterwards.

    For the tiny models only: their matrices are too small to gain from threads, and the
    steps run at the same time in worker threads, so torch's thread pools would fight over
    the cores (on 2 cores that makes the run several times slower).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """No "Saving the dataset" bars: the summary says where it went."""
    import datasets  # type: ignore[import-untyped,unused-ignore]

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def progress_observer(pipeline: Any, dataset_dir: Path, enabled: bool) -> Any:
    """The run's progress display (a `RichProgress`), or None when disabled or rich is missing."""
    if not enabled:
        return None
    try:
        from pixtill.pipeline.rich_progress import RichProgress
    except ImportError:
        return None
    return RichProgress(pipeline=pipeline, dataset_path=dataset_dir)
