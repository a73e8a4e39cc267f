from __future__ import annotations

import pytest

from pixtill.utils import memory


def test_arena_limit_applies_once_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setenv("PIXTILL_MALLOC_ARENA_MAX", "0")
    assert memory.limit_malloc_arenas() is False
    monkeypatch.setenv("PIXTILL_MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is True  # this machine runs glibc
    monkeypatch.setenv("PIXTILL_MALLOC_ARENA_MAX", "0")
    assert memory.limit_malloc_arenas() is True  # already applied in this process
