"""The tiny models' tokenizers, trained here on a few sentences so that nothing is downloaded:
a deterministic byte-pair-encoding learner, a GPT-2 style byte-level BPE for the VLM (with its
chat template), and a CLIP-style vocabulary for the text-to-image and CLIP models."""

from __future__ import annotations

import importlib
import itertools
from collections import Counter
from typing import Any

_SENTENCES = [
    "A red circle on a white background.",
    "A blue square on a yellow background.",
    "A green triangle on a black background.",
    "A purple circle on an orange background.",
    "What colour is the shape in this image?",
    "Describe this image in one sentence.",
    "The picture shows a simple geometric shape drawn in a bright colour.",
    "a photo of a cat, a dog, a tree, a house, the sea and the sky at sunset",
    "Yes. No. It is round. It has three corners. It has four equal sides.",
    "0 1 2 3 4 5 6 7 8 9, . ? ! ' \" - : ;",
]

_VLM_SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
_ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# Transformers renders chat templates with trim_blocks/lstrip_blocks, so newlines are written
# as expressions. String content and lists of parts are both accepted; every image part becomes
# one `<image>` placeholder that the processor expands into VLM_IMAGE_TOKENS tokens.
VLM_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>' }}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{{ '\\n' }}{% endif %}"
)


def import_local_stack(name: str) -> Any:
    """A module of the local-model stack (untyped here: these libraries are partly typed), or
    an ImportError that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            "the tiny local models need torch, transformers, diffusers and tokenizers: install "
            "torch first (e.g. `pip install torch==2.13.0`), then `pip install 'pixtill[local]'` "
            f"({exc})"
        ) from exc


def learn_bpe(
    words: Counter[tuple[str, ...]], num_merges: int
) -> tuple[list[str], list[tuple[str, str]]]:
    """Byte-pair merges learnt from ``words`` (each a tuple of symbols, with its count), and
    the tokens they make, in order.

    Written out rather than taken from `tokenizers`' trainer, which breaks ties between pairs
    of equal count differently from one process to the next: here the most frequent pair wins,
    then the first in sorted order, so a build is the same every time.
    """
    merges: list[tuple[str, str]] = []
    tokens: list[str] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        tokens.append(best[0] + best[1])
        merged: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            merged[_merge(word, best)] += count
        words = merged
    return tokens, merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _vocab(*groups: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for group in groups:
        for token in group:
            vocab.setdefault(token, len(vocab))
    return vocab


def vlm_tokenizer() -> Any:
    """A byte-level BPE (GPT-2 style) over the sample sentences, with the special tokens."""
    tokenizers = import_local_stack("tokenizers")
    Tokenizer, decoders = tokenizers.Tokenizer, tokenizers.decoders
    models, pre_tokenizers = tokenizers.models, tokenizers.pre_tokenizers

    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words: Counter[tuple[str, ...]] = Counter()
    for sentence in _SENTENCES:
        for word, _ in pre_tokenizer.pre_tokenize_str(sentence):
            words[tuple(word)] += 1
    tokens, merges = learn_bpe(words, num_merges=160)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = _vocab(_VLM_SPECIAL_TOKENS + _ROLE_TOKENS, alphabet, tokens)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(_VLM_SPECIAL_TOKENS + _ROLE_TOKENS)
    return tokenizer


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE (lower-cased, ``</w>`` word ends) over the sample sentences."""
    tokenizers = import_local_stack("tokenizers")
    Regex, normalizers = tokenizers.Regex, tokenizers.normalizers
    pre_tokenizers = tokenizers.pre_tokenizers

    # What `CLIPTokenizer` does to text before its BPE.
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for sentence in _SENTENCES:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    tokens, merges = learn_bpe(words, num_merges=200)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    # Every byte also as a word end, so that no text ever maps to the unknown token.
    word_ends = [char + "</w>" for char in alphabet]
    vocab = _vocab(["<|startoftext|>", "<|endoftext|>"], alphabet, word_ends, tokens)
    return vocab, merges
