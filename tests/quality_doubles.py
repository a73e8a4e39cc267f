"""Test doubles for the quality steps: a judge model that honours ``structured_output=``.

`RubricJudgeLLM` decodes the image it is sent and scores it by brightness (a bright image gets
the top score, a dark one the lowest), answering with JSON that fits the schema it was given,
exactly as a backend with constrained decoding would; ``reply`` replaces that answer to test
replies that do not fit.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageStat
from pydantic import PrivateAttr

from pixtill.models.image_editing.base import AsyncImageEditingModel, EditInput
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.llms._wire import _image_of
from pixtill.models.llms.base import AsyncLLM, FormattedInput, GenerateOutput
from pixtill.utils.fast_json import dumps


def png(colour: tuple[int, int, int] | str, size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def brightness_score(image: Image.Image, low: int, high: int) -> int:
    mean = sum(ImageStat.Stat(image.convert("RGB")).mean) / 3  # 0..255
    return low + round((high - low) * mean / 255)


class RubricJudgeLLM(AsyncLLM):
    model_id: str = "test/judge"
    reply: str | None = None  # a fixed reply instead of a verdict
    bad_when: str | None = None  # answer off-scale when the prompt contains this

    _schemas: list[Any] = PrivateAttr(default_factory=list)
    _calls: int = PrivateAttr(default=0)

    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def schemas(self) -> list[Any]:
        return self._schemas

    @property
    def calls(self) -> int:
        return self._calls

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **kwargs: Any
    ) -> GenerateOutput:
        self._calls += 1
        schema = kwargs.get("structured_output")
        self._schemas.append(schema)
        if self.reply is not None:
            return {"generations": [self.reply] * num_generations}
        assert isinstance(schema, dict), "the judge must ask for structured output"
        parts = input[-1]["content"]
        text = " ".join(p["text"] for p in parts if p.get("type") == "text")
        image = _image_of(next(p for p in parts if p.get("type") != "text"))
        assert image is not None
        verdict: dict[str, Any] = {}
        for name, prop in schema["properties"].items():
            if prop["type"] == "integer":
                low, high = prop["minimum"], prop["maximum"]
                score = brightness_score(image.to_pil(), low, high)
                if self.bad_when and self.bad_when in text:
                    score = high + 5
                verdict[name] = score
        verdict["rationale"] = "bright" if verdict and max(verdict.values()) > 3 else "dark"
        return {"generations": [dumps(verdict).decode()] * num_generations}


def patterned_png(level: int, key: str, size: int = 32) -> bytes:
    """A grey picture of mean ``level``: a 4x4 grid of blocks, half ``level + 20`` and half
    ``level - 20``, arranged by ``key`` (so different keys give perceptually different images,
    and the mean brightness, which `RubricJudgeLLM` scores, stays ``level``)."""
    import random

    signs = [1] * 8 + [-1] * 8
    random.Random(key).shuffle(signs)
    image = Image.new("L", (size, size))
    block = size // 4
    for k, sign in enumerate(signs):
        x, y = (k % 4) * block, (k // 4) * block
        image.paste(level + 20 * sign, (x, y, x + block, y + block))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class SeededPainter(AsyncImageGenerationModel):
    """Paints a patterned picture whose brightness grows with the ``seed`` it is called with
    (40 + 80 * seed, at most 235), or 235 at once for a prompt containing "easy"; "fail"
    raises. The pattern depends on the prompt's last word only, so "an easy one" and "another
    easy one" are near duplicates."""

    model_id: str = "test/seeded-painter"
    _calls: list[tuple[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self._calls

    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        seed = kwargs.get("seed")
        self._calls.append((input, seed))
        if "fail" in input:
            raise RuntimeError("painter broke")
        level = 235 if "easy" in input else min(235, 40 + 80 * int(seed or 0))
        data = base64.b64encode(patterned_png(level, input.split()[-1])).decode()
        return [{"images": [data]} for _ in range(num_generations)]


class SeededEditor(AsyncImageEditingModel):
    """Brightens the image it is sent by 80 grey levels per ``seed`` step (as `SeededPainter`:
    40 + 80 * seed, at most 235), keeping the source image's pattern key in its size."""

    model_id: str = "test/seeded-editor"
    _calls: list[tuple[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def calls(self) -> list[tuple[str, Any]]:
        return self._calls

    async def agenerate(
        self, input: EditInput, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        seed = kwargs.get("seed")
        self._calls.append((input["prompt"], seed))
        input["image"].to_pil()  # a real editor decodes its input
        level = min(235, 40 + 80 * int(seed or 0))
        data = base64.b64encode(patterned_png(level, input["prompt"])).decode()
        return [{"images": [data]} for _ in range(num_generations)]
