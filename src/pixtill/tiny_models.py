"""Tiny, randomly initialised local models, built on the spot with no network.

`build_tiny_vlm` writes a LLaVA-style vision-language model (a 2-layer CLIP vision tower and a
2-layer Llama decoder, hidden size 32) and `build_tiny_text_to_image` a Stable Diffusion
pipeline (a tiny UNet, VAE and CLIP text encoder). Both come with tokenizers trained here on a
few sentences, so nothing is downloaded. Their weights are random: the VLM writes gibberish and
the image model paints noise. They exist to run the local backends end to end (the demo, the
tests) in a few seconds on a CPU.

`ensure_tiny_models()` builds both once under the pixtill cache folder and reuses them after.
"""

from __future__ import annotations

import importlib
import itertools
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pixtill.paths import cache_dir

# Bumped whenever what the builders write changes, so that a stale cached copy is rebuilt.
TINY_MODELS_VERSION = 1
SEED = 0

VLM_IMAGE_SIZE = 30
VLM_PATCH_SIZE = 6
# The "default" feature strategy drops the CLS token: one image token per patch.
VLM_IMAGE_TOKENS = (VLM_IMAGE_SIZE // VLM_PATCH_SIZE) ** 2

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


def _import(name: str) -> Any:
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


def _vlm_tokenizer() -> Any:
    """A byte-level BPE (GPT-2 style) over the sample sentences, with the special tokens."""
    tokenizers = _import("tokenizers")
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


def build_tiny_vlm(folder: Path) -> Path:
    """Write a tiny random LLaVA-style model and its processor to ``folder``; return it."""
    torch = _import("torch")
    transformers = _import("transformers")

    folder = Path(folder)
    backend = _vlm_tokenizer()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=512,
        padding_side="left",
    )
    vocab = backend.get_vocab()
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": VLM_IMAGE_SIZE},
        crop_size={"height": VLM_IMAGE_SIZE, "width": VLM_IMAGE_SIZE},
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=VLM_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VLM_CHAT_TEMPLATE,
        image_token="<image>",
    )
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=VLM_IMAGE_SIZE,
            patch_size=VLM_PATCH_SIZE,
            projection_dim=32,
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=vocab["<s>"],
            eos_token_id=vocab["</s>"],
            pad_token_id=vocab["<pad>"],
        ),
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=VLM_IMAGE_TOKENS,
        projector_hidden_act="gelu",
        pad_token_id=vocab["<pad>"],
    )
    torch.manual_seed(SEED)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        max_new_tokens=16,
        do_sample=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE (lower-cased, ``</w>`` word ends) over the sample sentences."""
    tokenizers = _import("tokenizers")
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


def build_tiny_text_to_image(folder: Path) -> Path:
    """Write a tiny random Stable Diffusion pipeline to ``folder``; return it."""
    torch = _import("torch")
    diffusers = _import("diffusers")
    transformers = _import("transformers")

    folder = Path(folder)
    vocab, merges = _clip_vocab()
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    torch.manual_seed(SEED)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            projection_dim=32,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    ).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=32,  # 64x64 images by default (the VAE halves each side once)
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    # DDIM: Euler and DPM-Solver call np.array on a tensor, which warns with numpy 2.
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(folder)
    return folder


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Writing model shards" bars while building; the previous setting is restored."""
    try:
        transformers_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:  # the builder itself says what to install
        transformers_logging = None
    if transformers_logging is None:
        yield
        return
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _build_once(target: Path, build: Callable[[Path], Path]) -> Path:
    """``build`` into a temporary sibling of ``target``, then rename it into place."""
    marker = target / ".pixtill-tiny-model"
    if marker.is_file() and marker.read_text().strip() == str(TINY_MODELS_VERSION):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _quiet_progress_bars():
            build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        (tmp / marker.name).write_text(f"{TINY_MODELS_VERSION}\n")
        if target.exists():
            # A stale or half-written copy (another version, or a crash before the marker).
            stale = target.with_name(f".{target.name}.stale.{os.getpid()}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first: use its copy.
            if not (marker.is_file() and marker.read_text().strip() == str(TINY_MODELS_VERSION)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_clip(folder: Path) -> Path:
    """Write a tiny random CLIP (2-layer text and vision towers, width 32, 30x30 images) and
    its processor (the CLIP-style BPE above, `CLIPImageProcessorPil`) to ``folder``; return it.
    For `CLIPScore` tests and the demo: its similarities are random, not meaningful."""
    torch = _import("torch")
    transformers = _import("transformers")

    folder = Path(folder)
    vocab, merges = _clip_vocab()
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": VLM_IMAGE_SIZE},
        crop_size={"height": VLM_IMAGE_SIZE, "width": VLM_IMAGE_SIZE},
    )
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(SEED)
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 32,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": VLM_IMAGE_SIZE,
            "patch_size": VLM_PATCH_SIZE,
        },
        projection_dim=16,
    )
    model = transformers.CLIPModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def ensure_tiny_clip(cache: Path | None = None) -> Path:
    """The tiny CLIP folder, built on first use under ``cache`` (default:
    ``<pixtill cache>/tiny-models``) and reused afterwards."""
    root = Path(cache) if cache is not None else cache_dir() / "tiny-models"
    return _build_once(root / f"clip-v{TINY_MODELS_VERSION}", build_tiny_clip)


def ensure_tiny_models(cache: Path | None = None) -> tuple[Path, Path]:
    """The tiny VLM and text-to-image folders, built on first use under
    ``cache`` (default: ``<pixtill cache>/tiny-models``) and reused afterwards."""
    root = Path(cache) if cache is not None else cache_dir() / "tiny-models"
    vlm = _build_once(root / f"vlm-v{TINY_MODELS_VERSION}", build_tiny_vlm)
    t2i = _build_once(root / f"text-to-image-v{TINY_MODELS_VERSION}", build_tiny_text_to_image)
    return vlm, t2i


__all__ = [
    "TINY_MODELS_VERSION",
    "VLM_IMAGE_TOKENS",
    "build_tiny_clip",
    "build_tiny_text_to_image",
    "build_tiny_vlm",
    "ensure_tiny_clip",
    "ensure_tiny_models",
]
