"""Hostile configuration files are refused with a clear error, in well under a second."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pixtill.pipeline import Pipeline
from pixtill.pipeline.config_file import PipelineConfigError
from pixtill.pipeline.safe_yaml import MAX_BYTES, MAX_DEPTH

HEADER = "pixtill_version: '0.1.0'\npipeline:\n  name: bomb\n"


def _alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """ "Billion laughs": each anchor lists the previous one ``fan`` times."""
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def _refused(path: Path, match: str) -> None:
    started = time.perf_counter()
    with pytest.raises(PipelineConfigError, match=match):
        Pipeline.from_file(path)
    # A guard against the minutes such files used to cost, not a benchmark: a loaded shared
    # machine must not fail it (unloaded, each case takes a few milliseconds to ~0.3 s).
    assert time.perf_counter() - started < 5


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb() + HEADER + "  steps: [*lol9]\n  connections: []\n")
    _refused(path, "expands to more than .* values .*alias")


def test_an_alias_bomb_inside_step_parameters_is_refused(tmp_path: Path) -> None:
    bomb = _alias_bomb(levels=7, fan=10)
    path = tmp_path / "params.yaml"
    path.write_text(
        bomb
        + HEADER
        + "  steps:\n    - name: load\n      type: pixtill.steps.LoadDataFromDicts\n"
        + "      params: {data: [{x: *lol7}]}\n  connections: []\n"
    )
    _refused(path, "alias")


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(HEADER + "  steps: &s [*s]\n")
    _refused(path, "alias refers to the value that contains it")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("style", ["lists", "mappings"])
def test_excessive_nesting_is_refused(tmp_path: Path, suffix: str, style: str) -> None:
    depth = 50_000
    inner = "[" * depth + "]" * depth if style == "lists" else '{"a":' * depth + "1" + "}" * depth
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"pipeline": {"name": "deep", "steps": ' + inner + "}}")
    _refused(path, f"nesting deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_an_excessive_file_is_refused_before_it_is_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"huge{suffix}"
    with path.open("w") as file:
        file.write(HEADER if suffix == ".yaml" else "")
        file.seek(MAX_BYTES + 10)
        file.write("\n")
    _refused(path, f"limited to {MAX_BYTES:,} bytes")


def test_many_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.json"
    data = {"pipeline": {"name": "wide", "steps": [[0] * 1000] * 300}}
    path.write_text(json.dumps(data))
    _refused(path, "more than .* values")


def test_ordinary_anchors_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        # Top-level keys other than pixtill's are refused, except ``x-`` ones that hold anchors.
        "x-rows: &rows [{instruction: a}, {instruction: b}]\n"
        + HEADER
        + "  steps:\n    - name: load\n      type: pixtill.steps.LoadDataFromDicts\n"
        + "      params: {data: *rows}\n  connections: []\n"
    )
    pipeline = Pipeline.from_file(path)
    assert pipeline.steps["load"].data == [{"instruction": "a"}, {"instruction": "b"}]  # type: ignore[attr-defined]
