from pixtill.steps.base import GeneratorStep, GlobalStep, Step, StepInput
from pixtill.steps.generators.data import LoadDataFromDicts, LoadDataFromIterable
from pixtill.steps.generators.huggingface import LoadDataFromFileSystem, LoadDataFromHub
from pixtill.steps.generators.images_folder import LoadImagesFromFolder
from pixtill.steps.resources import StepResources
from pixtill.steps.typing import GeneratorStepOutput, StepColumns, StepOutput

__all__ = [
    "GeneratorStep",
    "GeneratorStepOutput",
    "GlobalStep",
    "LoadDataFromDicts",
    "LoadDataFromFileSystem",
    "LoadDataFromHub",
    "LoadDataFromIterable",
    "LoadImagesFromFolder",
    "Step",
    "StepColumns",
    "StepInput",
    "StepOutput",
    "StepResources",
]
