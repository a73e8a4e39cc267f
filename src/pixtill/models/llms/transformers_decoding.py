"""Decoding settings and output trimming for `TransformersLLM`: which generation keywords go
to ``model.generate`` (greedy or sampling), the end-of-sequence ids, and the generated tokens up
to the first of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Sampling parameters that mean nothing (and make transformers warn) under greedy decoding.
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff")
# Keys pixtill sets itself from its own arguments.
_RESERVED = ("num_return_sequences", "return_dict_in_generate", "output_scores")


def generation_options(
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


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, Sequence):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def until_eos(tokens: list[int], eos_ids: set[int], pad_id: int | None) -> list[int]:
    """The generated tokens up to and including the first end-of-sequence token; padding after
    a finished sequence dropped."""
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: position + 1]
    if pad_id is not None:
        while tokens and tokens[-1] == pad_id:
            tokens = tokens[:-1]
    return tokens
