"""A pipeline run in a subprocess by test_resume.py, which kills it with SIGKILL mid-run.

Every request the model receives is appended to a log file before it is answered, so the test
can tell exactly which rows were sent in each run.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration


class LoggingLLM(AsyncLLM):
    log_path: str
    max_concurrent_requests: int = 8

    @property
    def model_name(self) -> str:
        return "logging"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        prompt = input[-1]["content"]
        with open(self.log_path, "a") as fh:
            fh.write(prompt + "\n")
        await asyncio.sleep(0.01)
        return {"generations": [f"echo {prompt}"] * num_generations}


def main(workdir: str, rows: int) -> None:
    work = Path(workdir)
    with Pipeline(name="resume", cache_dir=work / "cache") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"row-{i}"} for i in range(rows)], batch_size=7
        )
        echo = TextGeneration(name="echo", llm=LoggingLLM(log_path=str(work / "requests.log")))
        load >> echo
    distiset = pipeline.run(output_dir=work / "out")
    distiset.save_to_disk(work / "saved")
    print("DONE", len(distiset["echo"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
