"""`VisionJudge`: a vision-language model rates an image (with its prompt, caption or Q&A)
against a rubric and answers through structured output.

The judge is an ordinary `Task`: it works with every backend that honours
``structured_output=`` (OpenAI-compatible servers, Anthropic, local models that constrain
decoding), streams rows like any task and is cached like any task. A reply that does not parse
or does not fit the rubric's schema (a missing criterion, a score off the scale) fails its row,
with the validation message under ``pixtill_metadata["error_<step name>"]``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from pixtill.images import DEFAULT_MAX_PIXELS, ImageType
from pixtill.models.llms.base import ChatType
from pixtill.models.structured import StructuredOutputSpec
from pixtill.prompts import PromptTemplate
from pixtill.steps.quality.rubrics import RATIONALE, Rubric, resolve_rubric, verdict_schema
from pixtill.steps.tasks.base import Task
from pixtill.steps.tasks.text_generation_with_image import image_parts
from pixtill.steps.typing import StepColumns

IMAGE_COLUMN = "image"
SCORES_COLUMN = "judge_scores"
SCORE_COLUMN = "judge_score"
RATIONALE_COLUMN = "judge_rationale"


class VisionJudge(Task):
    """Rate the ``image`` column against ``rubric`` with a vision-language model.

    ``rubric`` is a `Rubric` or the name of a shipped one (``prompt_adherence`` reads
    ``prompt``; ``caption_faithfulness`` reads ``caption``; ``vqa_correctness`` reads
    ``question`` and ``answer``; ``image_quality`` reads only the image). Other column names
    are mapped with ``input_mappings`` as usual.

    Output columns (``None`` on a failed row):

    - ``judge_scores``: ``{criterion: int}``, each within the rubric's scale;
    - ``judge_score``: their weighted mean (float, on the same scale, e.g. 1-5);
    - ``judge_rationale``: the judge's short reason;
    - ``model_name``: the judge model.
    """

    rubric: Rubric = Field(description="A Rubric, or a shipped rubric's name.")
    system_prompt: str | None = Field(
        default=None, description="System prompt; by default the rubric's instructions."
    )
    image_type: ImageType = Field(default="auto", description="What the image column holds.")
    image_max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=1, description="Refuse images with more pixels than this."
    )
    validate_images: bool = Field(
        default=True, description="Decode-check local images before sending."
    )

    _template: PromptTemplate | None = PrivateAttr(default=None)

    @field_validator("rubric", mode="before")
    @classmethod
    def _resolve(cls, value: Any) -> Rubric:
        return resolve_rubric(value)

    @property
    def inputs(self) -> StepColumns:
        return {IMAGE_COLUMN: True, **dict.fromkeys(self.rubric.columns, True)}

    @property
    def outputs(self) -> StepColumns:
        return [SCORES_COLUMN, SCORE_COLUMN, RATIONALE_COLUMN, "model_name"]

    def image_columns(self) -> list[str]:
        return [self.input_mappings.get(IMAGE_COLUMN, IMAGE_COLUMN)]

    def load(self) -> None:
        self._compiled()
        super().load()

    def _compiled(self) -> PromptTemplate:
        if self._template is None:
            template = PromptTemplate(self.rubric.template or " ")
            template.check_columns(self.rubric.columns, owner=f"step {self.name!r}")
            self._template = template
        return self._template

    def get_structured_output(self) -> StructuredOutputSpec:
        """The rubric's verdict schema (see `verdict_schema`)."""
        return verdict_schema(self.rubric)

    def format_input(self, input: dict[str, Any]) -> ChatType:
        images = image_parts(
            input[IMAGE_COLUMN],
            self.image_type,
            column=IMAGE_COLUMN,
            max_pixels=self.image_max_pixels,
            validate=self.validate_images,
        )
        context = self._compiled().render({c: input[c] for c in self.rubric.columns}).strip()
        text = f"{context}\n\n{self.rubric.describe()}" if context else self.rubric.describe()
        system = self.system_prompt or (
            "You are a strict, consistent judge of images. Judge only what you can see."
        )
        return [
            {"role": "system", "content": system},
            {"role": "user", "content": [*images, {"type": "text", "text": text}]},
        ]

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        verdict = self.structured_reply(output)  # validated once, when the reply came in
        scores = {c.name: int(verdict[c.name]) for c in self.rubric.criteria}
        return {
            SCORES_COLUMN: scores,
            SCORE_COLUMN: round(self.rubric.overall(scores), 4),
            RATIONALE_COLUMN: str(verdict[RATIONALE]),
        }


__all__ = ["RATIONALE_COLUMN", "SCORES_COLUMN", "SCORE_COLUMN", "VisionJudge"]
