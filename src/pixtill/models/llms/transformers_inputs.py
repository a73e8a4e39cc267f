"""Chat messages turned into what a transformers processor takes: template messages with
``{"type": "image"}`` placeholders, and the images as PIL, in order."""

from __future__ import annotations

from typing import Any

from pixtill.images import ImageRef, coerce_image
from pixtill.models.llms.base import FormattedInput


class PreparedChat:
    """One input turned into what the processor takes: template messages and PIL images."""

    def __init__(self, messages: list[dict[str, Any]], images: list[Any]) -> None:
        self.messages = messages
        self.images = images


def image_of_part(part: dict[str, Any]) -> ImageRef:
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


def prepare_chat(chat: FormattedInput) -> PreparedChat:
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
                    images.append(image_of_part(part).to_model_image())
                    parts.append({"type": "image"})
                else:
                    raise ValueError(f"unsupported content part type {kind!r}")
        elif content is not None:
            raise ValueError(f"message content must be a string or a list of parts: {content!r}")
        messages.append({"role": message["role"], "content": parts})
    return PreparedChat(messages, images)
