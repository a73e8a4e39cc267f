"""Local vision-language models with Hugging Face transformers (image + text in, text out).

`TransformersLLM` loads any model that ``AutoModelForImageTextToText`` knows (LLaVA, Qwen2-VL,
SmolVLM, Idefics, Gemma 3, ...) with its ``AutoProcessor``, from a local folder or a hub id.
It is a synchronous model: a pipeline runs it in a worker thread, off the event loop, and calls
on one instance are serialized.

torch and transformers are imported only when a model is loaded, so ``import pixtill`` never
needs them: ``pip install torch`` first, then ``pip install 'pixtill[local]'``.
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.images import ImageRef, coerce_image
from pixtill.models.llms.base import (
    LLM,
    FormattedInput,
    GenerateOutput,
    failed_generate_output,
)
from pixtill.models.results import Generation, ModelResult
from pixtill.models.structured import StructuredOutputNotSupportedError

__all__ = [
    "TransformersLLM",
    "free_accelerator_memory",
    "import_module",
    "import_torch",
    "resolve_device",
    "resolve_dtype",
]

_INSTALL_HINT = (
    "install torch first (e.g. `pip install torch==2.13.0`, or the build for your accelerator "
    "from pytorch.org), then `pip install 'pixtill[local]'`"
)
# Sampling parameters that mean nothing (and make transformers warn) under greedy decoding.
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff")
# Keys pixtill sets itself from its own arguments.
_RESERVED = ("num_return_sequences", "return_dict_in_generate", "output_scores")
_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}


def import_module(name: str, needed_by: str = "local models") -> Any:
    """The module ``name``, or an ImportError that says how to install the local extras.

    Typed as ``Any``: torch, transformers and diffusers are only partly typed.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{needed_by} need(s) {name}: {_INSTALL_HINT} ({exc})") from exc


def import_torch() -> Any:
    """``torch``, or an ImportError that says how to install it."""
    return import_module("torch")


def resolve_device(device: str | None) -> str:
    """``device`` as given, else the best available: cuda, then mps, then cpu."""
    if device:
        return device
    torch = import_torch()
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(torch_dtype: str, device: str) -> Any:
    """The ``torch.dtype`` for a name ("float16", "bf16", ...). ``"auto"`` picks bfloat16 on a
    GPU that supports it (else float16), float16 on Apple silicon and float32 on a CPU."""
    torch = import_torch()
    name = torch_dtype.strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    name = _DTYPE_ALIASES.get(name, name).removeprefix("torch.")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"unknown torch_dtype {torch_dtype!r} (use 'auto', 'float32', 'float16' or 'bfloat16')"
        )
    return dtype


def free_accelerator_memory(device: str | None) -> None:
    """Collect garbage, then give cached accelerator memory back to the driver."""
    gc.collect()
    if device is None:
        return
    torch = import_torch()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.startswith("mps"):
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()


def _dtype_keyword() -> str:
    """transformers 4.56 renamed ``torch_dtype`` to ``dtype`` (and warns on the old name)."""
    from packaging.version import Version

    version = import_module("transformers").__version__
    return "dtype" if Version(version) >= Version("4.56") else "torch_dtype"


class _Runtime:
    """What `load` acquires. A copy starts empty: a replica of a step loads its own weights
    instead of deep-copying (and sharing a lock with) the original's."""

    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.device: str | None = None
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[type[_Runtime], tuple[()]]:
        # Copies and pickles (a replica, a worker process) start unloaded.
        return (_Runtime, ())


class _Prepared:
    """One input turned into what the processor takes: template messages and PIL images."""

    def __init__(self, messages: list[dict[str, Any]], images: list[Any]) -> None:
        self.messages = messages
        self.images = images


def _image_of(part: dict[str, Any]) -> ImageRef:
    value = part.get("image")
    if value is None:
        value = part.get("image_url")
        if isinstance(value, dict):
            value = value.get("url")
    if value is None:
        value = part.get("url", part.get("path"))
    if isinstance(value, ImageRef):
        return value
    return coerce_image(value)


def _prepare(chat: FormattedInput) -> _Prepared:
    """Chat messages in the form chat templates expect: every content a list of parts, image
    parts reduced to ``{"type": "image"}`` placeholders, the images collected in order."""
    if not isinstance(chat, list) or not chat:
        raise ValueError("expected a non-empty list of chat messages")
    messages: list[dict[str, Any]] = []
    images: list[Any] = []
    for message in chat:
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                elif kind in ("image", "image_url", "input_image"):
                    # The same preparation as the HTTP backends': EXIF orientation, 16-bit
                    # and alpha converted faithfully (see `ImageRef.to_model_image`).
                    images.append(_image_of(part).to_model_image())
                    parts.append({"type": "image"})
                else:
                    raise ValueError(f"unsupported content part type {kind!r}")
        elif content is not None:
            raise ValueError(f"message content must be a string or a list of parts: {content!r}")
        messages.append({"role": message["role"], "content": parts})
    return _Prepared(messages, images)


