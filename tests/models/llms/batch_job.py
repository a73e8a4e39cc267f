"""A pipeline whose caption step uses a batch backend; run by the kill-and-resume test in a
child process (``python batch_job.py <provider> <base_url> <folder>``) and in the test itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pixtill.models.llms import AnthropicBatchLLM, OpenAIBatchLLM
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts
from pixtill.steps.tasks import TextGenerationWithImage

KEY = "sk-batch-test-SECRET-0123456789"


def rows() -> list[dict[str, Any]]:
    from sample_images import image_bytes

    return [
        {"instruction": f"caption picture {i}", "image": image_bytes(8 + i, 6, format="PNG")}
        for i in range(6)
    ]


def build(provider: str, base_url: str, folder: Path) -> Pipeline:
    common: dict[str, Any] = {
        "api_key": KEY,
        "state_dir": folder / "batches",
        "poll_interval": 0.02,
        "timeout": 10.0,
        "max_retries": 1,
    }
    llm: Any
    if provider == "openai":
        llm = OpenAIBatchLLM(model="gpt-4o-mini", base_url=f"{base_url}/v1", **common)
    else:
        llm = AnthropicBatchLLM(model="claude-haiku-4-5", base_url=base_url, **common)
    with Pipeline(name=f"batch-{provider}", cache_dir=folder / "cache") as pipeline:
        load = LoadDataFromDicts(data=rows())
        # Two provider batches of three rows, both in flight at once.
        caption = TextGenerationWithImage(name="caption", llm=llm, input_batch_size=3, replicas=2)
        load >> caption
    return pipeline


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: sample_images
    build(sys.argv[1], sys.argv[2], Path(sys.argv[3])).run()
