"""torch for the local backends, imported only when a model loads: install hints, device and
dtype choice, the dtype keyword each library release expects, and giving accelerator memory
back. Shared by `TransformersLLM`, the diffusers backends, vLLM and `CLIPScore`."""

from __future__ import annotations

import gc
import importlib
from typing import Any, Literal

__all__ = [
    "dtype_keyword",
    "free_accelerator_memory",
    "import_module",
    "import_torch",
    "resolve_device",
    "resolve_dtype",
]

_INSTALL_HINT = (
    "install torch first (e.g. `pip install torch==2.13.0`, or the build for your accelerator "
    "from pytorch.org), then `pip install 'pixtill[local]'`"
)

_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}


def import_module(name: str, needed_by: str = "local models") -> Any:
    """The module ``name``, or an ImportError that says how to install the local extras.

    Typed as ``Any``: torch, transformers and diffusers are only partly typed.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{needed_by} need(s) {name}: {_INSTALL_HINT} ({exc})") from exc


def import_torch() -> Any:
    """``torch``, or an ImportError that says how to install it."""
    return import_module("torch")


def resolve_device(device: str | None) -> str:
    """``device`` as given, else the best available: cuda, then mps, then cpu."""
    if device:
        return device
    torch = import_torch()
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(torch_dtype: str, device: str) -> Any:
    """The ``torch.dtype`` for a name ("float16", "bf16", ...). ``"auto"`` picks bfloat16 on a
    GPU that supports it (else float16), float16 on Apple silicon and float32 on a CPU."""
    torch = import_torch()
    name = torch_dtype.strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    name = _DTYPE_ALIASES.get(name, name).removeprefix("torch.")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"unknown torch_dtype {torch_dtype!r} (use 'auto', 'float32', 'float16' or 'bfloat16')"
        )
    return dtype


def free_accelerator_memory(device: str | None) -> None:
    """Collect garbage, then give cached accelerator memory back to the driver."""
    gc.collect()
    if device is None:
        return
    torch = import_torch()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.startswith("mps"):
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()


def dtype_keyword(library: Literal["transformers", "diffusers"]) -> str:
    """The ``from_pretrained`` keyword that carries the dtype in the installed ``library``.

    Both libraries renamed ``torch_dtype`` to ``dtype`` and warn on the old name: transformers
    in 4.56, diffusers when it added ``deprecation_utils._resolve_dtype``. Returns ``"dtype"``
    or ``"torch_dtype"``; raises ImportError (with the install hint) when ``library`` is missing
    and ValueError for any other library name.
    """
    if library == "transformers":
        from packaging.version import Version

        version = import_module("transformers").__version__
        return "dtype" if Version(version) >= Version("4.56") else "torch_dtype"
    if library == "diffusers":
        deprecation_utils = import_module("diffusers.utils.deprecation_utils")
        return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    raise ValueError(f"dtype_keyword: unknown library {library!r} (transformers or diffusers)")
