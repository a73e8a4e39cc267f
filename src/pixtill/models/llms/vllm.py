"""Local models through vLLM's offline engine (``vllm.LLM``), images included.

`vLLM` loads a model once and sends every batch of chats to ``LLM.chat`` in one call, so vLLM's
scheduler batches them on the GPU. Images go as OpenAI-style ``image_url`` parts: http(s) URLs
as they are (vLLM fetches them), every other image as a data URL. vLLM is imported only inside
`load()` (``pip install 'pixtill[vllm]'`` on a machine with a GPU vLLM supports).

API used (vLLM's documented offline interface): ``LLM(model=..., tensor_parallel_size=...,
limit_mm_per_prompt={"image": N}, ...)``, ``LLM.chat(conversations, sampling_params,
chat_template=..., use_tqdm=False)``, ``SamplingParams(n, temperature, top_p, max_tokens, seed,
..., structured_outputs=StructuredOutputsParams(json=schema))`` - on vLLM releases before
``StructuredOutputsParams`` existed (< 0.10.2), ``guided_decoding=GuidedDecodingParams(json=
schema)`` instead - and ``RequestOutput.prompt_token_ids`` / ``.outputs[k].text`` /
``.outputs[k].token_ids`` for the generations and their token counts.

Not yet run on a GPU: tested against a stand-in module implementing the API above.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.images import ImageRef, ResizePolicy
from pixtill.models.llms._wire import _image_of
from pixtill.models.llms.base import LLM, FormattedInput, GenerateOutput
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.results import Generation, ModelResult
from pixtill.models.structured import StructuredOutputSpec, json_schema_of
from pixtill.models.torch_support import import_module

__all__ = ["vLLM"]

# SamplingParams fields pixtill sets itself (or that would break the one-batch call).
_RESERVED = ("n", "structured_outputs", "guided_decoding", "output_kind")
# OpenAI-style names users bring from the server backends.
_ALIASES = {"max_completion_tokens": "max_tokens"}
_INSTALL = "pip install 'pixtill[vllm]'"


class _Runtime:
    """What `load` acquires; a copy or pickle starts unloaded (a replica loads its own)."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.vllm: Any = None
        self.chat_template: str | None = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Runtime], tuple[()]]:
        return (_Runtime, ())


def _data_url(ref: ImageRef, resize: ResizePolicy | None) -> str:
    if ref.url is not None and resize is None:
        return ref.url
    # vLLM decodes with a plain convert("RGB"): give it the pixels every local model gets
    # (EXIF orientation applied, 16-bit scaled, transparency flattened).
    return ref.to_model_data_url(resize, frozenset({"PNG", "JPEG", "WEBP", "GIF"}))


def vllm_messages(
    messages: FormattedInput, resize: ResizePolicy | None = None
) -> tuple[list[dict[str, Any]], int]:
    """``(messages, images)``: the chat in the OpenAI form vLLM's ``LLM.chat`` parses, with
    every image as an ``image_url`` part (http URLs kept, others as data URLs), and the number
    of images it holds."""
    out: list[dict[str, Any]] = []
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                ref = _image_of(part) if isinstance(part, dict) else None
                if ref is None:
                    parts.append(part)
                    continue
                images += 1
                parts.append({"type": "image_url", "image_url": {"url": _data_url(ref, resize)}})
            message = {**message, "content": parts}
        out.append(message)
    return out, images


