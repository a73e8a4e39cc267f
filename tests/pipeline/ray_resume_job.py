"""A pipeline run on Ray by a driver in a subprocess; test_ray_executor.py kills the driver."""

from __future__ import annotations

import sys
from pathlib import Path

from resume_job import LoggingLLM

from pixtill.pipeline import Pipeline
from pixtill.pipeline.executors.ray_executor import RayExecutor
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration


def main(workdir: str, rows: int, address: str) -> None:
    work = Path(workdir)
    with Pipeline(name="ray-resume", cache_dir=work / "cache") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"row-{i}"} for i in range(rows)], batch_size=5
        )
        llm = LoggingLLM(log_path=str(work / "requests.log"), max_concurrent_requests=4)
        load >> TextGeneration(name="echo", llm=llm)
    executor = RayExecutor(address=address, num_workers=2)
    distiset = pipeline.run(output_dir=work / "out", executor=executor, show_progress=False)
    print("DONE", len(distiset["echo"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
