"""Steps that decide what to keep: judge, score, deduplicate, filter, regenerate, read text."""

from pixtill.steps.quality.judge import VisionJudge
from pixtill.steps.quality.rubrics import (
    DEFAULT_RUBRICS,
    Criterion,
    Rubric,
    resolve_rubric,
    verdict_schema,
)

__all__ = [
    "DEFAULT_RUBRICS",
    "Criterion",
    "Rubric",
    "VisionJudge",
    "resolve_rubric",
    "verdict_schema",
]
