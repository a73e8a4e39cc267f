from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "caption_sample_images.py"


def test_example_runs_offline_and_writes_a_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--output", str(tmp_path)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    rows = [json.loads(line) for line in (tmp_path / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert "mostly" in row["caption"] and "mostly" in row["answer"]
        assert Path(row["image"]).exists()
        assert Path(row["image_path"]).exists()
        assert row["caption_model"] == "example/pixel-stats"
        assert row["image_model"] == "example/caption-painter"
    # The red circle is described as red; the painter painted what the caption named.
    assert "red" in rows[0]["caption"]
    assert "dataset:" in capsys.readouterr().out
