"""The same pipeline on Ray as on one process; a killed worker or driver loses no row.

A local Ray (``num_cpus=2``) is started once for the module. Workers import the test doubles
from ``tests/`` (put on their ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from doubles import DescribingLLM
from pixtill.distiset import Distiset
from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import TextGeneration, TextGenerationWithImage
from pixtill.steps.typing import StepOutput
from sample_images import image_bytes

ray = pytest.importorskip("ray")
from pixtill.pipeline.executors.ray_executor import RayExecutor  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    path = os.pathsep.join([str(TESTS), str(TESTS / "pipeline")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


class Tag(Step):
    """A plain step after the join: marks every row."""

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "tagged": True} for row in inputs]


def _branch_and_join(root: Path, rows: int = 23) -> Pipeline:
    data = [
        {"instruction": f"question {i}", "image": image_bytes(6 + i % 4, 5)} for i in range(rows)
    ]
    with Pipeline(name="branches", cache_dir=root / "cache") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=4)
        look = TextGenerationWithImage(
            name="look", llm=DescribingLLM(), output_mappings={"generation": "caption"}
        )
        ask = TextGeneration(
            name="ask",
            llm=DescribingLLM(model_id="test/other"),
            output_mappings={"generation": "answer", "model_name": "answer_model"},
        )
        load >> [look, ask] >> Tag(name="tag")
    return pipeline


def _table(distiset: Distiset, leaf: str) -> list[dict[str, Any]]:
    return list(distiset[leaf].with_format("arrow")[:].to_pylist())


def test_ray_and_local_give_the_same_dataset(cluster: str, tmp_path: Path) -> None:
    local = _branch_and_join(tmp_path / "local").run(show_progress=False, use_cache=False)
    on_ray = _branch_and_join(tmp_path / "ray").run(
        executor=RayExecutor(num_workers=2), show_progress=False, use_cache=False
    )
    assert list(on_ray) == ["tag"]
    assert _table(on_ray, "tag") == _table(local, "tag")
    assert on_ray["tag"].features == local["tag"].features
    assert on_ray["tag"][0]["image"].size == (6, 5)
    # The output folder is a saved Distiset, like a local run's.
    again = Distiset.load_from_disk(tmp_path / "pixtill-data" / "datasets" / "branches")
    assert again["tag"]["caption"] == local["tag"]["caption"]


class DiesOnceLLM(AsyncLLM):
    """Kills its worker process the first time it sees ``row 13`` (a marker file says so)."""

    marker: str

    @property
    def model_name(self) -> str:
        return "dies-once"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        prompt = str(input[-1]["content"])
        await asyncio.sleep(0.01)
        if prompt == "row 13" and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)  # the worker process dies without any cleanup
        return {"generations": [f"ok {prompt}"] * num_generations}


def test_a_killed_worker_still_gives_every_row_once(cluster: str, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    with Pipeline(name="dies", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"row {i}"} for i in range(40)])
        load >> TextGeneration(name="t", llm=DiesOnceLLM(marker=str(marker)))
    distiset = pipeline.run(
        executor=RayExecutor(num_workers=2, max_retries=2),
        output_dir=tmp_path / "out",
        show_progress=False,
    )
    assert marker.read_text() == "killed"
    assert distiset["t"]["instruction"] == [f"row {i}" for i in range(40)]
    assert distiset["t"]["generation"] == [f"ok row {i}" for i in range(40)]


def _requests(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _stored(cache: Path) -> int:
    total = 0
    for path in cache.glob("cache-rank*.sqlite"):
        with sqlite3.connect(path) as db:
            total += int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    return total


def test_a_killed_driver_resumes_without_resending(cluster: str, tmp_path: Path) -> None:
    rows = 120
    log = tmp_path / "requests.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS / "pipeline")])}
    command = [
        sys.executable,
        str(TESTS / "pipeline" / "ray_resume_job.py"),
        str(tmp_path),
        str(rows),
        cluster,
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_requests(log)) < 30 and proc.poll() is None:
        assert time.monotonic() < deadline, "the driver never reached the kill point"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    # Ray stops the dead driver's tasks; wait until no more requests arrive.
    seen = -1
    while seen != len(_requests(log)):
        seen = len(_requests(log))
        time.sleep(1.5)
    stored = _stored(tmp_path / "cache")
    assert 0 < stored < rows
    sent_before = len(_requests(log))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"DONE {rows}" in done.stdout
    resent = _requests(log)[sent_before:]
    assert len(resent) == rows - stored  # no stored response was requested again
    dataset = Distiset.load_from_disk(tmp_path / "out")["echo"]
    assert dataset["instruction"] == [f"row-{i}" for i in range(rows)]
    assert dataset["generation"] == [f"echo row-{i}" for i in range(rows)]


def _echo_pipeline(root: Path, rows: int) -> Pipeline:
    from resume_job import LoggingLLM

    with Pipeline(name="shared-cache", cache_dir=root / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(rows)], batch_size=3)
        llm = LoggingLLM(log_path=str(root / "requests.log"), max_concurrent_requests=4)
        load >> TextGeneration(name="echo", llm=llm)
    return pipeline


def test_the_cache_is_shared_across_ranks_and_run_sizes(cluster: str, tmp_path: Path) -> None:
    rows, log = 14, tmp_path / "requests.log"
    first = _echo_pipeline(tmp_path, rows).run(
        executor=RayExecutor(num_workers=1), output_dir=tmp_path / "one", show_progress=False
    )
    assert len(_requests(log)) == rows
    # Two ranks now: each reads the one-rank run's cache file and sends nothing.
    second = _echo_pipeline(tmp_path, rows).run(
        executor=RayExecutor(num_workers=2), output_dir=tmp_path / "two", show_progress=False
    )
    assert len(_requests(log)) == rows
    assert second["echo"]["generation"] == first["echo"]["generation"]
    # And a local run reads the ranks' files too.
    local = _echo_pipeline(tmp_path, rows).run(output_dir=tmp_path / "local", show_progress=False)
    assert len(_requests(log)) == rows
    assert local["echo"]["generation"] == [f"echo r{i}" for i in range(rows)]


def _files_pipeline(root: Path, data_files: str) -> Pipeline:
    from pixtill.steps import LoadDataFromFileSystem

    with Pipeline(name="from-files", cache_dir=root / "cache") as pipeline:
        load = LoadDataFromFileSystem(data_files=data_files, batch_size=4, cache_dir=root / "hf")
        load >> TextGeneration(name="t", llm=DescribingLLM())
    return pipeline


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_data_files_split_over_ranks_give_the_local_rows(
    cluster: str, tmp_path: Path, kind: str
) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    for k, (start, end) in enumerate([(0, 9), (9, 10), (10, 25)]):
        rows = [{"instruction": f"row {i}", "n": i} for i in range(start, end)]
        if kind == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), data / f"p{k}.parquet", row_group_size=4)
        else:
            (data / f"p{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pattern = str(data / f"*.{kind}")
    local = _files_pipeline(tmp_path / "local", pattern).run(
        output_dir=tmp_path / "local" / "out", show_progress=False, use_cache=False
    )
    on_ray = _files_pipeline(tmp_path / "ray", pattern).run(
        executor=RayExecutor(num_workers=2),
        output_dir=tmp_path / "ray" / "out",
        show_progress=False,
        use_cache=False,
    )
    assert _table(on_ray, "t") == _table(local, "t")
    assert local["t"]["n"] == list(range(25))
    # The ranks prepared nothing: each read its own files or row groups.
    assert list((tmp_path / "local" / "hf").rglob("*.arrow"))
    assert not list((tmp_path / "ray" / "hf").rglob("*.arrow"))
