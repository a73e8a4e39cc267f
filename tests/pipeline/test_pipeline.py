from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from doubles import DescribingLLM, PaletteImageModel
from pixtill.distiset import Distiset
from pixtill.errors import StepConfigError
from pixtill.models.llms import LLM, AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline, PipelineError, RunObserver, StepLoadError, StepSummary
from pixtill.steps import GlobalStep, LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import (
    METADATA_COLUMN,
    ImageGeneration,
    TextGeneration,
    TextGenerationWithImage,
)
from pixtill.steps.typing import StepColumns, StepOutput
from sample_images import image_bytes


class JitterLLM(AsyncLLM):
    """Answers after a random delay, so responses come back out of order."""

    max_concurrent_requests: int = 16

    @property
    def model_name(self) -> str:
        return "jitter"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        await asyncio.sleep(random.uniform(0, 0.01))
        return {"generations": [f"ok {input[-1]['content']}"] * num_generations}


class CountingSyncLLM(LLM):
    @property
    def model_name(self) -> str:
        return "sync"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        return [{"generations": [f"sync {i[-1]['content']}"] * num_generations} for i in inputs]


class Upper(Step):
    @property
    def inputs(self) -> StepColumns:
        return ["generation"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "upper": str(r["generation"]).upper()} for r in inputs]


class Explode(Step):
    def process(self, inputs: StepInput) -> StepOutput:
        raise RuntimeError("worker exploded")
        yield inputs


class ExplodeLater(Step):
    def process(self, inputs: StepInput) -> StepOutput:
        if inputs[0]["a"] >= 150:
            raise RuntimeError("worker exploded late")
        yield inputs


class BrokenLoad(Step):
    def load(self) -> None:
        raise OSError("weights not found")

    def process(self, inputs: StepInput) -> StepOutput:
        yield inputs


def rows(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"q{i}", "image": image_bytes(8 + i % 5, 8)} for i in range(n)]


def test_vision_pipeline_to_distiset(tmp_path: Path) -> None:
    with Pipeline(name="vision", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=rows(12), batch_size=5)
        caption = TextGenerationWithImage(name="caption", llm=DescribingLLM())
        load >> caption
    distiset = pipeline.run(output_dir=tmp_path / "out")
    dataset = distiset["caption"]
    assert len(dataset) == 12
    assert dataset["instruction"] == [f"q{i}" for i in range(12)]
    first = dataset[0]
    assert isinstance(first["image"], Image.Image)
    assert first["image"].size == (8, 8)
    assert first["generation"] == "[0] saw user: q0 <PNG 8x8>"
    assert first[METADATA_COLUMN]["statistics_caption"]["input_tokens"] > 0
    assert sorted(p.name for p in (tmp_path / "out" / "caption").glob("*.arrow"))
    assert (
        Distiset.load_from_disk(tmp_path / "out")["caption"]["instruction"]
        == dataset["instruction"]
    )
    summary = pipeline.last_summary
    assert summary is not None
    assert summary.leaf_rows == {"caption": 12}
    assert summary.steps["caption"].rows_in == 12


def test_order_kept_with_out_of_order_responses(tmp_path: Path) -> None:
    with Pipeline(name="order", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(200)], batch_size=9)
        gen = TextGeneration(name="gen", llm=JitterLLM(), num_generations=2)
        load >> gen
    dataset = pipeline.run(use_cache=False)["gen"]
    assert dataset["instruction"] == [f"r{i}" for i in range(200) for _ in range(2)]


def test_fan_out_and_join(tmp_path: Path) -> None:
    with Pipeline(name="dag", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": f"r{i}", "prompt": f"p{i}"} for i in range(20)]
        )
        text = TextGeneration(name="text", llm=JitterLLM())
        paint = ImageGeneration(
            name="paint",
            image_generation_model=PaletteImageModel(),
            output_mappings={"model_name": "image_model"},
        )
        upper = Upper(name="upper")
        load >> [text, paint]
        [text, paint] >> upper
    dataset = pipeline.run(use_cache=False)["upper"]
    assert len(dataset) == 20
    assert dataset["upper"] == [f"OK R{i}" for i in range(20)]
    assert isinstance(dataset[3]["image"], Image.Image)
    meta = dataset[0][METADATA_COLUMN]
    assert "raw_output_text" in meta and "raw_output_paint" in meta


def test_dataset_argument_and_parameters(tmp_path: Path) -> None:
    with Pipeline(name="params", cache_dir=tmp_path) as pipeline:
        TextGeneration(name="gen", llm=DescribingLLM())
    distiset = pipeline.run(
        dataset=[{"instruction": "a"}, {"instruction": "b"}],
        parameters={"gen": {"num_generations": 2, "llm": {"generation_kwargs": {"t": 1}}}},
        use_cache=False,
    )
    assert len(distiset["gen"]) == 4
    with pytest.raises(StepConfigError, match="unknown parameter 'nope'"):
        pipeline.run(parameters={"gen": {"nope": 1}}, use_cache=False)


