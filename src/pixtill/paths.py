"""Where pixtill keeps files it owns (caches, artifacts, tiny offline models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$PIXTILL_CACHE_DIR``, else ``$XDG_CACHE_HOME/pixtill``, else ``~/.cache/pixtill``."""
    explicit = os.environ.get("PIXTILL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pixtill"


def data_dir() -> Path:
    """Where run outputs go by default, apart from the cache (clearing a cache never deletes a
    dataset): ``$PIXTILL_DATA_DIR``, else ``$XDG_DATA_HOME/pixtill``, else
    ``~/.local/share/pixtill``."""
    explicit = os.environ.get("PIXTILL_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "pixtill"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
