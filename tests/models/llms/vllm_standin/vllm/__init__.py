"""A stand-in for the parts of vLLM's offline API that pixtill's `vLLM` backend uses.

Tests put this folder's parent on ``sys.path``. ``LLM`` records how it was built and every
``chat`` call; it checks what the real one checks that matters here (the number of images per
prompt against ``limit_mm_per_prompt``, data URLs that decode as images, the OpenAI message
shape) and answers with a text that describes what it saw, or with JSON following the schema
when structured output is asked for.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vllm.sampling_params import SamplingParams

__version__ = "0.12.0-standin"
__all__ = ["LLM", "CompletionOutput", "RequestOutput", "SamplingParams"]

INSTANCES: list[LLM] = []


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


def _decode(url: str) -> tuple[str, tuple[int, int]]:
    if not url.startswith("data:image/"):
        return ("url", (0, 0))
    header, _, data = url.partition(",")
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    image.load()
    declared = header[len("data:image/") :].partition(";")[0].upper()
    if {"JPG": "JPEG"}.get(declared, declared) != image.format:
        raise ValueError(f"data URL says {declared}, the bytes are {image.format}")
    return image.format, image.size


def _example(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "object":
        return {k: _example(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [_example(schema.get("items", {}))]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model = model
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        INSTANCES.append(self)

    def chat(
        self,
        messages: list[list[dict[str, Any]]] | list[dict[str, Any]],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        chat_template: str | None = None,
        chat_template_content_format: str = "auto",
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: Any = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> list[RequestOutput]:
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        params = sampling_params or SamplingParams()
        self.calls.append(
            {"conversations": conversations, "params": params, "chat_template": chat_template}
        )
        limit = self.kwargs.get("limit_mm_per_prompt", {}).get("image", 1)
        results = []
        for number, conversation in enumerate(conversations):
            seen: list[tuple[str, tuple[int, int]]] = []
            words: list[str] = []
            for message in conversation:  # type: ignore[union-attr]
                if set(message) - {"role", "content", "name"}:
                    raise ValueError(f"unexpected message keys {sorted(message)}")
                content = message["content"]
                if isinstance(content, str):
                    words += content.split()
                    continue
                for part in content:
                    if part["type"] == "text":
                        words += part["text"].split()
                    elif part["type"] == "image_url":
                        seen.append(_decode(part["image_url"]["url"]))
                    else:
                        raise ValueError(f"unknown content part {part['type']!r}")
            if len(seen) > limit:
                raise ValueError(
                    f"At most {limit} image(s) may be provided in one prompt (got {len(seen)})"
                )
            if "[[crash]]" in words:
                raise RuntimeError("engine failure on this prompt")
            outputs = []
            for k in range(params.n):
                structured = params.structured_outputs
                if structured is not None:
                    text = json.dumps(_example(structured.json))
                else:
                    described = ", ".join(f"{fmt} {w}x{h}" for fmt, (w, h) in seen)
                    text = f"#{k} seed={params.seed} images=[{described}] words={len(words)}"
                outputs.append(CompletionOutput(k, text, list(range(len(text.split())))))
            results.append(
                RequestOutput(str(number), "", list(range(len(words) + 10 * len(seen))), outputs)
            )
        return results
