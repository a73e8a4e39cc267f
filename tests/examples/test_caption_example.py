from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import pytest

from pixtill.distiset import Distiset

EXAMPLE = Path(__file__).parents[2] / "examples" / "caption_sample_images.py"


def test_example_runs_offline_and_writes_a_dataset(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--output", str(tmp_path)])
    with caplog.at_level(logging.WARNING):
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    # The example declares its steps in a pipeline: no "hasn't received a pipeline" warning.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    rows = Distiset.load_from_disk(tmp_path / "dataset")["paint"]
    assert len(rows) == 6
    for row in rows:
        assert "mostly" in row["caption"] and "mostly" in row["answer"]
        assert row["image"].size[1] == 120  # the sample image, as a real image column
        assert Path(row["image_path"]).exists()
        assert row["caption_model"] == "example/pixel-stats"
        assert row["image_model"] == "example/caption-painter"
    # The red circle is described as red; the painter painted what the caption named.
    red = [row for row in rows if row["shape_hint"] == "circle" and "red" in row["caption"]]
    assert red
    assert "dataset:" in capsys.readouterr().out
