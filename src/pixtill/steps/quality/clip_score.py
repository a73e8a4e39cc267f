"""`CLIPScore`: how well an image matches a text, by the cosine of their CLIP embeddings.

CLIPScore (Hessel et al., "CLIPScore: A Reference-free Evaluation Metric for Image Captioning",
EMNLP 2021) is ``w * max(cos(E_image, E_text), 0)``; like torchmetrics' ``CLIPScore`` we use
``w = 100``, so scores run from 0 to 100 (well-matched pairs typically score about 30-35 with
``openai/clip-vit-base-patch32``; unrelated ones under 20).
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.errors import RowError, locate
from pixtill.images import ImageError, ImageRef
from pixtill.models.torch_support import (
    dtype_keyword,
    free_accelerator_memory,
    import_module,
    import_torch,
    resolve_device,
    resolve_dtype,
)
from pixtill.run_report import INPUT_KIND
from pixtill.steps.base import Step, StepInput
from pixtill.steps.metadata import check_metadata, failed_row
from pixtill.steps.typing import StepColumns, StepOutput

SCORE_COLUMN = "clip_score"


class _Loaded:
    """The model and processor `load` acquired. Copies start empty, so a replica loads its
    own weights instead of deep-copying the original's."""

    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.device: str | None = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Loaded], tuple[()]]:
        return (_Loaded, ())


class CLIPScore(Step):
    """Score each row's ``image`` against its ``text`` with a CLIP-family model (0-100).

    ``model`` is a local folder or a hub id loadable with transformers' ``AutoModel`` and
    ``AutoProcessor`` that has ``get_image_features`` / ``get_text_features`` (CLIP, SigLIP...),
    e.g. ``openai/clip-vit-base-patch32``. Rows go through the model ``batch_size`` at a time;
    ``device`` and ``torch_dtype`` are chosen as for `TransformersLLM` (cuda > mps > cpu;
    bfloat16 on a GPU that has it, float32 on CPU). Map other columns with
    ``input_mappings={"text": "prompt"}``. Texts longer than the model's context are truncated.

    Output column: ``clip_score`` (float, 0-100), ``None`` for a row whose image cannot be
    read or whose text is not a string; the reason goes to
    ``pixtill_metadata["error_<step name>"]`` and the other rows are scored as usual.
    """

    model: str = Field(description="A local folder or a Hugging Face hub id.")
    revision: str | None = Field(default=None, description="Hub revision.")
    device: str | None = Field(default=None, description="'cuda', 'mps', 'cpu'; None: best.")
    torch_dtype: str = Field(default="auto", description="'auto' or a dtype name.")
    batch_size: int = Field(default=32, ge=1, description="Image-text pairs per forward pass.")

    _loaded: _Loaded = PrivateAttr(default_factory=_Loaded)

    @property
    def inputs(self) -> StepColumns:
        return ["image", "text"]

    @property
    def outputs(self) -> StepColumns:
        return [SCORE_COLUMN]

    def image_columns(self) -> list[str]:
        return [self.input_mappings.get("image", "image")]

    def load(self) -> None:
        super().load()
        loaded = self._loaded
        with loaded.lock:
            if loaded.model is not None:
                return
            import_torch()
            transformers = import_module("transformers", "CLIPScore")
            device = resolve_device(self.device)
            dtype = resolve_dtype(self.torch_dtype, device)
            options: dict[str, Any] = {}
            if self.revision is not None:
                options["revision"] = self.revision
            loaded.processor = transformers.AutoProcessor.from_pretrained(self.model, **options)
            model = transformers.AutoModel.from_pretrained(
                self.model, **options, **{dtype_keyword("transformers"): dtype}
            )
            loaded.model = model.to(device).eval()
            loaded.device = device

    def unload(self) -> None:
        loaded = self._loaded
        device = loaded.device
        loaded.model = loaded.processor = loaded.device = None
        free_accelerator_memory(device)
        super().unload()

    def scores(self, images: list[Any], texts: list[str]) -> list[float]:
        """CLIPScores (0-100) of aligned PIL images and texts; `load` first."""
        torch = import_torch()
        loaded = self._loaded
        if loaded.model is None:
            raise RuntimeError(f"step {self.name!r}: call load() before scoring")
        out: list[float] = []
        with loaded.lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = loaded.processor(
                    text=texts[start : start + self.batch_size],
                    images=images[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                )
                model = loaded.model
                dtype = next(model.parameters()).dtype
                image_features = _features(
                    model.get_image_features(
                        pixel_values=batch["pixel_values"].to(loaded.device, dtype=dtype)
                    )
                )
                text_inputs = {
                    k: v.to(loaded.device) for k, v in batch.items() if k != "pixel_values"
                }
                text_features = _features(model.get_text_features(**text_inputs))
                cosine = torch.nn.functional.cosine_similarity(
                    image_features.float(), text_features.float(), dim=-1
                )
                out.extend((100 * cosine.clamp(min=0)).tolist())
        return out

    def process(self, inputs: StepInput) -> StepOutput:
        good: list[int] = []
        images: list[Any] = []
        errors: dict[int, str] = {}
        for index, row in enumerate(inputs):
            column = "text"
            try:
                check_metadata(row, self.name, index)
                text = row["text"]
                if not isinstance(text, str):
                    raise ValueError(f"expected a string, got {type(text).__name__}")
                column = "image"
                image = ImageRef.from_value(row["image"]).to_pil()
                images.append(image if image.mode == "RGB" else image.convert("RGB"))
                good.append(index)
            except RowError as exc:
                errors[index] = str(exc)
            except (ImageError, OSError, ValueError, TypeError) as exc:
                errors[index] = locate(str(exc), step=self.name, row=index, column=column)
            if index in errors:
                self._logger.warning("%s", errors[index])
        scores = dict(zip(good, self.scores(images, [inputs[i]["text"] for i in good])))
        out = []
        for index, row in enumerate(inputs):
            if index in errors:
                error = errors[index]  # all of them the row's own input (scoring raises)
                out.append(
                    failed_row(
                        row, step=self.name, error=error, kind=INPUT_KIND, outputs=[SCORE_COLUMN]
                    )
                )
            else:
                out.append({**row, SCORE_COLUMN: scores.get(index)})
        yield out


def _features(output: Any) -> Any:
    """transformers < 5 returns the projected embeddings; 5 wraps them in ``pooler_output``."""
    return output if hasattr(output, "norm") else output.pooler_output


__all__ = ["SCORE_COLUMN", "CLIPScore"]
