from pixtill.steps.base import GeneratorStep, GlobalStep, Step, StepInput
from pixtill.steps.generators.data import LoadDataFromDicts
from pixtill.steps.typing import GeneratorStepOutput, StepColumns, StepOutput

__all__ = [
    "GeneratorStep",
    "GeneratorStepOutput",
    "GlobalStep",
    "LoadDataFromDicts",
    "Step",
    "StepColumns",
    "StepInput",
    "StepOutput",
]
