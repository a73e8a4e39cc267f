"""Tasks: steps that call a model once per row.

The row-level pieces (`prepare_row`, `rows_from_results`, `rows_from_error`) are public so that
an executor can stream rows through a model one at a time; `process` composes them for a batch.
A row that cannot be formatted, or whose request or `format_output` fails, gets ``None`` outputs
and the reason in its metadata; the other rows of the batch are untouched.

The modules: `results` (`GenerationResult`), `task_outputs` (output columns, metadata, row
shaping), `abstract_task` (`_Task`: lifecycle, row preparation, batch and streaming processing),
`llm_task` (`Task`) and `image_generation_task` (`ImageTask`); this module keeps the names where
distilabel has them (``distilabel.steps.tasks.base``).
"""

from __future__ import annotations

from typing import Union

from pixtill.steps.tasks.abstract_task import _Task
from pixtill.steps.tasks.image_generation_task import ImageTask
from pixtill.steps.tasks.llm_task import Task
from pixtill.steps.tasks.results import (
    GenerationResult,
    results_from_generate_output,
    results_from_image_outputs,
)
from pixtill.steps.tasks.task_outputs import METADATA_COLUMN

__all__ = [
    "METADATA_COLUMN",
    "GenerationResult",
    "ImageTask",
    "Task",
    "TaskUnion",
    "_Task",
    "results_from_generate_output",
    "results_from_image_outputs",
]

TaskUnion = Union[Task, ImageTask]
