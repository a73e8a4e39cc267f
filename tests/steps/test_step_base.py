from __future__ import annotations

import pytest

from pixtill.errors import MissingColumnError
from pixtill.steps import GeneratorStep, GlobalStep, LoadDataFromDicts, Step, StepInput
from pixtill.steps.typing import GeneratorStepOutput, StepColumns, StepOutput


class SplitInTwo(Step):
    @property
    def inputs(self) -> StepColumns:
        return {"text": True, "lang": False}

    @property
    def outputs(self) -> StepColumns:
        return ["upper"]

    def process(self, inputs: StepInput) -> StepOutput:
        half = len(inputs) // 2
        yield [{**r, "upper": r["text"].upper()} for r in inputs[:half]]
        yield [{**r, "upper": r["text"].upper()} for r in inputs[half:]]


def test_every_yielded_batch_is_used_and_mappings_apply() -> None:
    step = SplitInTwo(input_mappings={"text": "body"}, output_mappings={"upper": "shout"})
    batches = list(step.process_applying_mappings([{"body": "a"}, {"body": "b"}, {"body": "c"}]))
    assert batches == [
        [{"body": "a", "shout": "A"}],
        [{"body": "b", "shout": "B"}, {"body": "c", "shout": "C"}],
    ]
    assert step.get_inputs() == {"text": True, "lang": False}
    assert step.name == "split_in_two_0"


def test_missing_required_column_names_step_column_row() -> None:
    step = SplitInTwo(name="splitter")
    with pytest.raises(MissingColumnError) as info:
        list(step.process_applying_mappings([{"text": "a"}, {"lang": "en"}]))
    assert str(info.value).startswith("step 'splitter': row 1, column 'text': ")


def test_bad_step_name() -> None:
    with pytest.raises(ValueError, match="may only hold"):
        SplitInTwo(name="no spaces")


class Counter(GeneratorStep):
    total: int = 5

    @property
    def outputs(self) -> StepColumns:
        return ["n"]

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        for start in range(offset, self.total, self.batch_size):
            end = min(start + self.batch_size, self.total)
            yield [{"n": i} for i in range(start, end)], end == self.total


def test_generator_step_offset_and_last_flag() -> None:
    out = list(Counter(batch_size=2).process_applying_mappings(offset=1))
    assert out == [([{"n": 1}, {"n": 2}], False), ([{"n": 3}, {"n": 4}], True)]


def test_load_data_from_dicts() -> None:
    step = LoadDataFromDicts(
        data=[{"a": i} for i in range(5)], batch_size=2, output_mappings={"a": "b"}
    )
    out = list(step.process_applying_mappings())
    assert [len(b) for b, _ in out] == [2, 2, 1]
    assert [last for _, last in out] == [False, False, True]
    assert out[0][0][0] == {"b": 0}
    assert step.outputs == ["a"]
    assert list(LoadDataFromDicts(data=[]).process()) == [([], True)]


class Sorter(GlobalStep):
    def process(self, inputs: StepInput) -> StepOutput:
        yield sorted(inputs, key=lambda r: r["k"])


def test_global_step() -> None:
    assert next(Sorter().process([{"k": 2}, {"k": 1}])) == [{"k": 1}, {"k": 2}]
