"""Test doubles for models: deterministic, offline, and they do real image work.

`DescribingLLM` decodes every image it is sent (so a broken image would fail here, as on a real
server) and answers with what it saw; `PaletteImageModel` draws a small PNG per prompt.
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

from PIL import Image
from pydantic import PrivateAttr

from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.llms._wire import _image_of
from pixtill.models.llms.base import AsyncLLM, FormattedInput, GenerateOutput


def describe_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if part["type"] == "text":
            pieces.append(part["text"])
        else:
            ref = _image_of(part)
            assert ref is not None, part
            if ref.kind == "url":
                pieces.append(f"<url {ref.url}>")
            else:
                image = ref.to_pil()
                pieces.append(f"<{ref.format} {image.width}x{image.height}>")
    return " ".join(pieces)


class DescribingLLM(AsyncLLM):
    model_id: str = "test/describing-vlm"
    fail_when: str | None = None  # raise for inputs whose text contains this

    _calls: list[FormattedInput] = PrivateAttr(default_factory=list)
    _loads: int = PrivateAttr(default=0)

    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def calls(self) -> list[FormattedInput]:
        return self._calls

    def load(self) -> None:
        super().load()
        self._loads += 1

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        self._calls.append(input)
        text = " | ".join(f"{m['role']}: {describe_content(m['content'])}" for m in input)
        if self.fail_when and self.fail_when in text:
            raise RuntimeError(f"server refused: {self.fail_when}")
        prompt_tokens = len(text.split())
        generations: list[str | None] = [f"[{k}] saw {text}" for k in range(num_generations)]
        return {
            "generations": generations,
            "statistics": {
                "input_tokens": [prompt_tokens] * num_generations,
                "output_tokens": [len(str(g).split()) for g in generations],
            },
        }


def png_for(prompt: str, index: int, size: int = 8) -> str:
    digest = hashlib.sha256(f"{prompt}#{index}".encode()).digest()
    image = Image.new("RGB", (size, size), tuple(digest[:3]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class PaletteImageModel(AsyncImageGenerationModel):
    model_id: str = "test/palette"
    fail_when: str | None = None

    @property
    def model_name(self) -> str:
        return self.model_id

    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        if self.fail_when and self.fail_when in input:
            raise RuntimeError("image server error")
        return [{"images": [png_for(input, k)]} for k in range(num_generations)]