def test_cache_recomputes_only_what_changed(tmp_path: Path) -> None:
    llm = DescribingLLM()
    data = [{"instruction": f"r{i}"} for i in range(10)]
    with Pipeline(name="cached", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=data)
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    first = pipeline.run()["gen"]
    assert len(llm.calls) == 10
    again = pipeline.run()["gen"]
    assert len(llm.calls) == 10  # nothing sent again
    assert again["generation"] == first["generation"]
    load.data[3]["instruction"] = "changed"
    pipeline.run()
    assert len(llm.calls) == 11  # only the changed row
    gen.template = "Q: {{ instruction }}"
    pipeline.run()
    assert len(llm.calls) == 21  # a new template changes every prompt
    pipeline.run(use_cache=False)
    assert len(llm.calls) == 31


def test_sync_model_runs_in_batches_with_replicas(tmp_path: Path) -> None:
    with Pipeline(name="sync", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(50)])
        gen = TextGeneration(name="gen", llm=CountingSyncLLM(), input_batch_size=4, replicas=3)
        load >> gen
    dataset = pipeline.run()["gen"]
    assert dataset["generation"] == [f"sync r{i}" for i in range(50)]


def test_failed_rows_are_counted_and_kept(tmp_path: Path) -> None:
    seen: list[StepSummary] = []

    class Recorder(RunObserver):
        def step_finished(self, step: str, summary: StepSummary) -> None:
            if step == "gen":
                seen.append(summary)

    with Pipeline(name="fail", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(10)] + [{}])
        gen = TextGeneration(name="gen", llm=DescribingLLM(fail_when="r7"))
        load >> gen
    dataset = pipeline.run(observer=Recorder())["gen"]
    assert len(dataset) == 11
    assert dataset["generation"][7] is None
    assert dataset["generation"][10] is None
    assert "row 10, column 'instruction'" in dataset[10][METADATA_COLUMN]["error_gen"]
    assert seen[0].failed == 2
    assert seen[0].rows_in == 11


def test_load_failure_is_loud(tmp_path: Path) -> None:
    with Pipeline(name="broken", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=[{"a": 1}]) >> BrokenLoad(name="broken_step")
    with pytest.raises(StepLoadError, match="'broken_step' failed to load: OSError: weights"):
        pipeline.run()


def test_worker_error_surfaces(tmp_path: Path) -> None:
    with Pipeline(name="explode", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=[{"a": 1}] * 100, batch_size=10) >> Explode(name="boom")
    with pytest.raises(PipelineError, match="step 'boom' failed: RuntimeError: worker exploded"):
        pipeline.run()


def test_a_failed_run_leaves_no_partial_shard(tmp_path: Path) -> None:
    with Pipeline(name="late", cache_dir=tmp_path) as pipeline:
        rows = [{"a": i} for i in range(300)]
        LoadDataFromDicts(data=rows, batch_size=10) >> ExplodeLater(name="late", replicas=1)
    with pytest.raises(PipelineError, match="worker exploded late"):
        pipeline.run(output_dir=tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


def test_empty_result_is_an_error(tmp_path: Path) -> None:
    with Pipeline(name="empty", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=[]) >> TextGeneration(llm=DescribingLLM())
    with pytest.raises(PipelineError, match="produced no rows"):
        pipeline.run()


def test_graph_errors(tmp_path: Path) -> None:
    with Pipeline(name="g", cache_dir=tmp_path) as pipeline:
        a = TextGeneration(name="a", llm=DescribingLLM())
        with pytest.raises(ValueError, match="already has a step named 'a'"):
            TextGeneration(name="a", llm=DescribingLLM())
    with pytest.raises(StepConfigError, match="no input"):
        pipeline.run()
    outside = TextGeneration(name="outside", llm=DescribingLLM())
    with pytest.raises(StepConfigError, match="same `with Pipeline"):
        a >> outside


def test_metadata_stays_a_struct_with_system_prompt_and_images(tmp_path: Path) -> None:
    with Pipeline(name="meta", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=rows(3))
        task = TextGenerationWithImage(name="cap", llm=DescribingLLM(), system_prompt="Be terse.")
        load >> task
    dataset = pipeline.run(use_cache=False)["cap"]
    raw_input = dataset[0][METADATA_COLUMN]["raw_input_cap"]
    assert raw_input[0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be terse.", "image_url": None}],
    }
    assert raw_input[1]["content"][1]["image_url"]["url"].startswith("sha256:")


class SortDescending(GlobalStep):
    def process(self, inputs: StepInput) -> StepOutput:
        yield sorted(inputs, key=lambda r: r["instruction"], reverse=True)


def test_join_after_a_reordering_global_step_fails_loudly(tmp_path: Path) -> None:
    with Pipeline(name="mis-join", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"r{i}"} for i in range(4)])
        sort = SortDescending(name="sort")
        gen = TextGeneration(name="gen", llm=DescribingLLM())
        load >> [sort, gen]
        [sort, gen] >> Upper(name="upper")
    with pytest.raises(PipelineError, match="only some of"):
        pipeline.run(use_cache=False)
