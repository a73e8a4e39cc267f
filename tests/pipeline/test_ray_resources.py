"""What a rank's Ray task asks for: the executor's share plus each step's resources times its
replicas. Read from the options, without Ray running and without GPUs."""

from __future__ import annotations

import pytest

from doubles import DescribingLLM
from pixtill.pipeline import Pipeline
from pixtill.pipeline.executors.ray_resources import rank_options
from pixtill.steps import LoadDataFromDicts, StepResources
from pixtill.steps.tasks import TextGenerationWithImage


def _pipeline(**resources: object) -> Pipeline:
    with Pipeline(name="placed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q", "image": "x.png"}])
        caption = TextGenerationWithImage(
            name="caption", llm=DescribingLLM(), resources=StepResources(**resources)
        )
        load >> caption
    return pipeline


def test_a_local_model_step_asks_for_its_gpus_per_replica() -> None:
    pipeline = _pipeline(gpus=1, cpus=2, replicas=2)
    assert pipeline.steps["caption"].replicas == 2  # distilabel's place for replicas works
    options = rank_options(pipeline, num_cpus=1, num_gpus=0)
    assert options == {"num_cpus": 5.0, "num_gpus": 2.0}


def test_memory_and_custom_resources_travel_too() -> None:
    pipeline = _pipeline(gpus=0.5, memory=2**30, resources={"A100": 1})
    options = rank_options(pipeline, num_cpus=0.5, num_gpus=0)
    assert options == {
        "num_cpus": 0.5,
        "num_gpus": 0.5,
        "memory": 2**30,
        "resources": {"A100": 1.0},
    }


def test_the_ray_executor_sends_these_options() -> None:
    pytest.importorskip("ray")
    from pixtill.pipeline.executors.ray_executor import RayExecutor

    pipeline = _pipeline(gpus=1)
    executor = RayExecutor(num_cpus=1, num_gpus=0)
    assert executor.rank_options(pipeline) == {"num_cpus": 1.0, "num_gpus": 1.0}
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        StepResources(gpus=-1)
