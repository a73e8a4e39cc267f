"""Run outputs written without an explicit ``output_dir`` go to a per-test folder, never to the
user's data folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIXTILL_DATA_DIR", str(tmp_path / "pixtill-data"))
