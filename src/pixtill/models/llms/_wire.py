"""The chat backends' wire helpers: image parts out, generations back.

pixtill's ``{"type": "image", "image": ImageRef}`` parts become each provider's format here, at
send time; `Choice` (the canonical `Generation`) and `fan_out` turn responses into the
canonical `ModelResult`'s generations.

Encoding is CPU work. Bytes already in memory that need neither resizing nor re-encoding are
base64-encoded inline (tens of microseconds for a typical image, cheaper than a thread hop);
everything else (files, PIL images, resizing, formats the providers do not take) runs in a worker
thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pixtill.errors import ModelUnavailableError
from pixtill.images import ImageRef, ResizePolicy
from pixtill.models.llms.base import FormattedInput
from pixtill.models.results import Generation

__all__ = [
    "Choice",
    "anthropic_messages",
    "fan_out",
    "image_data_url",
    "openai_messages",
    "prompt_chars",
]

# What the chat APIs accept as base64 images; anything else is sent as PNG.
_SENDABLE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF"})

ImageDetail = Literal["auto", "low", "high"]


def _as_ref(value: Any) -> ImageRef:
    return ImageRef.from_value(value)


def _inline_ok(ref: ImageRef, resize: ResizePolicy | None) -> bool:
    if ref.kind != "bytes" or ref.format not in _SENDABLE_FORMATS or ref.needs_preparation():
        return False
    return resize is None or resize.target_size(*ref.size) == ref.size


def _data_url_sync(ref: ImageRef, resize: ResizePolicy | None) -> str:
    # The same pixels a local model gets (`ImageRef.to_model_image`): re-encoded only when the
    # header shows an EXIF orientation, transparency or a mode chat APIs do not decode alike.
    return ref.to_api_data_url(resize, _SENDABLE_FORMATS)


async def image_data_url(ref: ImageRef, resize: ResizePolicy | None = None) -> str:
    """``data:<mime>;base64,...`` of ``ref``, shrunk by ``resize``, in a format chat APIs take."""
    if _inline_ok(ref, resize):
        return ref.to_data_url()
    if ref.kind == "url":
        await ref.aget_bytes()
    return await asyncio.to_thread(_data_url_sync, ref, resize)


def _image_of(part: dict[str, Any]) -> ImageRef | None:
    """The image of a content part, or None when it is not an image part."""
    kind = part.get("type")
    if kind == "image":
        return _as_ref(part["image"])
    if kind == "image_url":
        value = part.get("image_url")
        return _as_ref(value.get("url") if isinstance(value, dict) else value)
    return None


# --------------------------------------------------------------------- OpenAI


async def _openai_part(
    part: dict[str, Any], resize: ResizePolicy | None, detail: ImageDetail | None
) -> dict[str, Any]:
    """An ``image_url`` part for any image part; the part's own options (``detail``, and any
    other key of its ``image_url``) are kept, the model-wide ``detail`` only fills a gap."""
    kind = part.get("type")
    if kind not in ("image", "image_url"):
        return part
    value = part.get("image_url")
    options: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    if kind == "image" and part.get("detail") is not None:
        options["detail"] = part["detail"]
    source = part["image"] if kind == "image" else options.get("url", value)
    head = source[:8].lower() if isinstance(source, str) else ""
    held = getattr(source, "__image_ref__", None)  # an `ImageURL` a task built, already encoded
    if (
        isinstance(held, ImageRef)
        and held.url is None
        and (resize is None or resize.target_size(*held.size) == held.size)
    ):
        url = source  # `ImageURL.of` already prepared it
    elif head.startswith(("http://", "https://")):
        url = source  # forwarded as is: the server fetches it
    else:
        ref = _as_ref(source)
        url = ref.url if ref.url is not None else await image_data_url(ref, resize)
    image_url: dict[str, Any] = {**options, "url": url}
    if detail is not None:
        image_url.setdefault("detail", detail)
    return {"type": "image_url", "image_url": image_url}


async def openai_messages(
    messages: FormattedInput,
    resize: ResizePolicy | None = None,
    detail: ImageDetail | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat messages: image parts become ``image_url`` parts (http URLs untouched, other
    images as data URLs)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = [await _openai_part(part, resize, detail) for part in content]
            message = {**message, "content": parts}
        out.append(message)
    return out


# --------------------------------------------------------------------- Anthropic


async def _anthropic_block(part: dict[str, Any], resize: ResizePolicy | None) -> dict[str, Any]:
    ref = _image_of(part)
    if ref is None:
        if part.get("type") == "text":
            return {"type": "text", "text": str(part.get("text", ""))}
        return part
    # Anthropic's per-block options (``cache_control``) are kept.
    options = {k: v for k, v in part.items() if k == "cache_control"}
    if ref.url is not None:
        return {"type": "image", "source": {"type": "url", "url": ref.url}, **options}
    data_url = await image_data_url(ref, resize)
    header, _, data = data_url.partition(",")
    media_type = header[len("data:") :].partition(";")[0]
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": data},
        **options,
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if content is None else str(content)


async def anthropic_messages(
    messages: FormattedInput, resize: ResizePolicy | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, messages)`` for the Messages API: system turns are lifted to the top-level
    ``system`` field (joined by blank lines); image parts become ``image`` blocks (URL source
    for http URLs, else base64 with the media type sniffed from the bytes)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            text = _text_of(content)
            if text:
                system.append(text)
            continue
        if isinstance(content, list):
            content = [await _anthropic_block(part, resize) for part in content]
        out.append({"role": role, "content": content})
    return ("\n\n".join(system) if system else None), out


# --------------------------------------------------------------------- estimates


def prompt_chars(messages: FormattedInput) -> tuple[int, int]:
    """``(characters of text, number of images)`` of a chat, for token estimates."""
    chars = images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    chars += len(str(part.get("text", "")))
                elif part.get("type") in ("image", "image_url"):
                    images += 1
    return chars, images


# --------------------------------------------------------------------- responses


# One generation as parsed from a response (``text`` None and ``error`` set: failed): the
# canonical `Generation` (`pixtill.models.results`), by its older name here.
Choice = Generation


async def fan_out(count: int, one: Callable[[int], Awaitable[Choice]]) -> list[Choice]:
    """Run ``one(k)`` for k in range(count) concurrently; each gives one `Choice`. A failed
    request becomes a failed choice; when every request failed, the first error is raised."""
    if count == 1:
        return [await one(0)]
    results = await asyncio.gather(*(one(k) for k in range(count)), return_exceptions=True)
    choices: list[Choice] = []
    first_error: BaseException | None = None
    for result in results:
        if isinstance(result, BaseException):
            if not isinstance(result, Exception) or isinstance(result, ModelUnavailableError):
                raise result
            first_error = first_error or result
            choices.append(Choice.failed(result))  # its kind and status kept as data
        else:
            choices.append(result)
    if first_error is not None and all(c.text is None for c in choices):
        raise first_error
    return choices
