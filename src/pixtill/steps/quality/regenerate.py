"""`JudgedImageGeneration` / `JudgedImageEditing`: make an image, judge it, make it again while
it scores too low.

Rejection sampling with a budget: every row gets at most ``max_attempts`` images; a row stops as
soon as one scores at least ``threshold``, and otherwise keeps its best-scoring attempt. Each is a
task like `ImageGeneration` / `ImageEditing` (same inputs, outputs and model), so the pipeline
caches its finished rows: a re-run sends nothing for the rows that already went through the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from pixtill.models.request import ModelRequest
from pixtill.steps.base import Step
from pixtill.steps.metadata import metadata_of
from pixtill.steps.tasks.base import METADATA_COLUMN, _Task
from pixtill.steps.tasks.image_editing import ImageEditing
from pixtill.steps.tasks.image_generation import ImageGeneration
from pixtill.steps.typing import Row, StepColumns

ATTEMPTS_COLUMN = "attempts"


class _JudgedImages(_Task):
    """The judge-and-retry loop around an image task (see `JudgedImageGeneration`).

    ``judge`` is any step that reads the row as this step writes it and writes a number in
    ``score_column``: a `VisionJudge` (``judge_score``, e.g. with the
    ``prompt_adherence`` rubric), a `CLIPScore` with ``input_mappings={"text": "prompt"}``
    (``clip_score``), an `OCR` with ``score_prompt_text=True`` (``text_fidelity``)... It is part
    of this step, not a node of the graph: built inside a ``with Pipeline()`` block it is taken
    out of the graph again. If this step maps ``image`` to another name, give the judge the
    matching ``input_mappings``.

    Attempt ``k`` (0-based) passes ``seed + k`` when the model's ``generation_kwargs`` hold a
    ``seed``, so a seeded model draws a new image each time. A row stops at the first score
    ``>= threshold``; after ``max_attempts`` it keeps the attempt with the best score (a failed
    generation or judgement counts as no score).

    Output columns: those of the image task and of the judge (except its ``model_name``), all
    from the kept attempt, plus ``attempts`` (how many images were made for the row). Every
    attempt's score, seed and error is kept in ``pixtill_metadata["attempts_<step name>"]``.
    """

    _IMAGE_OUTPUT: ClassVar[str] = "image"

    judge: Step = Field(description="The step that scores each generated image.")
    score_column: str = Field(default="judge_score", description="The judge's score column.")
    threshold: float = Field(description="A score at or above this stops the regeneration.")
    max_attempts: int = Field(default=3, ge=1, le=100, description="Images per row at most.")

    _attempt: int = PrivateAttr(default=0)

    @field_validator("judge")
    @classmethod
    def _detach(cls, judge: Step) -> Step:
        graph = judge._graph
        steps = getattr(graph, "steps", None)
        if isinstance(steps, dict) and steps.get(judge.name) is judge:
            del steps[judge.name]
        judge._graph = None
        return judge

    @property
    def outputs(self) -> StepColumns:
        judged = [c for c in self._judge_columns() if c != "model_name"]
        return [*super().outputs, *judged, ATTEMPTS_COLUMN]

    def _judge_columns(self) -> list[str]:
        names = [self.judge.output_mappings.get(c, c) for c in self.judge.get_outputs()]
        return names if self.score_column in names else [*names, self.score_column]

    @property
    def supports_streaming(self) -> bool:
        return False  # rows go through the whole loop a batch at a time (see process_rows)

    def load(self) -> None:
        super().load()
        self.judge.load()

    def unload(self) -> None:
        self.judge.unload()
        super().unload()

    # -- one attempt ---------------------------------------------------------------------
    def model_request(self, formatted: Any) -> ModelRequest[Any]:
        """The image task's request, with ``seed + k`` on attempt ``k`` when the model's
        settings hold a seed. The image task sends it: a failed request fails its row, a dead
        server (`ModelUnavailableError`) stops the run as for any task."""
        request = super().model_request(formatted)
        seed = request.settings.get("seed")
        if self._attempt and isinstance(seed, int) and not isinstance(seed, bool):
            return replace(request, settings={**request.settings, "seed": seed + self._attempt})
        return request

    def _judged(self, rows: list[Row]) -> list[Row]:
        """The judge's rows for ``rows`` (a row without an image is not sent to it)."""
        image = self.output_mappings.get(self._IMAGE_OUTPUT, self._IMAGE_OUTPUT)
        todo = [i for i, row in enumerate(rows) if row.get(image) is not None]
        judged: dict[int, Row] = {}
        if todo:
            out = [
                r for b in self.judge.process_applying_mappings([rows[i] for i in todo]) for r in b
            ]
            if len(out) != len(todo):
                raise RuntimeError(
                    f"step {self.name!r}: the judge {self.judge.name!r} returned {len(out)} rows "
                    f"for {len(todo)}; a judge must score every row it gets"
                )
            columns = [c for c in self._judge_columns() if c != "model_name"]
            for i, scored in zip(todo, out):
                # Only the judge's own columns: the image model's ``model_name`` stays.
                merged = {**rows[i], **{c: scored.get(c) for c in columns}}
                merged[METADATA_COLUMN] = {**metadata_of(rows[i]), **metadata_of(scored)}
                judged[i] = merged
        return [judged.get(i, row) for i, row in enumerate(rows)]

    # -- the loop ------------------------------------------------------------------------
    def _score_of(self, row: Row) -> float | None:
        score = row.get(self.score_column)
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return None
        return float(score)

    def _record(self, before: Row, after: Row, attempt: int, seed: Any) -> dict[str, Any]:
        """One attempt for the metadata: its number, score, seed and new errors."""
        record: dict[str, Any] = {"attempt": attempt + 1, "score": self._score_of(after)}
        if isinstance(seed, int):
            record["seed"] = seed + attempt
        old = metadata_of(before)
        errors = [
            str(value)
            for key, value in metadata_of(after).items()
            if key.startswith("error_") and value and key not in old
        ]
        if errors:
            record["error"] = "; ".join(errors)
        return record

    def process_rows(
        self, rows: list[Row], row_numbers: Sequence[int] | None = None
    ) -> list[list[Row]]:
        """Generate, judge and regenerate each row until it passes or runs out of attempts."""
        numbers = list(row_numbers) if row_numbers is not None else list(range(len(rows)))
        history: list[list[dict[str, Any]]] = [[] for _ in rows]
        best: list[tuple[float, Row] | None] = [None] * len(rows)
        last: list[Row] = list(rows)
        pending = list(range(len(rows)))
        seed = self.model.get_generation_kwargs().get("seed")
        for attempt in range(self.max_attempts):
            if not pending:
                break
            self._attempt = attempt
            try:
                produced = super().process_rows(
                    [rows[i] for i in pending], [numbers[i] for i in pending]
                )
            finally:
                self._attempt = 0
            judged = self._judged([group[0] for group in produced])
            still: list[int] = []
            for i, row in zip(pending, judged):
                history[i].append(self._record(rows[i], row, attempt, seed))
                last[i] = row
                score = self._score_of(row)
                previous = best[i]
                if score is not None and (previous is None or score > previous[0]):
                    best[i] = (score, row)
                if score is None or score < self.threshold:
                    still.append(i)
            pending = still
        out: list[list[Row]] = []
        for i in range(len(rows)):
            chosen = best[i]
            kept = dict(chosen[1] if chosen is not None else last[i])
            kept[ATTEMPTS_COLUMN] = len(history[i])
            meta = dict(metadata_of(kept))
            meta[f"attempts_{self.name}"] = history[i]
            kept[METADATA_COLUMN] = meta
            for column in self._judge_columns():
                kept.setdefault(column, None)
            out.append([kept])
        return out


