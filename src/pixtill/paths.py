"""Where pixtill keeps files it owns (caches, artifacts, tiny offline models)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pixtill.errors import PixtillError


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


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")


class UnsafeNameError(PixtillError, ValueError):
    """A name that becomes a folder name (a pipeline's) could leave its parent folder."""


def check_name(name: object, what: str = "pipeline name") -> str:
    """``name`` itself when it is safe as one folder name, else `UnsafeNameError` naming it.

    Safe: 1-128 characters from letters, digits, ``_``, ``-`` and ``.``, not starting with
    ``.`` (so never ``.``, ``..`` or a hidden folder) and never a path separator; the same
    alphabet as step names plus the dot (``v1.2``).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnsafeNameError(
            f"{what} {name!r} may only hold letters, digits, '_', '-' and '.' (1-128 "
            "characters, not starting with '.'): it names a folder, so it can hold no path "
            "separator or '..'"
        )
    return name


def child_path(parent: Path, name: str, what: str = "pipeline name") -> Path:
    """``parent / name`` after checking ``name`` (`check_name`) and that the result, with
    ``..`` and ``.`` folded, is a folder strictly inside ``parent``; `UnsafeNameError` if not."""
    check_name(name, what)
    path = parent / name
    # Defence in depth (the name check already forbids separators and '..'). Lexical on
    # purpose: a user's own symlink ``pixtill-output/name -> /big/disk`` stays allowed.
    inside = Path(os.path.normpath(path))
    if inside.parent != Path(os.path.normpath(parent)):
        raise UnsafeNameError(f"{what} {name!r} would put files outside {str(parent)!r}")
    return path