class TransformersLLM(LLM):
    """A local image-text-to-text model run with transformers.

    ``generation_kwargs`` (and the keyword arguments of `generate`, which win) go to
    ``model.generate``: ``max_new_tokens`` (default: the model's generation config, else 128),
    ``temperature``, ``top_p``, ``top_k``, ``do_sample``, ``repetition_penalty``... plus
    ``seed``, which seeds torch before each batch for reproducible sampling. Without
    ``do_sample``, a positive ``temperature`` samples, ``temperature=0`` decodes greedily, and
    otherwise the model's own generation config decides, except that ``num_generations > 1``
    samples (greedy decoding would give identical copies).

    Rows are batched (``max_batch_size``) with left padding. A row whose images cannot be read,
    or that fails on its own, gets a failed output; its neighbours are unaffected.
    """

    model: str = Field(description="A local folder or a Hugging Face hub id.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag, commit).")
    device: str | None = Field(
        default=None, description="'cuda', 'cuda:1', 'mps', 'cpu'; None picks cuda > mps > cpu."
    )
    torch_dtype: str = Field(
        default="auto",
        description="'auto' (bfloat16 on a GPU that has it, float32 on CPU) or a dtype name.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow the model's own Python code from the hub (careful)."
    )
    max_batch_size: int = Field(default=8, ge=1, description="Rows per forward pass.")

    _runtime: _Runtime = PrivateAttr(default_factory=_Runtime)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def torch_model(self) -> Any:
        """The loaded ``torch.nn.Module`` (None before `load` and after `unload`)."""
        return self._runtime.model

    @property
    def processor(self) -> Any:
        """The loaded processor (None before `load` and after `unload`)."""
        return self._runtime.processor

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            if runtime.model is None:
                self._load(runtime)
        super().load()

    def _load(self, runtime: _Runtime) -> None:
        import_torch()
        transformers = import_module("transformers", "TransformersLLM")
        self._check_generation_kwargs(transformers)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.torch_dtype, device)
        options: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision is not None:
            options["revision"] = self.revision
        processor = transformers.AutoProcessor.from_pretrained(self.model, **options)
        model = transformers.AutoModelForImageTextToText.from_pretrained(
            self.model, **options, **{_dtype_keyword(): dtype}
        )
        model.to(device)
        model.eval()
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
                tokenizer.pad_token = tokenizer.eos_token
        runtime.model, runtime.processor, runtime.device = model, processor, device

    def _check_generation_kwargs(self, transformers: Any) -> None:
        known = set(vars(transformers.GenerationConfig())) | {"seed", "max_new_tokens", "do_sample"}
        unknown = sorted(set(self.generation_kwargs) - known)
        if unknown:
            raise ValueError(
                f"TransformersLLM: unknown generation_kwargs {unknown}; use transformers' "
                "GenerationConfig names (max_new_tokens, temperature, top_p, ...) or 'seed'"
            )

    def unload(self) -> None:
        runtime = self._runtime
        with runtime.lock:
            device = runtime.device
            runtime.model = runtime.processor = runtime.device = None
        if device is not None:
            free_accelerator_memory(device)
        super().unload()

    # -- generation ------------------------------------------------------------------------
    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        if num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {num_generations}")
        if kwargs.get("structured_output") is not None:
            # No constrained-decoding library is a dependency (outlines / lm-format-enforcer
            # would pull in a large stack): say so instead of returning unconstrained text.
            raise StructuredOutputNotSupportedError(
                "TransformersLLM does not support structured output (a JSON schema); use an "
                "OpenAI-compatible server with guided decoding (vLLM, TGI) instead"
            )
        kwargs.pop("structured_output", None)
        runtime = self._runtime
        if runtime.model is None:
            self.load()
        params = {**self.generation_kwargs, **kwargs}
        outputs: list[GenerateOutput | None] = [None] * len(inputs)
        prepared: dict[int, _Prepared] = {}
        for index, chat in enumerate(inputs):
            try:
                prepared[index] = _prepare(chat)
            except Exception as exc:
                outputs[index] = failed_generate_output(exc, num_generations)
        # Rows with and without images go in separate batches: some processors cannot mix them.
        with_images = [i for i in prepared if prepared[i].images]
        text_only = [i for i in prepared if not prepared[i].images]
        with runtime.lock:
            for group in (with_images, text_only):
                for start in range(0, len(group), self.max_batch_size):
                    indices = group[start : start + self.max_batch_size]
                    batch = [prepared[i] for i in indices]
                    for index, output in zip(
                        indices, self._generate_isolated(runtime, batch, num_generations, params)
                    ):
                        outputs[index] = output
        return [
            o if o is not None else failed_generate_output("no output", num_generations)
            for o in outputs
        ]

    def _generate_isolated(
        self,
        runtime: _Runtime,
        batch: list[_Prepared],
        num_generations: int,
        params: dict[str, Any],
    ) -> list[GenerateOutput]:
        """The batch at once; if it fails, each row alone, so that only the bad rows fail."""
        try:
            return self._generate_batch(runtime, batch, num_generations, params)
        except Exception as exc:
            if len(batch) == 1:
                return [failed_generate_output(exc, num_generations)]
        results: list[GenerateOutput] = []
        for item in batch:
            try:
                results.extend(self._generate_batch(runtime, [item], num_generations, params))
            except Exception as exc:
                results.append(failed_generate_output(exc, num_generations))
        return results

    def _generate_batch(
        self,
        runtime: _Runtime,
        batch: list[_Prepared],
        num_generations: int,
        params: dict[str, Any],
    ) -> list[GenerateOutput]:
        torch = import_torch()
        model, processor = runtime.model, runtime.processor
        if model is None or processor is None:
            raise RuntimeError("TransformersLLM was unloaded")
        tokenizer = getattr(processor, "tokenizer", processor)
        texts = [
            processor.apply_chat_template(item.messages, add_generation_prompt=True, tokenize=False)
            for item in batch
        ]
        encode: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        bos = getattr(tokenizer, "bos_token", None)
        if bos and all(text.startswith(bos) for text in texts):
            encode["add_special_tokens"] = False  # the template wrote it already
        if any(item.images for item in batch):
            encode["images"] = [item.images for item in batch]
        encoded = processor(**encode)
        model_dtype = getattr(model, "dtype", None)
        tensors: dict[str, Any] = {}
        for key, value in encoded.items():
            if isinstance(value, torch.Tensor):
                value = value.to(runtime.device)
                if value.is_floating_point() and model_dtype is not None:
                    value = value.to(model_dtype)
            tensors[key] = value

        options, sample, seed = self._generation_options(model, num_generations, params)
        if getattr(tokenizer, "pad_token_id", None) is not None:
            options.setdefault("pad_token_id", tokenizer.pad_token_id)
        if seed is not None:
            torch.manual_seed(int(seed))
        copies = num_generations if sample else 1
        with torch.inference_mode():
            sequences = model.generate(**tensors, **options, num_return_sequences=copies)
        if not isinstance(sequences, torch.Tensor):
            sequences = sequences.sequences
        prompt_length = tensors["input_ids"].shape[1]
        new_tokens = sequences[:, prompt_length:].tolist()
        attention = tensors.get("attention_mask")
        eos_ids = _eos_ids(model, tokenizer)
        pad_id = options.get("pad_token_id")
        results: list[GenerateOutput] = []
        for row in range(len(batch)):
            input_tokens = (
                int(attention[row].sum().item()) if attention is not None else prompt_length
            )
            rows = new_tokens[row * copies : (row + 1) * copies]
            if not sample:  # greedy decoding: every generation is the same
                rows = rows * num_generations
            generations: list[Generation] = []
            for tokens in rows:
                kept = _until_eos(tokens, eos_ids, pad_id)
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                finish = "stop" if kept and kept[-1] in eos_ids else "length"
                generations.append(Generation(text, input_tokens, len(kept), finish_reason=finish))
            results.append(ModelResult.of(generations).to_generate_output())
        return results

    @staticmethod
    def _generation_options(
        model: Any, num_generations: int, params: dict[str, Any]
    ) -> tuple[dict[str, Any], bool, Any]:
        options = {k: v for k, v in params.items() if k not in _RESERVED}
        seed = options.pop("seed", None)
        do_sample = options.pop("do_sample", None)
        temperature = options.get("temperature")
        config = getattr(model, "generation_config", None)
        if do_sample is None:
            if temperature is not None:
                do_sample = float(temperature) > 0
            else:
                do_sample = bool(getattr(config, "do_sample", False)) or num_generations > 1
        sample = bool(do_sample)
        if not sample:
            for key in _SAMPLING_ONLY:
                options.pop(key, None)
        options["do_sample"] = sample
        if "max_new_tokens" not in options and "max_length" not in options:
            configured = getattr(config, "max_new_tokens", None)
            options["max_new_tokens"] = configured if configured else 128
        return options, sample, seed


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Sequence):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _until_eos(tokens: list[int], eos_ids: set[int], pad_id: int | None) -> list[int]:
    """The generated tokens up to and including the first end-of-sequence token; padding after
    a finished sequence dropped."""
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: position + 1]
    if pad_id is not None:
        while tokens and tokens[-1] == pad_id:
            tokens = tokens[:-1]
    return tokens
