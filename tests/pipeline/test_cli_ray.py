"""``pixtill run --executor ray`` saves the dataset ``--executor local`` saves.

The CLI runs in a child process (it tunes its own process, see `pixtill.pipeline.runtime`)
that starts a local Ray with 2 CPUs before calling the CLI's ``main``, so the run uses that
Ray, and shuts it down afterwards.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from doubles import DescribingLLM
from pixtill.distiset import Distiset
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration, TextGenerationWithImage
from sample_images import image_bytes

pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parents[1]
ALLOW = ["--allow", "doubles.DescribingLLM"]

# Starts a local Ray (2 CPUs, no dashboard), runs the CLI, shuts Ray down; exits with its code.
CHILD = """
import sys
import ray
from pixtill.cli import main

ray.init(num_cpus=2, include_dashboard=False)
try:
    code = main(sys.argv[1:])
finally:
    ray.shutdown()
sys.exit(code)
"""


def _data_url(width: int) -> str:
    return "data:image/png;base64," + base64.b64encode(image_bytes(width, 5)).decode()


def _config(root: Path) -> Path:
    data = [{"instruction": f"question {i}", "image": _data_url(6 + i % 3)} for i in range(9)]
    with Pipeline(name="cli-ray", cache_dir=root / "cache") as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=4)
        look = TextGenerationWithImage(
            name="look", llm=DescribingLLM(), output_mappings={"generation": "caption"}
        )
        ask = TextGeneration(
            name="ask",
            llm=DescribingLLM(model_id="test/other"),
            output_mappings={"generation": "answer", "model_name": "answer_model"},
        )
        load >> [look, ask]
    return pipeline.dump(root / "pipeline.yaml")


def _cli(args: list[str], *, ray: bool) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-c", CHILD] if ray else [sys.executable, "-m", "pixtill"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    distiset = Distiset.load_from_disk(path)
    return {leaf: distiset[leaf].with_format("arrow")[:].to_pylist() for leaf in distiset}


def test_run_with_the_ray_executor_saves_what_the_local_executor_saves(tmp_path: Path) -> None:
    config = _config(tmp_path)
    common = ["run", "-c", str(config), *ALLOW, "--no-cache", "--no-progress"]
    local = _cli([*common, "-o", str(tmp_path / "local")], ray=False)
    assert local.returncode == 0, local.stderr
    on_ray = _cli([*common, "--executor", "ray", "-o", str(tmp_path / "ray")], ray=True)
    assert on_ray.returncode == 0, on_ray.stderr
    assert f"Saved the dataset to {tmp_path / 'ray'}" in on_ray.stdout

    expected = _rows(tmp_path / "local")
    assert sorted(expected) == ["ask", "look"]
    assert len(expected["look"]) == 9
    assert expected["look"][0]["caption"].startswith("[0] saw")
    assert _rows(tmp_path / "ray") == expected  # same rows, same order, images and metadata
    # Two ranks on the local Ray each wrote their part.
    assert sorted(p.name for p in (tmp_path / "ray" / "look").glob("*.arrow")) == [
        "rank00000-of-00002-data-00000.arrow",
        "rank00001-of-00002-data-00000.arrow",
    ]
