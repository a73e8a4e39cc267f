"""Rubrics for a vision-language judge: criteria with a scale, and the JSON shape of a verdict.

A `Rubric` names what the judge looks at (its prompt template over row columns), the criteria it
scores and the scale they share. `verdict_schema` turns a rubric into the JSON Schema the judge
must answer with: one integer per criterion within the scale, plus a short ``rationale``.
`DEFAULT_RUBRICS` holds the usual jobs (prompt adherence of a generated image, caption
faithfulness, visual-QA answer correctness, artefacts and overall quality), in the spirit of
the LLM-as-a-judge rubrics of VIEScore (Ku et al., 2024) and of NeMo Data Designer's judge column.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
RATIONALE = "rationale"


class Criterion(BaseModel):
    """One thing the judge scores, e.g. ``adherence``: an identifier and what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Identifier (letters, digits, '_'): the key in the verdict.")
    description: str = Field(description="What a high score means, in a sentence or two.")
    weight: float = Field(default=1.0, gt=0, description="Weight in the overall score.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not _IDENTIFIER.fullmatch(name) or name == RATIONALE:
            raise ValueError(
                f"criterion name {name!r} must be an identifier (letters, digits, '_', at most "
                f"64 characters) other than {RATIONALE!r}"
            )
        return name


class Rubric(BaseModel):
    """What a judge rates and how.

    ``template`` is a sandboxed Jinja2 text shown with the image; it may use the row columns
    listed in ``columns`` (e.g. ``{{ prompt }}``). Every criterion is an integer from
    ``scale[0]`` to ``scale[1]``; the overall score is their weighted mean on the same scale.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name, used in the schema title.")
    instructions: str = Field(description="What the judge is asked to do.")
    template: str = Field(default="", description="Jinja2 text over `columns`, after the image.")
    columns: list[str] = Field(default_factory=list, description="Row columns the template uses.")
    criteria: list[Criterion] = Field(min_length=1)
    scale: tuple[int, int] = Field(default=(1, 5), description="Lowest and highest score.")
    rationale_max_chars: int = Field(default=400, ge=20, description="Length cap of the reason.")

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        low, high = self.scale
        if low >= high:
            raise ValueError(f"scale must go from low to high, got {self.scale}")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError(f"criterion names must be unique, got {names}")
        return self

    def overall(self, scores: dict[str, int]) -> float:
        """Weighted mean of ``scores`` (one per criterion), on the rubric's scale."""
        total = sum(c.weight for c in self.criteria)
        return sum(scores[c.name] * c.weight for c in self.criteria) / total

    def describe(self) -> str:
        """The rubric as text for the judge: instructions, criteria, scale and answer shape."""
        low, high = self.scale
        lines = [
            self.instructions,
            "",
            f"Score each criterion from {low} (worst) to {high} (best):",
        ]
        lines += [f"- {c.name}: {c.description}" for c in self.criteria]
        shape = ", ".join(f'"{c.name}": <{low}-{high}>' for c in self.criteria)
        lines += [
            "",
            "Answer with one JSON object and nothing else: "
            f'{{{shape}, "{RATIONALE}": "<one or two sentences>"}}',
        ]
        return "\n".join(lines)


def verdict_schema(rubric: Rubric) -> dict[str, Any]:
    """The JSON Schema of a verdict on ``rubric``: ``{criterion: int in scale, ...,
    "rationale": str}``, every key required and no other key allowed (so it also satisfies
    OpenAI's strict structured-output rules)."""
    low, high = rubric.scale
    properties: dict[str, Any] = {
        c.name: {"type": "integer", "minimum": low, "maximum": high, "description": c.description}
        for c in rubric.criteria
    }
    properties[RATIONALE] = {"type": "string", "maxLength": rubric.rationale_max_chars}
    return {
        "title": f"{rubric.name}_verdict",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


DEFAULT_RUBRICS: dict[str, Rubric] = {
    "prompt_adherence": Rubric(
        name="prompt_adherence",
        instructions="You rate how well a generated image follows the prompt it was made from.",
        template="Prompt: {{ prompt }}",
        columns=["prompt"],
        criteria=[
            Criterion(
                name="adherence",
                description="every object, attribute, count and relation in the prompt is shown",
                weight=2.0,
            ),
            Criterion(
                name="text_rendering",
                description="any text the prompt quotes is rendered legibly and spelled exactly "
                "(5 when the prompt quotes no text)",
            ),
            Criterion(name="quality", description="no visible artefacts; a coherent image"),
        ],
    ),
    "caption_faithfulness": Rubric(
        name="caption_faithfulness",
        instructions="You check a caption against the image it describes.",
        template="Caption: {{ caption }}",
        columns=["caption"],
        criteria=[
            Criterion(
                name="faithfulness",
                description="everything the caption states is visible in the image (no "
                "hallucinated objects, colours, counts or text)",
                weight=2.0,
            ),
            Criterion(name="coverage", description="the caption mentions the main content"),
        ],
    ),
    "vqa_correctness": Rubric(
        name="vqa_correctness",
        instructions="You check the answer to a question about the image.",
        template="Question: {{ question }}\nAnswer: {{ answer }}",
        columns=["question", "answer"],
        criteria=[
            Criterion(
                name="correctness",
                description="the answer is right according to the image",
                weight=3.0,
            ),
            Criterion(name="grounding", description="the answer relies on what is visible"),
        ],
    ),
    "image_quality": Rubric(
        name="image_quality",
        instructions="You rate the technical quality of an image.",
        criteria=[
            Criterion(
                name="artefacts",
                description="free of artefacts: no distorted hands or faces, broken text, "
                "melted objects, seams, noise or compression blocks",
            ),
            Criterion(name="aesthetics", description="pleasing composition, lighting and focus"),
        ],
    ),
}
"""The shipped rubrics, by name (``VisionJudge(rubric="caption_faithfulness")``)."""


def resolve_rubric(value: Any) -> Rubric:
    """A `Rubric` from a rubric, a default rubric's name, or a dict (from YAML)."""
    if isinstance(value, Rubric):
        return value
    if isinstance(value, str):
        try:
            return DEFAULT_RUBRICS[value]
        except KeyError:
            raise ValueError(
                f"unknown rubric {value!r}; the shipped ones are {sorted(DEFAULT_RUBRICS)}, or "
                "give a rubric (name, instructions, criteria...)"
            ) from None
    return Rubric.model_validate(value)


__all__ = [
    "DEFAULT_RUBRICS",
    "RATIONALE",
    "Criterion",
    "Rubric",
    "resolve_rubric",
    "verdict_schema",
]
