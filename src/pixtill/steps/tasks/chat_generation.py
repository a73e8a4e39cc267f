from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from pixtill.errors import RowError
from pixtill.images import DEFAULT_MAX_PIXELS, ImageType
from pixtill.models.llms.base import ChatType
from pixtill.prompts import is_missing, shown_missing
from pixtill.steps.tasks.base import Task
from pixtill.steps.tasks.text_generation_with_image import image_parts
from pixtill.steps.typing import StepColumns

MESSAGES_COLUMN = "messages"
_ROLES = {"system", "user", "assistant"}
# Where an image part may keep its value, by the conventions users bring: OpenAI
# ({"type": "image_url", "image_url": {"url": ...}}), Hugging Face chat templates
# ({"type": "image", "image"|"url"|"path": ...}) and a bare base64 field.
_IMAGE_KEYS = ("image", "url", "path", "base64", "image_url")


def _image_value(part: dict[str, Any]) -> Any:
    for key in _IMAGE_KEYS:
        if key in part and part[key] is not None:
            value = part[key]
            if key == "image_url" and isinstance(value, dict):
                return value.get("url")
            return value
    raise RowError(
        f"an image part holds no image (expected one of {list(_IMAGE_KEYS)})",
        column=MESSAGES_COLUMN,
    )


def _detail_of(part: dict[str, Any]) -> Any:
    value = part.get("image_url")
    if isinstance(value, dict) and value.get("detail") is not None:
        return value["detail"]
    return part.get("detail")


class ChatGeneration(Task):
    """Continue a conversation (OpenAI-format messages) whose turns may hold images.

    Image parts may come as ``image_url`` (URL or data URL) or ``image`` parts holding any form
    `pixtill.images` accepts; they are checked and turned into references per row.
    """

    # Rows may mix plain-text and image turns: one stored shape keeps one Arrow type.
    raw_input_content_as_parts: ClassVar[bool | None] = True
    # Rows are independent, so all of them can wait for one provider batch (pixtill's batch
    # backends); distilabel leaves this False for its own task of the same name.
    _can_be_used_with_offline_batch_generation: bool = PrivateAttr(default=True)

    image_type: ImageType = "auto"
    image_max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    validate_images: bool = True

    @property
    def inputs(self) -> StepColumns:
        return [MESSAGES_COLUMN]

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        messages = input[MESSAGES_COLUMN]
        if not isinstance(messages, list) or not messages:
            raise RowError("expected a non-empty list of messages", column=MESSAGES_COLUMN)
        chat: ChatType = []
        for position, message in enumerate(messages):
            chat.append(self._normalize_message(message, position))
        if chat[-1]["role"] != "user":
            raise RowError("the last message must come from the user", column=MESSAGES_COLUMN)
        return chat

    def _normalize_message(self, message: Any, position: int) -> dict[str, Any]:
        def fail(reason: str) -> RowError:
            return RowError(f"message {position}: {reason}", column=MESSAGES_COLUMN)

        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise fail(f"expected a dict with a role in {sorted(_ROLES)}")
        content = message.get("content")
        if is_missing(content):
            raise fail(f"content is {shown_missing(content)} instead of text or a list of parts")
        if isinstance(content, str):
            return {"role": message["role"], "content": content}
        if not isinstance(content, list):
            raise fail("content must be a string or a list of parts")
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                text = part.get("text")
                if is_missing(text):
                    missing = shown_missing(text)
                    raise fail(f"a text part holds {missing} (a missing value) instead of text")
                parts.append({"type": "text", "text": str(text)})
            elif kind in ("image", "image_url", "input_image"):
                images = image_parts(
                    _image_value(part),
                    self.image_type,
                    column=MESSAGES_COLUMN,
                    max_pixels=self.image_max_pixels,
                    validate=self.validate_images,
                )
                detail = _detail_of(part)  # a per-part option the backend must keep
                if detail is not None:  # where OpenAI's format puts it
                    images = [
                        {**image, "image_url": {**image["image_url"], "detail": detail}}
                        for image in images
                    ]
                parts.extend(images)
            else:
                raise fail(f"unknown content part type {kind!r}")
        return {"role": message["role"], "content": parts}

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"generation": output}
