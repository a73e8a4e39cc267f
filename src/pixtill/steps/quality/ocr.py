"""`OCR`: read the text in images with RapidOCR, and score how faithfully an image renders the
text its prompt quotes.

RapidOCR runs PaddleOCR's PP-OCRv4 detection and recognition networks (Apache-2.0) with
onnxruntime on CPU. The `rapidocr_onnxruntime` package ships the ONNX weights inside the wheel
(``rapidocr_onnxruntime/models/*.onnx``), so nothing is downloaded at run time; install it with
``pip install 'pixtill[ocr]'``.
"""

from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.errors import RowError, locate
from pixtill.images import ImageError, ImageRef
from pixtill.run_report import INPUT_KIND, MODEL_KIND
from pixtill.steps.base import Step, StepInput
from pixtill.steps.metadata import check_metadata, failed_row
from pixtill.steps.typing import StepColumns, StepOutput

TEXT_COLUMN = "ocr_text"
CONFIDENCE_COLUMN = "ocr_confidence"
FIDELITY_COLUMN = "text_fidelity"
QUOTED_COLUMN = "quoted_text"

# "double", 'single' (not an apostrophe inside a word), “curly” and «guillemets».
_QUOTED = re.compile(r"\"([^\"]+)\"|(?<!\w)'([^']+)'(?!\w)|“([^”]+)”|«([^»]+)»")


def quoted_text(prompt: str) -> list[str]:
    """The texts a prompt asks to be written, i.e. what it quotes:
    ``'a sign that says "OPEN 24/7"'`` -> ``["OPEN 24/7"]``."""
    return [next(g for g in match.groups() if g) for match in _QUOTED.finditer(prompt)]


def _normalise(text: str) -> str:
    """Lower case letters and digits only: OCR output differs in spacing and punctuation
    (PP-OCR often drops spaces), which says nothing about how well the text was rendered."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def text_similarity(expected: str, read: str) -> float:
    """How well ``expected`` appears inside ``read`` (0-1): the best similarity ratio
    (difflib's ``2*M/T``) of ``expected`` against any equally long window of ``read``, after
    `_normalise`. 1.0 means spelled exactly; an empty expectation is 1.0."""
    want, have = _normalise(expected), _normalise(read)
    if not want:
        return 1.0
    if not have:
        return 0.0
    if want in have:
        return 1.0
    width = len(want)
    best = 0.0
    for start in range(max(1, len(have) - width + 1)):
        ratio = difflib.SequenceMatcher(None, want, have[start : start + width]).ratio()
        best = max(best, ratio)
    return best


def text_fidelity(prompt: str, read: str) -> float | None:
    """The mean `text_similarity` of each text ``prompt`` quotes against the text ``read`` in
    the image (0-1), or None when the prompt quotes nothing."""
    expected = quoted_text(prompt)
    if not expected:
        return None
    return round(sum(text_similarity(q, read) for q in expected) / len(expected), 4)


class _Engine:
    """The loaded RapidOCR engine; copies start empty (a replica builds its own)."""

    def __init__(self) -> None:
        self.ocr: Any = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Engine], tuple[()]]:
        return (_Engine, ())


class OCR(Step):
    """Read the text in each row's ``image`` (RapidOCR, PP-OCRv4 models shipped in the package).

    Output columns: ``ocr_text`` (the lines read, top to bottom, joined by newlines; ``""``
    when there is none) and ``ocr_confidence`` (the mean recognition confidence of the lines,
    0-1; ``None`` without text). With ``score_prompt_text`` the step also reads ``prompt`` and
    writes ``quoted_text`` (what the prompt quotes) and ``text_fidelity`` (0-1, see
    `text_fidelity`; ``None`` when the prompt quotes nothing), to check text-to-image output.

    ``max_side`` caps the longer side the detector works at (RapidOCR's own default scales the
    *shorter* side up to 736 px, which makes a wide sign several times slower to read);
    ``threads`` is onnxruntime's thread count per model (None: its default, all cores). A row
    whose image cannot be read, or whose ``pixtill_metadata`` is not a dict, gets ``None``
    columns and its reason (step, row, column) in ``pixtill_metadata["error_<step name>"]``.
    """

    score_prompt_text: bool = Field(default=False, description="Also score quoted prompt text.")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="Drop lines below this.")
    max_side: int = Field(default=960, ge=32, description="Longest side the detector sees.")
    threads: int | None = Field(default=None, ge=1, description="onnxruntime threads per model.")

    _engine: _Engine = PrivateAttr(default_factory=_Engine)

    @property
    def inputs(self) -> StepColumns:
        return ["image", "prompt"] if self.score_prompt_text else ["image"]

    @property
    def outputs(self) -> StepColumns:
        columns = [TEXT_COLUMN, CONFIDENCE_COLUMN]
        return [*columns, QUOTED_COLUMN, FIDELITY_COLUMN] if self.score_prompt_text else columns

    def image_columns(self) -> list[str]:
        return [self.input_mappings.get("image", "image")]

    def load(self) -> None:
        super().load()
        with self._engine.lock:
            if self._engine.ocr is None:
                self._engine.ocr = self._build()

    def _build(self) -> Any:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ImportError(
                f"the OCR step needs rapidocr_onnxruntime: pip install 'pixtill[ocr]' ({exc})"
            ) from exc
        options: dict[str, Any] = {
            "det_limit_type": "max",
            "det_limit_side_len": self.max_side,
            "text_score": self.min_confidence,
        }
        if self.threads is not None:
            options["intra_op_num_threads"] = self.threads
            options["inter_op_num_threads"] = 1
        return RapidOCR(**options)

    def unload(self) -> None:
        self._engine.ocr = None
        super().unload()

    def read(self, image: Any) -> tuple[str, float | None]:
        """(text, mean confidence) of one image in any form `ImageRef` accepts; `load` first."""
        engine = self._engine.ocr
        if engine is None:
            raise RuntimeError(f"step {self.name!r}: call load() before reading")
        picture = ImageRef.from_value(image).to_pil()
        if picture.mode != "RGB":
            picture = picture.convert("RGB")
        with self._engine.lock:  # one onnxruntime session pair per step, used serially
            result, _ = engine(picture)
        lines = [(str(text), float(score)) for _, text, score in (result or [])]
        if not lines:
            return "", None
        confidence = sum(score for _, score in lines) / len(lines)
        return "\n".join(text for text, _ in lines), round(confidence, 4)

    def process(self, inputs: StepInput) -> StepOutput:
        out = []
        for index, row in enumerate(inputs):
            new = dict(row)
            error: str | None = None
            kind = INPUT_KIND  # until the image is decoded, a failure is the row's
            try:
                check_metadata(row, self.name, index)
                picture = ImageRef.from_value(row["image"]).to_pil()
                kind = MODEL_KIND
                text, confidence = self.read(picture)
            except RowError as exc:
                error = str(exc)
            except (ImageError, OSError, ValueError) as exc:
                error = locate(str(exc), step=self.name, row=index, column="image")
            if error is not None:
                self._logger.warning("%s", error)
                outputs = self.get_outputs()
                out.append(failed_row(row, step=self.name, error=error, kind=kind, outputs=outputs))
                continue
            new[TEXT_COLUMN], new[CONFIDENCE_COLUMN] = text, confidence
            if self.score_prompt_text:
                prompt = row["prompt"] if isinstance(row["prompt"], str) else ""
                new[QUOTED_COLUMN] = quoted_text(prompt)
                new[FIDELITY_COLUMN] = text_fidelity(prompt, text)
            out.append(new)
        yield out


__all__ = ["OCR", "quoted_text", "text_fidelity", "text_similarity"]
