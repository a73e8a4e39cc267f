"""The batch backends' state files: the ids of the provider batches submitted for one set of
requests (named by their hash), written the moment a batch is created so that a killed run
collects them instead of submitting (and paying) again, and deleted once their results are
stored in a pipeline's cache. They hold ids, never keys or data."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixtill.paths import write_atomically
from pixtill.utils import fast_json

__all__ = ["delete_states", "read_state", "write_state"]


def read_state(path: Path) -> dict[str, Any] | None:
    """The state at ``path``, or None when there is none (or it is unreadable)."""
    try:
        state = fast_json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("batches"), list):
        return None
    return state


def write_state(path: Path, *, provider: str, model: str, key: str, ids: list[str | None]) -> None:
    """Write (atomically) the batch ids submitted for the requests hashed as ``key``."""
    state = {
        "provider": provider,
        "model": model,
        "key": key,
        "batches": ids,
        "updated": time.time(),
    }
    write_atomically(path, fast_json.dumps(state))


def delete_states(paths: Iterable[Path]) -> int:
    """Delete the state files ``paths`` (those already gone are skipped); returns how many."""
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
