"""distilabel's task lifecycle pieces: offline batch generation flag, the warning for a step
without a pipeline, runtime parameters, and a step's ``dump()`` / ``from_dict()``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytest
from pydantic import SecretStr, ValidationError

from doubles import DescribingLLM
from pixtill.errors import StepConfigError
from pixtill.mixins.runtime_parameters import RuntimeParameter
from pixtill.models.llms.base import LLM, GenerateOutput
from pixtill.pipeline import Pipeline
from pixtill.steps.tasks import Task, TextGenerationWithImage


class EchoTask(Task):
    """A task written as distilabel users write theirs (no offline batch support)."""

    @property
    def inputs(self) -> list[str]:
        return ["instruction"]

    @property
    def outputs(self) -> list[str]:
        return ["answer"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": input["instruction"]}]

    def format_output(self, output: Any, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"answer": output}


class BatchingEchoTask(EchoTask):
    _can_be_used_with_offline_batch_generation = True


class CountingBatchLLM(LLM):
    """Records which entry point the task used."""

    calls: list[str] = []

    @property
    def model_name(self) -> str:
        return "counting"

    def generate(
        self, inputs: list[Any], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        self.calls.append(f"generate:{len(inputs)}")
        return [{"generations": ["online"] * num_generations} for _ in inputs]

    def offline_batch_generate(
        self, inputs: list[Any], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        self.calls.append(f"offline:{len(inputs)}")
        return [{"generations": ["batched"] * num_generations} for _ in inputs]


class KeyedLLM(DescribingLLM):
    """An LLM with runtime parameters, one of them required."""

    region: RuntimeParameter[str]
    retries: Optional[RuntimeParameter[int]] = None
    token: SecretStr = SecretStr("hunter2")


# -- offline batch generation ------------------------------------------------------------------


def test_a_task_that_cannot_batch_refuses_an_offline_batch_model() -> None:
    with pytest.raises(ValidationError, match="`EchoTask` task cannot be used with offline batch"):
        EchoTask(llm=DescribingLLM(use_offline_batch_generation=True))


def test_offline_batch_makes_the_task_global_and_uses_offline_batch_generate() -> None:
    llm = CountingBatchLLM(use_offline_batch_generation=True)
    llm.calls = []
    task = BatchingEchoTask(name="batched", llm=llm)
    assert task.is_global is True
    assert EchoTask(llm=DescribingLLM()).is_global is False
    task.load()
    rows = next(task.process([{"instruction": "a"}, {"instruction": "b"}]))
    assert [r["answer"] for r in rows] == ["batched", "batched"]
    assert llm.calls == ["offline:2"]


def test_an_online_model_asked_for_offline_batches_says_which_backends_can() -> None:
    task = TextGenerationWithImage(
        name="vision", llm=DescribingLLM(use_offline_batch_generation=True)
    )
    task.load()
    with pytest.raises(NotImplementedError, match="OpenAIBatchLLM"):
        task.llm.generate_outputs([[{"role": "user", "content": "x"}]])


# -- the warning for a step outside any pipeline -------------------------------------------------


def test_a_step_outside_a_pipeline_logs_distilabels_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        EchoTask(name="alone", llm=DescribingLLM())
    assert "Step 'alone' hasn't received a pipeline" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), Pipeline(name="p"):
        EchoTask(name="inside", llm=DescribingLLM())
    EchoTask(name="given", llm=DescribingLLM(), pipeline=Pipeline(name="q"))
    assert "hasn't received a pipeline" not in caplog.text


# -- runtime parameters ----------------------------------------------------------------------------


def test_a_required_runtime_parameter_may_wait_until_the_run() -> None:
    llm = KeyedLLM()  # no region yet
    assert llm.region is None
    assert llm.runtime_parameters_names["region"] is False  # required at run time
    assert llm.runtime_parameters_names["retries"] is True
    assert llm.runtime_parameters_names["use_offline_batch_generation"] is True
    task = EchoTask(name="echo", llm=llm)
    assert task.runtime_parameters_names["llm"]["region"] is False
    with pytest.raises(StepConfigError, match=r"\['llm.region'\] not set"):
        task.load()
    task.set_runtime_parameters({"llm": {"region": "eu", "retries": 2}})
    assert (task.llm.region, task.llm.retries) == ("eu", 2)
    task.load()
    assert next(task.process([{"instruction": "hi"}]))[0]["answer"] is not None


def test_runtime_parameters_from_pipeline_run_reach_the_model() -> None:
    from pixtill.steps import LoadDataFromDicts

    with Pipeline(name="runtime-params") as pipeline:
        loader = LoadDataFromDicts(data=[{"instruction": "hi"}])
        loader >> EchoTask(name="echo", llm=KeyedLLM())
    pipeline.run(parameters={"echo": {"llm": {"region": "us"}}}, use_cache=False)
    step = pipeline.steps["echo"]
    assert isinstance(step, EchoTask) and step.llm.region == "us"  # type: ignore[attr-defined]


def test_an_unknown_runtime_parameter_is_skipped_with_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = EchoTask(name="echo", llm=KeyedLLM(region="eu"))
    with caplog.at_level(logging.WARNING):
        task.set_runtime_parameters({"llm": {"regoin": "us"}})
    assert "'regoin' unknown" in caplog.text and "region" in caplog.text
    assert task.llm.region == "eu"  # type: ignore[attr-defined]


# -- dump / from_dict ---------------------------------------------------------------------


def test_dump_names_classes_and_round_trips_without_secrets() -> None:
    task = EchoTask(name="echo", llm=KeyedLLM(region="eu"), num_generations=2)
    data = task.dump()
    assert data["type_info"] == {"module": __name__, "name": "EchoTask"}
    assert data["llm"]["type_info"] == {"module": __name__, "name": "KeyedLLM"}
    assert (data["name"], data["num_generations"], data["llm"]["region"]) == ("echo", 2, "eu")
    assert data["llm"]["use_offline_batch_generation"] is False
    assert "hunter2" not in repr(data)  # a SecretStr is written masked
    names = [entry["name"] for entry in data["runtime_parameters_info"]]
    assert "llm" in names
    rebuilt = EchoTask.from_dict(data)
    assert isinstance(rebuilt.llm, KeyedLLM)
    assert (rebuilt.name, rebuilt.num_generations, rebuilt.llm.region) == ("echo", 2, "eu")


def test_from_dict_never_imports_a_module() -> None:
    data = EchoTask(name="echo", llm=KeyedLLM(region="eu")).dump()
    data["llm"]["type_info"] = {"module": "antigravity", "name": "Anything"}
    with pytest.raises(ValueError, match="never imports code"):
        EchoTask.from_dict(data)


def test_a_batch_backend_with_the_flag_answers_through_one_provider_batch(
    tmp_path: Path,
) -> None:
    from http_servers import serve
    from models.fake_providers import loaded
    from models.llms.batch_job import KEY
    from models.llms.fake_batches import FakeBatches
    from pixtill.models.llms import OpenAIBatchLLM
    from sample_images import image_bytes

    fake = FakeBatches(api_key=KEY)
    with serve(fake.app()) as url:
        llm = OpenAIBatchLLM(
            model="gpt-4o-mini",
            base_url=f"{url}/v1",
            api_key=KEY,
            state_dir=tmp_path / "batches",
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=0,
        )
        task = TextGenerationWithImage(name="caption", llm=llm)
        assert task.is_global and not task.supports_streaming
        rows = [{"instruction": f"row {i}", "image": image_bytes(8 + i, 8)} for i in range(3)]
        with loaded(task):
            out = task.process_batch(rows)
    assert [r["generation"] for r in out] == [f"row {i} | PNG {8 + i}x8 | #0" for i in range(3)]
    assert len(fake.batches) == 1 and fake.rejected == []


def test_in_a_pipeline_an_offline_batch_task_gets_every_row_in_one_call(tmp_path: Path) -> None:
    from pixtill.steps import LoadDataFromDicts

    with Pipeline(name="offline", cache_dir=tmp_path / "cache") as pipeline:
        loader = LoadDataFromDicts(data=[{"instruction": str(i)} for i in range(5)], batch_size=2)
        task = BatchingEchoTask(
            name="echo", llm=CountingBatchLLM(use_offline_batch_generation=True), input_batch_size=2
        )
        loader >> task
    distiset = pipeline.run(use_cache=False, output_dir=tmp_path / "out")
    assert task.llm.calls == ["offline:5"]  # type: ignore[attr-defined]
    assert distiset["echo"]["answer"] == ["batched"] * 5
