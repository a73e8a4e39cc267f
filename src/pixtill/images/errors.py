"""The errors of bad image input, and the helpers that keep their messages short."""

from __future__ import annotations

from typing import Any


class ImageError(ValueError):
    """Bad image input. Carries where it happened (``row``, ``column``) when known."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.column = column

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def at(self, *, row: int | None, column: str | None) -> ImageError:
        """The same error (same class and message) located at ``row``/``column``."""
        return type(self)(
            self.message,
            row=self.row if row is None else row,
            column=self.column if column is None else column,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,), {"row": self.row, "column": self.column})


class ImageDecodeError(ImageError):
    """Corrupt base64, a truncated or corrupt file, or data that is not an image at all."""


class ImageNotFoundError(ImageError):
    """A local path that does not exist (or is not a file)."""


class ImageTooLargeError(ImageError):
    """An image with more pixels than allowed (checked from the header, before decoding)."""


class ImageTypeMismatchError(ImageError):
    """A value that does not match the declared ``image_type`` (or is no image form at all)."""


class ImageFetchError(ImageError):
    """Fetching a URL failed: an HTTP error status, a timeout, or a body over the size cap."""


def preview(text: str, limit: int = 40) -> str:
    """``text`` quoted and cut short: error messages never carry image data."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


def short(exc: BaseException) -> str:
    """An exception's message (its type's name when empty), at most 200 characters."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
