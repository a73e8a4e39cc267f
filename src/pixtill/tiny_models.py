"""Tiny, randomly initialised local models, built on the spot with no network.

`build_tiny_vlm` writes a LLaVA-style vision-language model (a 2-layer CLIP vision tower and a
2-layer Llama decoder, hidden size 32) and `build_tiny_text_to_image` a Stable Diffusion
pipeline (a tiny UNet, VAE and CLIP text encoder). Both come with tokenizers trained here on a
few sentences, so nothing is downloaded. Their weights are random: the VLM writes gibberish and
the image model paints noise. They exist to run the local backends end to end (the demo, the
tests) in a few seconds on a CPU.

`ensure_tiny_models()` builds both once under the pixtill cache folder and reuses them after.

The modules: `pixtill.tiny_tokenizers` (the tokenizers, trained here), `pixtill.tiny_model_builders`
(the `build_tiny_*` functions), and this one (build once into the cache, reuse after).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pixtill.paths import cache_dir
from pixtill.tiny_model_builders import (
    SEED,
    VLM_IMAGE_SIZE,
    VLM_IMAGE_TOKENS,
    VLM_PATCH_SIZE,
    build_tiny_clip,
    build_tiny_text_to_image,
    build_tiny_vlm,
)

# Bumped whenever what the builders write changes, so that a stale cached copy is rebuilt.
TINY_MODELS_VERSION = 1


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Writing model shards" bars while building; the previous setting is restored."""
    try:
        transformers_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:  # the builder itself says what to install
        transformers_logging = None
    if transformers_logging is None:
        yield
        return
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _build_once(target: Path, build: Callable[[Path], Path]) -> Path:
    """``build`` into a temporary sibling of ``target``, then rename it into place."""
    marker = target / ".pixtill-tiny-model"
    if marker.is_file() and marker.read_text().strip() == str(TINY_MODELS_VERSION):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _quiet_progress_bars():
            build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        (tmp / marker.name).write_text(f"{TINY_MODELS_VERSION}\n")
        if target.exists():
            # A stale or half-written copy (another version, or a crash before the marker).
            stale = target.with_name(f".{target.name}.stale.{os.getpid()}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first: use its copy.
            if not (marker.is_file() and marker.read_text().strip() == str(TINY_MODELS_VERSION)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_tiny_clip(cache: Path | None = None) -> Path:
    """The tiny CLIP folder, built on first use under ``cache`` (default:
    ``<pixtill cache>/tiny-models``) and reused afterwards."""
    root = Path(cache) if cache is not None else cache_dir() / "tiny-models"
    return _build_once(root / f"clip-v{TINY_MODELS_VERSION}", build_tiny_clip)


def ensure_tiny_models(cache: Path | None = None) -> tuple[Path, Path]:
    """The tiny VLM and text-to-image folders, built on first use under
    ``cache`` (default: ``<pixtill cache>/tiny-models``) and reused afterwards."""
    root = Path(cache) if cache is not None else cache_dir() / "tiny-models"
    vlm = _build_once(root / f"vlm-v{TINY_MODELS_VERSION}", build_tiny_vlm)
    t2i = _build_once(root / f"text-to-image-v{TINY_MODELS_VERSION}", build_tiny_text_to_image)
    return vlm, t2i


__all__ = [
    "SEED",
    "TINY_MODELS_VERSION",
    "VLM_IMAGE_SIZE",
    "VLM_IMAGE_TOKENS",
    "VLM_PATCH_SIZE",
    "build_tiny_clip",
    "build_tiny_text_to_image",
    "build_tiny_vlm",
    "ensure_tiny_clip",
    "ensure_tiny_models",
]
