"""The demo's quality branch: documents and signs drawn by code, read by OCR, judged,
deduplicated and filtered, with the kept and the dropped rows in two datasets.

The documents are drawn with PIL from known text (`DOCUMENTS`), some with the kind of fault an
image model makes (a misspelling, faint text) and two copies of earlier ones (re-encoded and
resized), so every gate has something to catch. `OCR` reads them with the real PP-OCR models that
ship inside `rapidocr_onnxruntime`: its output is real and can be checked against the images.

The judge is `VisionJudge` driven by `ContrastJudgeLLM`, a deterministic offline stand-in that
measures contrast and edge sharpness in the image and answers in the rubric's JSON shape through
``structured_output`` exactly as a served VLM would. It is NOT a vision-language model; point
the same step at a real VLM (``OpenAILLM`` on a vLLM server, ...) for real judgements.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageStat

from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.models.structured import StructuredOutputNotSupportedError, json_schema_of

KEPT_LEAF = "quality_kept"
DROPPED_LEAF = "quality_dropped"
GATES = ("unique", "text_matches", "legible")

# (file stem, kind, text drawn, text asked for, ink, paper)
DOCUMENTS: list[tuple[str, str, str, str, str, str]] = [
    ("shop-sign", "sign", "OPEN 9 TO 5", "OPEN 9 TO 5", "black", "white"),
    ("parking-sign", "sign", "NO PARKING", "NO PARKING", "white", "#b01010"),
    ("bakery-sign", "sign", "BAKFRY", "BAKERY", "#402000", "#f0e0b0"),  # misspelt
    ("label", "label", "FRAGILE", "FRAGILE", "#c00000", "white"),
    ("receipt", "receipt", "COFFEE 3.50\nTOTAL 3.50", "TOTAL 3.50", "black", "#fafaf0"),
    ("exit-sign", "sign", "EXIT", "EXIT", "#8c8c8c", "#969696"),  # faint: low contrast
    ("invoice", "document", "INVOICE 2041\nDUE 30 DAYS", "INVOICE 2041", "navy", "white"),
    ("poster", "poster", "SALE", "SALE", "black", "#ffd0d0"),  # blurred below
]
# Near copies of earlier documents: (file name, source stem, how).
# Their names sort after the originals', so dedup (which keeps the first of equals) keeps those.
COPIES = [("shop-sign_copy.jpg", "shop-sign", "jpeg"), ("label_small.png", "label", "resize")]
# Drawn sharp, then blurred: still readable by OCR, but a legibility judge should mark it down.
BLURRED = {"poster"}


def draw_document(
    text: str, ink: str, paper: str, size: tuple[int, int] = (360, 120)
) -> Image.Image:
    """``text`` (lines split on newlines) in a large font on a plain card."""
    font = ImageFont.load_default(size=34)
    lines = text.split("\n")
    height = max(size[1], 30 + 46 * len(lines))
    image = Image.new("RGB", (size[0], height), paper)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((22, 24 + 46 * number), line, fill=ink, font=font)
    draw.rectangle((4, 4, size[0] - 5, height - 5), outline=ink, width=3)
    return image


def write_documents(folder: Path) -> list[dict[str, Any]]:
    """Draw `DOCUMENTS` and `COPIES` into ``folder`` with a ``metadata.jsonl``; return the
    records (``file_name``, ``kind``, ``expected_text``, ``prompt``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and old.suffix in (".png", ".jpg", ".jsonl"):
            old.unlink()
    records: list[dict[str, Any]] = []
    drawn: dict[str, tuple[Image.Image, dict[str, Any]]] = {}
    for stem, kind, text, asked, ink, paper in DOCUMENTS:
        image = draw_document(text, ink, paper)
        if stem in BLURRED:
            image = image.filter(ImageFilter.GaussianBlur(3))
        name = f"{stem}.png"
        image.save(folder / name)
        record = {
            "file_name": name,
            "kind": kind,
            "expected_text": asked,
            "prompt": f'a {kind} that reads "{asked}"',
        }
        records.append(record)
        drawn[stem] = (image, record)
    for name, source, how in COPIES:
        image, record = drawn[source]
        if how == "jpeg":
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
            (folder / name).write_bytes(buffer.getvalue())
        else:
            image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(folder / name)
        records.append({**record, "file_name": name})
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    return records


class ContrastJudgeLLM(LLM):
    """A deterministic offline stand-in for a VLM judge (for the demo and tests).

    It honours ``structured_output``: for each integer field of the schema it measures the
    image it was sent (``contrast``: spread of grey levels; ``sharpness``: mean edge strength)
    and maps it onto the field's range. Raises `StructuredOutputNotSupportedError` without a
    schema and for criteria it cannot measure. Not a language model: its rationale is a fixed
    sentence with the measurements.
    """

    @property
    def model_name(self) -> str:
        return "pixtill/offline-contrast-judge"

    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        spec = kwargs.get("structured_output")
        if spec is None:
            raise StructuredOutputNotSupportedError("the offline judge only answers a schema")
        schema = json_schema_of(spec)
        return [{"generations": [self._verdict(chat, schema)] * num_generations} for chat in inputs]

    def _verdict(self, chat: FormattedInput, schema: dict[str, Any]) -> str:
        from pixtill.models.llms._wire import _image_of

        image = None
        for part in chat[-1]["content"]:
            ref = _image_of(part) if isinstance(part, dict) else None
            if ref is not None:
                image = ref.to_pil().convert("L")
                break
        if image is None:
            raise ValueError("the judge was sent no image")
        measures = {
            "contrast": min(1.0, ImageStat.Stat(image).stddev[0] / 100),
            "sharpness": min(
                1.0, ImageStat.Stat(image.filter(ImageFilter.FIND_EDGES)).mean[0] / 40
            ),
        }
        verdict: dict[str, Any] = {}
        for name, field in schema["properties"].items():
            if field.get("type") != "integer":
                continue
            if name not in measures:
                raise StructuredOutputNotSupportedError(f"cannot measure criterion {name!r}")
            low, high = field["minimum"], field["maximum"]
            verdict[name] = low + round((high - low) * measures[name])
        verdict["rationale"] = ", ".join(f"{k} {v:.2f}" for k, v in measures.items())
        return json.dumps(verdict)


def build_branch(documents_dir: Path) -> Any:
    """Add the quality branch to the active ``with Pipeline()`` block: load documents >> OCR
    >> judge >> dedup >> three gates >> kept / dropped leaves. Returns the loader."""
    from pixtill.steps.generators.images_folder import LoadImagesFromFolder
    from pixtill.steps.quality import (
        OCR,
        Criterion,
        FilterRows,
        ImageDeduplication,
        Rubric,
        SelectRows,
        VisionJudge,
    )

    legibility = Rubric(
        name="legibility",
        instructions="You rate how easy the text in this image is to read.",
        criteria=[
            Criterion(name="contrast", description="the text stands out from its background"),
            Criterion(name="sharpness", description="the letters have crisp edges"),
        ],
    )
    load = LoadImagesFromFolder(name="load_documents", folder=documents_dir, batch_size=16)
    ocr = OCR(name="read_text", score_prompt_text=True, threads=1, input_batch_size=16)
    judge = VisionJudge(
        name="judge", llm=ContrastJudgeLLM(), rubric=legibility, input_batch_size=16
    )
    dedup = ImageDeduplication(
        name="dedup", drop_duplicates=False, keep="best", score_column="text_fidelity"
    )
    unique = FilterRows(name="unique", conditions="not is_duplicate")
    text = FilterRows(name="text_matches", conditions=["not failed", "text_fidelity >= 0.9"])
    legible = FilterRows(name="legible", conditions="judge_score >= 3")
    kept = SelectRows(name=KEPT_LEAF, where="kept")
    dropped = SelectRows(name=DROPPED_LEAF, where="not kept")
    load >> ocr
    ocr >> judge
    judge >> dedup
    dedup >> unique
    unique >> text
    text >> legible
    legible >> [kept, dropped]
    return load


def gate_counts(kept: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> list[str]:
    """Lines of the summary: how many rows reached and passed each gate, and why rows fell."""
    reasons = Counter(str(row["drop_reason"]).split(":", 1)[0] for row in dropped)
    reaching = len(kept) + len(dropped)
    lines = []
    for gate in GATES:
        failed = reasons.get(gate, 0)
        lines.append(f"  {gate:<14} {reaching - failed:>3} of {reaching:>3} passed")
        reaching -= failed
    return lines


def summary_lines(
    kept: list[dict[str, Any]], dropped: list[dict[str, Any]], dataset_dir: Path
) -> list[str]:
    """The demo summary's quality section: gates, what OCR read, and why rows were dropped."""
    lines = ["", "quality branch (documents drawn by code):", *gate_counts(kept, dropped)]
    lines += ["", "what OCR read (real PP-OCR models, offline):"]
    for row in sorted(kept + dropped, key=lambda r: str(r["path"])):
        fidelity, score = row.get("text_fidelity"), row.get("judge_score")
        read = " / ".join(str(row.get("ocr_text") or "").split("\n"))
        lines.append(
            f"  {row['path']:<20} asked {row['expected_text']!r:<16} read {read!r:<26} "
            f"fidelity {'-' if fidelity is None else f'{fidelity:.2f}'}  "
            f"judge {'-' if score is None else f'{score:.1f}'}"
        )
    lines += ["", "dropped, with the reason:"]
    lines += [f"  {row['path']:<20} {row['drop_reason']}" for row in dropped]
    lines += [
        f"  kept rows:    {dataset_dir / KEPT_LEAF}",
        f"  dropped rows: {dataset_dir / DROPPED_LEAF}",
        "NOTE: the judge in this branch is a deterministic offline stand-in (it measures "
        "contrast and sharpness), not a vision-language model; use VisionJudge with a real VLM "
        "for real judgements.",
    ]
    return lines


__all__ = [
    "DOCUMENTS",
    "DROPPED_LEAF",
    "KEPT_LEAF",
    "ContrastJudgeLLM",
    "build_branch",
    "draw_document",
    "gate_counts",
    "summary_lines",
    "write_documents",
]
