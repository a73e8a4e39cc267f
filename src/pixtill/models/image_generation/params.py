"""Checks of image-generation parameters, made before anything is sent.

distilabel declares these parameters with ``Literal`` types under ``pydantic.validate_call``,
so a misspelt value (``response_format="b64"``, ``size="1024"``) is a ``ValueError`` at the
call. pixtill refuses the same values, at construction for ``generation_kwargs`` and at the
call for keyword arguments, instead of sending a request the server refuses (or, worse,
silently sending something else).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from numbers import Real
from typing import Any

__all__ = ["check_hf_text_to_image_params", "check_openai_image_params"]

RESPONSE_FORMATS = ("url", "b64_json")
STYLES = ("vivid", "natural")
# The values OpenAI documents per model family. Other model names are OpenAI-compatible
# servers (local diffusion servers take any size): for them a size only has to read
# "<width>x<height>" (or "auto") and quality is any value OpenAI documents for some model.
_QUALITY = {
    "dall-e-2": ("standard",),
    "dall-e-3": ("standard", "hd"),
    "gpt-image": ("low", "medium", "high", "auto"),
    "other": ("standard", "hd", "low", "medium", "high", "auto"),
}
_SIZES = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
_SIZE_PATTERN = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")


def _family(model: str) -> str:
    if model.startswith("gpt-image"):
        return "gpt-image"
    return model if model in ("dall-e-2", "dall-e-3") else "other"


def _one_of(owner: str, name: str, value: Any, allowed: Collection[str], why: str = "") -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {sorted(allowed)}{why}, got {value!r}")


def check_openai_image_params(owner: str, model: str, params: Mapping[str, Any]) -> None:
    """Refuse values OpenAI's Images API (and distilabel) do not take for ``model``.

    Checked: ``response_format`` ("url" or "b64_json"), ``quality``, ``size`` and ``style``
    ("vivid" or "natural", DALL·E 3 and compatible servers only) against the values
    documented for the model family (dall-e-2, dall-e-3, gpt-image-*); for other model names
    (compatible servers) ``size`` must read ``"<width>x<height>"``. ``None`` means "server
    default". Other keys pass.

    Raises:
        ValueError: naming ``owner``, the parameter, the allowed values and the value given.
    """
    family = _family(model)
    for_model = f" for {model!r}"
    _one_of(owner, "response_format", params.get("response_format"), RESPONSE_FORMATS)
    _one_of(owner, "quality", params.get("quality"), _QUALITY[family], for_model)
    size = params.get("size")
    if family in _SIZES:
        _one_of(owner, "size", size, _SIZES[family], for_model)
    elif (
        size is not None
        and size != "auto"
        and not (isinstance(size, str) and _SIZE_PATTERN.fullmatch(size))
    ):
        raise ValueError(f"{owner}: size must read '<width>x<height>' or 'auto', got {size!r}")
    styles = () if family in ("dall-e-2", "gpt-image") else STYLES
    _one_of(owner, "style", params.get("style"), styles, for_model)


_HF_NUMBERS = ("height", "width", "num_inference_steps", "guidance_scale")


def check_hf_text_to_image_params(owner: str, params: Mapping[str, Any]) -> None:
    """Refuse ill-typed text-to-image parameters: ``negative_prompt`` must be a string,
    ``height``/``width``/``num_inference_steps``/``guidance_scale`` numbers, ``seed`` an int
    (``None`` leaves any of them to the server).

    Raises:
        ValueError: naming ``owner``, the parameter and the value given.
    """
    prompt = params.get("negative_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"{owner}: negative_prompt must be a string, got {prompt!r}")
    for name in _HF_NUMBERS:
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
        if value is not None and name != "guidance_scale" and value <= 0:
            raise ValueError(f"{owner}: {name} must be positive, got {value!r}")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{owner}: seed must be an int, got {seed!r}")
