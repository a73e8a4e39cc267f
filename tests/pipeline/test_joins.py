"""Joins: branches that write the same column are refused by name before anything runs, a
column one branch rewrites survives the join, and a run's leaves come back in the graph's order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from doubles import DescribingLLM
from pixtill.distiset import Distiset
from pixtill.errors import StepConfigError
from pixtill.models.llms import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps import LoadDataFromDicts, Step, StepInput
from pixtill.steps.tasks import TextGeneration
from pixtill.steps.typing import StepColumns, StepOutput


class Shout(Step):
    """Rewrites the ``caption`` it receives (an output mapped onto an input column)."""

    @property
    def inputs(self) -> StepColumns:
        return ["caption"]

    @property
    def outputs(self) -> StepColumns:
        return ["caption"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "caption": str(r["caption"]).upper()} for r in inputs]


class Count(Step):
    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "seen": True} for r in inputs]


class SlowLLM(AsyncLLM):
    """Answers after the other branch has long finished (a tiny delay per row)."""

    @property
    def model_name(self) -> str:
        return "slow"

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        await asyncio.sleep(0.02)
        return {"generations": ["late"] * num_generations}


def _two_captioners(tmp_path: Path, **second: Any) -> Pipeline:
    with Pipeline(name="two-captioners", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(4)])
        llm_a, llm_b = DescribingLLM(model_id="model-a"), DescribingLLM(model_id="model-b")
        first = TextGeneration(name="captioner_a", llm=llm_a)
        other = TextGeneration(name="captioner_b", llm=llm_b, **second)
        load >> [first, other] >> Count(name="join")
    return pipeline


def test_branches_writing_the_same_column_are_refused_before_any_request(
    tmp_path: Path,
) -> None:
    pipeline = _two_captioners(tmp_path)
    with pytest.raises(StepConfigError) as raised:
        pipeline.run(output_dir=tmp_path / "out", show_progress=False)
    message = str(raised.value)
    assert "step 'join' joins branches that both write column 'generation'" in message
    assert "'captioner_a'" in message and "'captioner_b'" in message
    assert "output_mappings={'generation': 'generation_captioner_b'}" in message
    llm = pipeline.steps["captioner_a"].llm  # type: ignore[attr-defined]
    assert llm.calls == []


def test_the_model_name_column_counts_too(tmp_path: Path) -> None:
    pipeline = _two_captioners(tmp_path, output_mappings={"generation": "caption_b"})
    with pytest.raises(StepConfigError, match="both write column 'model_name'"):
        pipeline.validate()


def test_branches_with_their_own_columns_join(tmp_path: Path) -> None:
    mapped = {"generation": "caption_b", "model_name": "model_b"}
    distiset = _two_captioners(tmp_path, output_mappings=mapped).run(
        output_dir=tmp_path / "out", show_progress=False, use_cache=False
    )
    row = distiset["join"][0]
    assert (row["model_name"], row["model_b"]) == ("model-a", "model-b")
    assert row["generation"].startswith("[0] saw user: q0") and row["caption_b"]


@pytest.mark.parametrize("rewriter_first", [True, False])
def test_a_column_one_branch_rewrites_survives_the_join(
    tmp_path: Path, rewriter_first: bool
) -> None:
    with Pipeline(name="rewrite", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q", "caption": "a red circle"}])
        shout = Shout(name="shout")
        gen = TextGeneration(name="gen", llm=DescribingLLM())
        load >> [shout, gen]
        ([shout, gen] if rewriter_first else [gen, shout]) >> Count(name="join")
    row = pipeline.run(output_dir=tmp_path / "out", show_progress=False, use_cache=False)["join"][0]
    # The other branch still carries the loader's "a red circle": the rewrite must win anyway.
    assert row["caption"] == "A RED CIRCLE"
    assert row["generation"] and row["seen"]


def test_leaves_come_back_in_the_graph_order_not_the_finishing_order(tmp_path: Path) -> None:
    with Pipeline(name="leaves", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(6)])
        slow = TextGeneration(name="slow", llm=SlowLLM())
        fast = TextGeneration(name="fast", llm=DescribingLLM())
        load >> [slow, fast]
    for run in range(2):
        distiset = pipeline.run(
            output_dir=tmp_path / f"out{run}", show_progress=False, use_cache=False
        )
        assert list(distiset) == ["slow", "fast"]
        assert list(Distiset.load_from_disk(tmp_path / f"out{run}")) == ["slow", "fast"]


def test_leaves_follow_the_graph_order_even_when_declared_out_of_order(tmp_path: Path) -> None:
    with Pipeline(name="declared", cache_dir=tmp_path / "cache") as pipeline:
        end = Count(name="end")  # declared first, but it is the deepest leaf
        load = LoadDataFromDicts(data=[{"instruction": "q"}])
        mid = TextGeneration(name="mid", llm=DescribingLLM())
        side = Count(name="side")
        load >> mid >> end
        load >> side
    assert pipeline.leaves == ["side", "end"]
    distiset = pipeline.run(output_dir=tmp_path / "out", show_progress=False, use_cache=False)
    assert list(distiset) == ["side", "end"]
