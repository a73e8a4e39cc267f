"""Local vision-language models with Hugging Face transformers (image + text in, text out).

`TransformersLLM` loads any model that ``AutoModelForImageTextToText`` knows (LLaVA, Qwen2-VL,
SmolVLM, Idefics, Gemma 3, ...) with its ``AutoProcessor``, from a local folder or a hub id.
It is a synchronous model: a pipeline runs it in a worker thread, off the event loop, and calls
on one instance are serialized.

torch and transformers are imported only when a model is loaded, so ``import pixtill`` never
needs them: ``pip install torch`` first, then ``pip install 'pixtill[local]'``.

The modules: `pixtill.models.torch_support` (imports, device, dtype, memory; shared with the
other local backends), `transformers_inputs` (chat -> processor inputs), `transformers_decoding`
(generation options, end-of-sequence trimming), and this one (the model: load, batch, generate).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from pixtill.models.llms.base import (
    LLM,
    FormattedInput,
    GenerateOutput,
)
from pixtill.models.llms.transformers_decoding import eos_ids, generation_options, until_eos
from pixtill.models.llms.transformers_inputs import PreparedChat as _Prepared
from pixtill.models.llms.transformers_inputs import prepare_chat as _prepare
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.results import Generation, ModelResult
from pixtill.models.structured import StructuredOutputNotSupportedError
from pixtill.models.torch_support import (
    dtype_keyword,
    free_accelerator_memory,
    import_module,
    import_torch,
    resolve_device,
    resolve_dtype,
)

__all__ = ["TransformersLLM"]


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
            self.model, **options, **{dtype_keyword("transformers"): dtype}
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
    @canonical_edge
    def generate(
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        if num_generations < 1:
            raise ValueError(f"num_generations must be at least 1, got {num_generations}")
        requests = ModelRequest.of_calls(inputs, num_generations, kwargs, self.generation_kwargs)
        return [result.to_generate_output() for result in self._generate_results(requests)]

    def _generate_results(
        self, requests: Sequence[ModelRequest[FormattedInput]]
    ) -> list[ModelResult]:
        """One `ModelResult` per request (they share ``n`` and settings). Raises
        `StructuredOutputNotSupportedError` when they ask for structured output."""
        if not requests:
            return []
        first = requests[0]
        if first.structured_output is not None:
            # No constrained-decoding library is a dependency (outlines / lm-format-enforcer
            # would pull in a large stack): say so instead of returning unconstrained text.
            raise StructuredOutputNotSupportedError(
                "TransformersLLM does not support structured output (a JSON schema); use an "
                "OpenAI-compatible server with guided decoding (vLLM, TGI) instead"
            )
        runtime = self._runtime
        if runtime.model is None:
            self.load()
        num_generations, params = first.n, dict(first.settings)
        inputs = [r.input for r in requests]
        outputs: list[ModelResult | None] = [None] * len(inputs)
        prepared: dict[int, _Prepared] = {}
        for index, chat in enumerate(inputs):
            try:
                prepared[index] = _prepare(chat)
            except Exception as exc:
                outputs[index] = ModelResult.failed(exc, num_generations)
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
            o if o is not None else ModelResult.failed("no output", num_generations)
            for o in outputs
        ]

    def _generate_isolated(
        self,
        runtime: _Runtime,
        batch: list[_Prepared],
        num_generations: int,
        params: dict[str, Any],
    ) -> list[ModelResult]:
        """The batch at once; if it fails, each row alone, so that only the bad rows fail."""
        try:
            return self._generate_batch(runtime, batch, num_generations, params)
        except Exception as exc:
            if len(batch) == 1:
                return [ModelResult.failed(exc, num_generations)]
        results: list[ModelResult] = []
        for item in batch:
            try:
                results.extend(self._generate_batch(runtime, [item], num_generations, params))
            except Exception as exc:
                results.append(ModelResult.failed(exc, num_generations))
        return results

    def _generate_batch(
        self,
        runtime: _Runtime,
        batch: list[_Prepared],
        num_generations: int,
        params: dict[str, Any],
    ) -> list[ModelResult]:
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

        options, sample, seed = generation_options(model, num_generations, params)
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
        end_ids = eos_ids(model, tokenizer)
        pad_id = options.get("pad_token_id")
        results: list[ModelResult] = []
        for row in range(len(batch)):
            input_tokens = (
                int(attention[row].sum().item()) if attention is not None else prompt_length
            )
            rows = new_tokens[row * copies : (row + 1) * copies]
            if not sample:  # greedy decoding: every generation is the same
                rows = rows * num_generations
            generations: list[Generation] = []
            for tokens in rows:
                kept = until_eos(tokens, end_ids, pad_id)
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                finish = "stop" if kept and kept[-1] in end_ids else "length"
                generations.append(Generation(text, input_tokens, len(kept), finish_reason=finish))
            results.append(ModelResult.of(generations))
        return results