class JudgedImageGeneration(_JudgedImages, ImageGeneration):
    """`ImageGeneration` that judges each image and regenerates the rows below a threshold.

    The judge reads the row as this step writes it: ``prompt`` and ``image`` (a `VisionJudge`
    with the ``prompt_adherence`` rubric, a `CLIPScore` with ``input_mappings={"text":
    "prompt"}``, an `OCR` with ``score_prompt_text=True``...). See `_JudgedImages` for the loop:
    ``judge``, ``score_column``, ``threshold``, ``max_attempts``, ``seed + k`` per attempt, the
    ``attempts`` column and ``pixtill_metadata["attempts_<step name>"]``.
    """


class JudgedImageEditing(_JudgedImages, ImageEditing):
    """`ImageEditing` that judges each edit and edits again the rows below a threshold.

    The judge reads the row as this step writes it: the source ``image``, the instruction
    ``prompt`` and the result ``edited_image``; give it ``input_mappings={"image":
    "edited_image"}`` to rate the result (a rubric that compares both images can read both).
    The loop is that of `JudgedImageGeneration`.
    """

    _IMAGE_OUTPUT: ClassVar[str] = "edited_image"


__all__ = ["ATTEMPTS_COLUMN", "JudgedImageEditing", "JudgedImageGeneration"]
