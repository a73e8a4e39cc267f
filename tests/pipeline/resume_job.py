"""A pipeline run in a subprocess by test_resume.py, which kills it with SIGKILL mid-run.

Every request the model receives is appended to a log file before it is answered, so the test
can tell exactly which rows were sent in each run. With a third argument N, the model stops
answering after the N-th request of this run (the later ones are logged, then never answered)
and prints ``HOLDING``: the test kills the process there, so a busy machine can never let the
run finish before the kill.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGeneration


class LoggingLLM(AsyncLLM):
    log_path: str
    max_concurrent_requests: int = 8

    # Private: not part of the step's configuration, so every run shares one cache signature.
    _hold_after: int | None = PrivateAttr(default=None)
    _seen: int = PrivateAttr(default=0)

    @property
    def model_name(self) -> str:
        return "logging"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        prompt = input[-1]["content"]
        with open(self.log_path, "a") as fh:
            fh.write(prompt + "\n")
        self._seen += 1
        if self._hold_after is not None and self._seen > self._hold_after:
            if self._seen == self._hold_after + 1:
                print("HOLDING", flush=True)
            await asyncio.Event().wait()  # never answered: the test kills the process here
        await asyncio.sleep(0.01)
        return {"generations": [f"echo {prompt}"] * num_generations}


def main(workdir: str, rows: int, hold_after: int | None) -> None:
    work = Path(workdir)
    llm = LoggingLLM(log_path=str(work / "requests.log"))
    llm._hold_after = hold_after
    with Pipeline(name="resume", cache_dir=work / "cache") as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"row-{i}"} for i in range(rows)], batch_size=7
        )
        echo = TextGeneration(name="echo", llm=llm)
        load >> echo
    distiset = pipeline.run(output_dir=work / "out", show_progress=False)
    distiset.save_to_disk(work / "saved")
    print("DONE", len(distiset["echo"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
