"""The executor seam, the row runner's mappings, the opt-in process tuning, progress output and
a streaming task that keeps requests in flight while one row waits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from doubles import DescribingLLM, PaletteImageModel
from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline, PipelineError
from pixtill.pipeline import runtime as runtime_module
from pixtill.pipeline.executors import LocalExecutor, RunContext, RunResult
from pixtill.pipeline.graph import Graph
from pixtill.steps import LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import ImageGeneration, TextGeneration, TextGenerationWithImage
from pixtill.steps.typing import StepColumns, StepOutput


def _png(path: Path, color: tuple[int, int, int]) -> Path:
    Image.new("RGB", (6, 4), color).save(path)
    return path


# -- mappings never drop a column ------------------------------------------------------------


@pytest.mark.parametrize("streaming", [True, False])
def test_an_input_mapping_keeps_the_column_it_shadows(tmp_path: Path, streaming: bool) -> None:
    with Pipeline(name="mapped", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"question": "Q?", "instruction": "keep me"}])
        ask = TextGeneration(
            name="ask",
            llm=DescribingLLM(),
            input_mappings={"instruction": "question"},
            replicas=1 if streaming else 2,  # two replicas: the batch path
        )
        load >> ask
    row = pipeline.run(show_progress=False)["ask"][0]
    assert row["instruction"] == "keep me"
    assert row["question"] == "Q?"
    assert "user: Q?" in row["generation"]


def test_a_generated_image_path_mapped_to_image_keeps_the_source_image(tmp_path: Path) -> None:
    source = _png(tmp_path / "source.png", (255, 0, 0))
    with Pipeline(name="chain", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "a cat", "image": str(source)}])
        draw = ImageGeneration(
            name="draw",
            image_generation_model=PaletteImageModel(),
            save_artifacts=True,
            artifacts_directory=tmp_path / "art",
            output_mappings={"image": "generated"},
        )
        look = TextGenerationWithImage(
            name="look",
            llm=DescribingLLM(),
            template="Describe {{ prompt }}.",
            columns=["prompt"],
            input_mappings={"image": "image_path"},
        )
        load >> draw >> look
    row = pipeline.run(show_progress=False)["look"][0]
    assert row["image"] == str(source)  # the source image, kept
    assert "<PNG 8x8>" in row["generation"]  # the step saw the generated image
    assert row["image_path"] is not None


def test_a_plain_step_with_a_mapping_keeps_the_shadowed_column(tmp_path: Path) -> None:
    class Upper(Step):
        @property
        def inputs(self) -> StepColumns:
            return ["text"]

        @property
        def outputs(self) -> StepColumns:
            return ["upper"]

        def process(self, inputs: StepInput) -> StepOutput:
            yield [{**row, "upper": row["text"].upper()} for row in inputs]

    with Pipeline(name="plain", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"title": "hi", "text": "body"}])
        load >> Upper(name="upper", input_mappings={"text": "title"})
    row = pipeline.run(show_progress=False)["upper"][0]
    assert row == {"title": "hi", "text": "body", "upper": "HI"}


# -- the executor seam -----------------------------------------------------------------------


class CountingExecutor:
    """Delegates to the local executor and records the graph it was given."""

    def __init__(self) -> None:
        self.graphs: list[Graph] = []

    def execute(self, graph: Graph, context: RunContext) -> RunResult:
        self.graphs.append(graph)
        return LocalExecutor().execute(graph, context)


def _echo_pipeline(tmp_path: Path, rows: int = 5) -> Pipeline:
    with Pipeline(name="echo", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"row {i}"} for i in range(rows)])
        load >> TextGeneration(name="echo", llm=DescribingLLM())
    return pipeline


def test_run_uses_the_executor_it_is_given(tmp_path: Path) -> None:
    executor = CountingExecutor()
    pipeline = _echo_pipeline(tmp_path)
    distiset = pipeline.run(executor=executor, show_progress=False)
    assert executor.graphs == [pipeline]
    assert distiset["echo"]["instruction"] == [f"row {i}" for i in range(5)]


def test_an_unknown_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="unknown executor 'slurm'; available: 'local', 'ray'"):
        _echo_pipeline(tmp_path).run(executor="slurm", show_progress=False)
    with pytest.raises(PipelineError, match="execute"):
        _echo_pipeline(tmp_path).run(executor=object(), show_progress=False)  # type: ignore[arg-type]


def test_the_local_executor_runs_one_shard_with_global_row_numbers(tmp_path: Path) -> None:
    pipeline = _echo_pipeline(tmp_path, rows=7)
    pipeline.validate()
    seen: list[list[str]] = []
    for rank in range(3):
        context = RunContext(
            output_dir=tmp_path / f"out-{rank}",
            cache=None,
            observer=runtime_observer(),
            rank=rank,
            world_size=3,
        )
        result = LocalExecutor().execute(pipeline, context)
        from pixtill.distiset import Distiset

        seen.append(Distiset.from_arrow_files(result.files)["echo"]["instruction"])
    assert seen == [["row 0", "row 1", "row 2"], ["row 3", "row 4"], ["row 5", "row 6"]]


def runtime_observer() -> Any:
    from pixtill.pipeline import RunObserver

    return RunObserver()


# -- process tuning is opt-in ----------------------------------------------------------------


def test_a_library_run_leaves_the_process_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runtime_module, "limit_malloc_arenas", lambda: calls.append("arenas"))
    monkeypatch.setattr(runtime_module, "lower_thread_priority", lambda: calls.append("nice"))
    original_freeze = runtime_module.frozen_heap

    def frozen() -> Any:
        calls.append("freeze")
        return original_freeze()

    monkeypatch.setattr(runtime_module, "frozen_heap", frozen)
    _echo_pipeline(tmp_path / "a").run(show_progress=False)
    assert calls == []
    _echo_pipeline(tmp_path / "b").run(show_progress=False, tune_process=True)
    assert calls[:2] == ["arenas", "freeze"] and "nice" in calls


# -- progress ----------------------------------------------------------------------------------


def test_run_shows_progress_unless_turned_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _echo_pipeline(tmp_path / "quiet").run(show_progress=False)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    _echo_pipeline(tmp_path / "loud").run()
    shown = capsys.readouterr().out
    assert "echo" in shown and "5" in shown  # the step's bar or summary, with its row count


# -- no head-of-line blocking ------------------------------------------------------------------


class OneSlowRowLLM(AsyncLLM):
    """Row 0 answers only once ``wait_for`` other requests have started (as a row whose
    request waits out a retry's backoff while the window should stay busy)."""

    max_concurrent_requests: int = 4
    wait_for: int = 12
    started: int = 0
    _others: asyncio.Event | None = None

    @property
    def model_name(self) -> str:
        return "slow-first"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        if self._others is None:
            self._others = asyncio.Event()
        prompt = str(input[-1]["content"])
        if prompt == "row 0":
            await asyncio.wait_for(self._others.wait(), timeout=10)
        else:
            self.started += 1
            if self.started >= self.wait_for:
                self._others.set()
        return {"generations": [f"ok {prompt}"] * num_generations}


def test_a_waiting_row_does_not_stop_new_requests(tmp_path: Path) -> None:
    llm = OneSlowRowLLM()
    with Pipeline(name="hol", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"row {i}"} for i in range(30)])
        # input_batch_size=1: the reorder buffer alone (not the batch) must let rows through
        load >> TextGeneration(name="t", llm=llm, input_batch_size=1)
    dataset = pipeline.run(use_cache=False, show_progress=False)["t"]
    assert dataset["generation"] == [f"ok row {i}" for i in range(30)]  # input order
    assert llm.started == 29