class vLLM(LLM):  # the class name users know from distilabel
    """A local chat model (text or vision-language) run by vLLM's offline engine.

    ``generation_kwargs`` (and `generate`'s keyword arguments, which win) become
    ``SamplingParams``: ``temperature``, ``top_p``, ``top_k``, ``max_tokens`` (or
    ``max_new_tokens`` / ``max_completion_tokens``), ``seed``, ``stop``, penalties...;
    ``num_generations`` is ``n``. ``structured_output=`` (a JSON Schema or pydantic model, as
    tasks send it) constrains decoding to the schema with vLLM's structured outputs.

    Several images per prompt need ``limit_mm_per_prompt={"image": N}`` (vLLM's default is
    one); an input with more images than that fails its own row. Statistics per generation:
    ``input_tokens`` = the prompt's tokens, ``output_tokens`` = the generation's tokens.
    """

    model: str = Field(description="A hub id or a local folder, as vllm.LLM takes it.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs to shard the model on.")
    dtype: str = Field(default="auto", description="Weights dtype ('auto', 'bfloat16', ...).")
    max_model_len: int | None = Field(default=None, ge=1, description="Context length cap.")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    limit_mm_per_prompt: dict[str, int] = Field(
        default_factory=lambda: {"image": 1},
        description="Most items of each kind per prompt, e.g. {'image': 4}.",
    )
    chat_template: str | None = Field(
        default=None,
        description="A Jinja chat template (text, or a path to a file); None: the model's own.",
    )
    trust_remote_code: bool = Field(default=False, description="Allow custom model code.")
    revision: str | None = Field(default=None, description="Hub revision.")
    quantization: str | None = Field(default=None, description="e.g. 'awq', 'fp8'.")
    seed: int | None = Field(default=None, description="The engine's seed.")
    image_resize: ResizePolicy | None = Field(
        default=None, description="Shrink images before they reach vLLM."
    )
    extra_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="More vllm.LLM(...) arguments, passed as they are."
    )

    _runtime: _Runtime = PrivateAttr(default_factory=_Runtime)

    @property
    def model_name(self) -> str:
        return self.model

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            if runtime.engine is None:
                vllm = import_module("vllm", f"vLLM ({_INSTALL})")
                options: dict[str, Any] = {
                    "model": self.model,
                    "tensor_parallel_size": self.tensor_parallel_size,
                    "dtype": self.dtype,
                    "gpu_memory_utilization": self.gpu_memory_utilization,
                    "limit_mm_per_prompt": dict(self.limit_mm_per_prompt),
                    "trust_remote_code": self.trust_remote_code,
                }
                for name in ("max_model_len", "revision", "quantization", "seed"):
                    value = getattr(self, name)
                    if value is not None:
                        options[name] = value
                options.update(self.extra_kwargs)
                runtime.chat_template = _read_template(self.chat_template)
                runtime.engine = vllm.LLM(**options)
                runtime.vllm = vllm
        super().load()

    def unload(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            runtime.engine = runtime.vllm = None
        super().unload()

    # -- generation ------------------------------------------------------------------------
    @canonical_edge
    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        """One `GenerateOutput` per input (see `_generate_results`)."""
        if num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {num_generations}")
        requests = ModelRequest.of_calls(inputs, num_generations, kwargs, self.generation_kwargs)
        return [result.to_generate_output() for result in self._generate_results(requests)]

    def _generate_results(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        """One `ModelResult` per request (they share ``n`` and settings). Inputs that cannot
        be prepared (unreadable image, too many images) fail alone; the others go to vLLM in
        one ``LLM.chat`` call. When that call fails as a whole, each input is retried alone,
        so a bad one fails only its row."""
        if not requests:
            return []
        runtime = self._runtime
        if runtime.engine is None:
            self.load()
        first = requests[0]
        num_generations = first.n
        params = self.sampling_params(
            num_generations, first.structured_output, dict(first.settings)
        )
        inputs = [r.input for r in requests]
        limit = self.limit_mm_per_prompt.get("image", 1)
        outputs: list[ModelResult | None] = [None] * len(inputs)
        chats: dict[int, list[dict[str, Any]]] = {}
        for index, messages in enumerate(inputs):
            try:
                chat, images = vllm_messages(messages, self.image_resize)
                if images > limit:
                    raise ValueError(
                        f"the input has {images} images; limit_mm_per_prompt allows {limit}"
                    )
                chats[index] = chat
            except Exception as exc:
                outputs[index] = ModelResult.failed(exc, num_generations)
        with runtime.lock:
            engine = runtime.engine
            if engine is None:
                raise RuntimeError("vLLM was unloaded")
            order = list(chats)
            try:
                results = self._chat(engine, [chats[i] for i in order], params)
            except Exception:
                results = None
            for position, index in enumerate(order):
                if results is not None:
                    outputs[index] = _model_result(results[position], num_generations)
                    continue
                try:  # isolate the input that broke the batch
                    (alone,) = self._chat(engine, [chats[index]], params)
                    outputs[index] = _model_result(alone, num_generations)
                except Exception as exc:
                    outputs[index] = ModelResult.failed(exc, num_generations)
        return [
            o if o is not None else ModelResult.failed("no output", num_generations)
            for o in outputs
        ]

    def _chat(self, engine: Any, chats: list[list[dict[str, Any]]], params: Any) -> list[Any]:
        if not chats:
            return []
        call: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if self._runtime.chat_template is not None:
            call["chat_template"] = self._runtime.chat_template
        results = list(engine.chat(chats, **call))
        if len(results) != len(chats):
            raise RuntimeError(f"vLLM returned {len(results)} outputs for {len(chats)} chats")
        return results

    def sampling_params(
        self, n: int, spec: StructuredOutputSpec | None, options: dict[str, Any]
    ) -> Any:
        """The ``vllm.SamplingParams`` of a call (vLLM must be loaded)."""
        vllm = self._runtime.vllm
        if vllm is None:
            raise RuntimeError("vLLM is not loaded")
        values = {_ALIASES.get(k, k): v for k, v in options.items() if v is not None}
        if "max_new_tokens" in values:  # the transformers name
            values.setdefault("max_tokens", values.pop("max_new_tokens"))
        for key in _RESERVED:
            values.pop(key, None)
        values["n"] = n
        if spec is not None:
            values.update(_structured_params(vllm, json_schema_of(spec)))
        return vllm.SamplingParams(**values)


def _structured_params(vllm: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """``structured_outputs=StructuredOutputsParams(json=...)`` (vLLM >= 0.10.2), else the older
    ``guided_decoding=GuidedDecodingParams(json=...)``."""
    module = import_module("vllm.sampling_params", f"vLLM ({_INSTALL})")
    if hasattr(module, "StructuredOutputsParams"):
        return {"structured_outputs": module.StructuredOutputsParams(json=schema)}
    if hasattr(module, "GuidedDecodingParams"):
        return {"guided_decoding": module.GuidedDecodingParams(json=schema)}
    version = getattr(vllm, "__version__", "?")
    raise ImportError(f"vLLM {version} has neither StructuredOutputsParams nor guided decoding")


def _read_template(template: str | None) -> str | None:
    if template is None:
        return None
    if "{" not in template and len(template) < 4096:
        path = Path(template).expanduser()
        if path.is_file():
            return path.read_text(encoding="utf-8")
        raise FileNotFoundError(f"chat_template {template!r} is neither a template nor a file")
    return template


def _model_result(result: Any, n: int) -> ModelResult:
    """The canonical result of one ``RequestOutput``: its completions' texts, token counts
    (the prompt's for each) and finish reasons; missing completions fail."""
    completions = list(result.outputs)[:n]
    prompt_ids = getattr(result, "prompt_token_ids", None)
    prompt_tokens = len(prompt_ids) if prompt_ids is not None else None
    generations = [
        Generation(
            c.text,
            prompt_tokens,
            len(c.token_ids),
            finish_reason=getattr(c, "finish_reason", None),
        )
        for c in completions
    ]
    if len(completions) < n:
        why = f"vLLM returned {len(completions)} generations, not {n}"
        generations += [Generation.failed(why)] * (n - len(completions))
    return ModelResult.of(generations)
