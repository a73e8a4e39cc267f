"""Steps that decide what to keep: judge, score, deduplicate, filter, regenerate, read text."""

from pixtill.steps.quality.clip_score import CLIPScore
from pixtill.steps.quality.conditions import Condition, ConditionError
from pixtill.steps.quality.dedup import ImageDeduplication
from pixtill.steps.quality.filter import FilterRows, SelectRows
from pixtill.steps.quality.judge import VisionJudge
from pixtill.steps.quality.ocr import OCR, quoted_text, text_fidelity
from pixtill.steps.quality.regenerate import JudgedImageEditing, JudgedImageGeneration
from pixtill.steps.quality.rubrics import (
    DEFAULT_RUBRICS,
    Criterion,
    Rubric,
    resolve_rubric,
    verdict_schema,
)

__all__ = [
    "DEFAULT_RUBRICS",
    "OCR",
    "CLIPScore",
    "Condition",
    "ConditionError",
    "Criterion",
    "FilterRows",
    "ImageDeduplication",
    "JudgedImageEditing",
    "JudgedImageGeneration",
    "Rubric",
    "SelectRows",
    "VisionJudge",
    "quoted_text",
    "resolve_rubric",
    "text_fidelity",
    "verdict_schema",
]
