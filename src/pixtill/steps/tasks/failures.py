"""Why a task's row failed, said precisely: which input column a request failure is about,
which earlier step emptied a column, and whether a model's image output is really an image.
Pure functions over rows; the task (`pixtill.steps.tasks.base`) builds the messages with
`pixtill.errors.locate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pixtill.images import ImageError, ImageRef, is_image_value
from pixtill.run_report import METADATA_COLUMN
from pixtill.steps.typing import Row

# A request or response failure about these is blamed on the row's image column.
# (Ollama: "illegal base64 data at input byte 0"; Anthropic: "... does not match the provided
# media type"; vLLM: "Cannot connect to host <the image URL's host>", matched by host below.)
_ABOUT_IMAGES = re.compile(r"image|download|fetch|base64|media.?type|mime", re.IGNORECASE)


def holds_image(value: Any) -> bool:
    """Whether a row value is (or lists) an image: any image form, an http(s) URL, or chat
    messages with an image part."""
    if isinstance(value, (list, tuple)):
        return any(holds_image(v) for v in value)
    if isinstance(value, dict) and not is_image_value(value):
        if value.get("type") in ("image", "image_url", "input_image"):
            return True
        content = value.get("content")
        return isinstance(content, list) and any(holds_image(part) for part in content)
    if isinstance(value, str):
        return value[:8].lower().startswith(("http://", "https://")) or is_image_value(value)
    return is_image_value(value)


def upstream_failure(row: Row, column: str | None, step: str) -> str:
    """`` (step 'x' failed for this row)`` when ``column`` is empty because an earlier
    step failed, so that the user is pointed at the cause, not at its consequence."""
    if column is None or row.get(column) is not None:
        return ""
    meta = row.get(METADATA_COLUMN)
    if not isinstance(meta, dict):
        return ""
    for key, value in meta.items():
        if key.startswith("error_") and key != f"error_{step}" and value:
            return f" (step {key[len('error_') :]!r} failed for this row)"
    return ""


def failure_column(message: str, row: Row, columns: Sequence[str]) -> str | None:
    """The input column a request or response failure is about: the one whose value the
    message quotes (an image URL the server could not fetch), else the only column holding an
    image when the message is about an image; None when no input value is to blame."""
    for column in columns:
        value = row[column]
        if isinstance(value, str) and len(value) >= 8 and value in message:
            return column
        if isinstance(value, ImageRef) and value.url is not None and value.url in message:
            return column
        host = _url_host(value)
        if host is not None and re.search(rf"host\W{{1,3}}{re.escape(host)}\b", message, re.I):
            return column  # "Cannot connect to host images.example.com:443"
    if _ABOUT_IMAGES.search(_REQUEST.sub("", message)):  # not the API's own URL
        holding = [c for c in columns if holds_image(row[c])]
        if len(holding) == 1:
            return holding[0]
    return None


_REQUEST = re.compile(r"\((?:POST|GET|PUT) [^)\s]*\)")  # "(POST <url>)" of a RequestError


def _url_host(value: Any) -> str | None:
    """The host of an http(s) image URL in a row (a str or an `ImageRef`); None otherwise,
    or for a host too short to find in a message without mistakes."""
    url = value.url if isinstance(value, ImageRef) else value
    if not isinstance(url, str) or not url[:8].lower().startswith(("http://", "https://")):
        return None
    host = urlsplit(url).hostname
    return host if host is not None and len(host) >= 6 and "." in host else None


def image_output_error(output: Any) -> str | None:
    """Why an image model's output is not a usable image, or None when it is one."""
    if not isinstance(output, dict):
        return f"the model returned a {type(output).__name__}, not images"
    images = output.get("images")
    if not isinstance(images, list) or not any(i is not None for i in images):
        return "the model returned no image"
    for k, image in enumerate(images):
        if image is None:
            continue
        if not isinstance(image, str):
            return f"the model's image {k} is a {type(image).__name__}, not base64 text"
        try:
            ImageRef.from_value(image, "base64").validate(decode=True)
        except ImageError as exc:
            return f"the model's image {k} is not a decodable image: {exc.message}"
    return None
