"""Builders of the tiny random models: a LLaVA-style VLM, a Stable Diffusion pipeline and a
CLIP, each written to a folder with its tokenizer/processor (see `pixtill.tiny_tokenizers`)."""

from __future__ import annotations

from pathlib import Path

from pixtill.tiny_tokenizers import (
    VLM_CHAT_TEMPLATE,
    clip_vocab,
    import_local_stack,
    vlm_tokenizer,
)

SEED = 0

VLM_IMAGE_SIZE = 30
VLM_PATCH_SIZE = 6
# The "default" feature strategy drops the CLS token: one image token per patch.
VLM_IMAGE_TOKENS = (VLM_IMAGE_SIZE // VLM_PATCH_SIZE) ** 2


def build_tiny_vlm(folder: Path) -> Path:
    """Write a tiny random LLaVA-style model and its processor to ``folder``; return it."""
    torch = import_local_stack("torch")
    transformers = import_local_stack("transformers")

    folder = Path(folder)
    backend = vlm_tokenizer()
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


def build_tiny_text_to_image(folder: Path) -> Path:
    """Write a tiny random Stable Diffusion pipeline to ``folder``; return it."""
    torch = import_local_stack("torch")
    diffusers = import_local_stack("diffusers")
    transformers = import_local_stack("transformers")

    folder = Path(folder)
    vocab, merges = clip_vocab()
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


def build_tiny_clip(folder: Path) -> Path:
    """Write a tiny random CLIP (2-layer text and vision towers, width 32, 30x30 images) and
    its processor (the CLIP-style BPE above, `CLIPImageProcessorPil`) to ``folder``; return it.
    For `CLIPScore` tests and the demo: its similarities are random, not meaningful."""
    torch = import_local_stack("torch")
    transformers = import_local_stack("transformers")

    folder = Path(folder)
    vocab, merges = clip_vocab()
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
