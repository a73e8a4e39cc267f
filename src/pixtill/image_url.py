"""`ImageURL`: an image as OpenAI-format chat messages carry it, with its `ImageRef` attached.

Tasks put images in messages the way distilabel (and the OpenAI API) does::

    {"type": "image_url", "image_url": {"url": "https://..." or "data:image/png;base64,..."}}

so that a user's ``format_input`` override or a custom LLM written for distilabel reads what it
expects. The URL is an `ImageURL`, a real ``str`` (every JSON encoder, SDK and ``==`` sees the
URL itself), which also holds the `ImageRef` it was made from. That lets pixtill avoid the
costs a plain string would bring back:

- `ImageRef.from_value` returns the held reference instead of decoding the base64 again, so a
  backend gets the already-checked image (and a resize policy re-encodes from it);
- metadata (``raw_input_<step>``) and cache keys store ``ref.reference()`` (the URL or
  ``sha256:<hex>``), never the base64 text.

The data URL is built once, when the `ImageURL` is made: a ``str`` cannot change its content
later, and a placeholder that only some readers resolve would send the wrong bytes to any
client that serialises the message itself. Base64 input is reused as is (no decode/encode
round trip), http(s) URLs are kept verbatim and never fetched here.
"""

from __future__ import annotations

from typing import Any

from pixtill.images import ImageRef

__all__ = ["SENDABLE_FORMATS", "ImageURL", "image_url_part"]

SENDABLE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "GIF"})
"""Formats every chat API takes as a data URL; other images are re-encoded as PNG."""


class ImageURL(str):
    """The URL (http(s) or ``data:``) of one image, a ``str`` that also holds its `ImageRef`.

    Build one with `ImageURL.of`. Copies made by ``str`` operations (slicing, ``+``) are plain
    strings again; pickling keeps the reference.
    """

    ref: ImageRef

    def __new__(cls, url: str, ref: ImageRef) -> ImageURL:
        self = super().__new__(cls, url)
        self.ref = ref
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ImageURL, (str(self), self.ref))

    @property
    def __image_ref__(self) -> ImageRef:
        """Read by `ImageRef.from_value` to skip decoding the URL again."""
        return self.ref

    @classmethod
    def of(cls, ref: ImageRef) -> ImageURL:
        """``ref``'s URL if it is a web image, else a ``data:<mime>;base64,...`` URL in the
        image's own format when chat APIs take it (PNG otherwise). A PIL image read from a
        JPEG is sent as JPEG; other PIL images (and those made in memory) as PNG, lossless.

        Raises:
            ImageError: the image cannot be read or is not a decodable image.
        """
        if ref.url is not None:
            return cls(ref.url, ref)
        if ref.needs_preparation():
            # Rotated by EXIF, CMYK, palette, 16-bit or transparent: the `to_model_image`
            # pixels, so that an HTTP backend sends what a local model sees.
            return cls(ref.to_api_data_url(None, SENDABLE_FORMATS), ref)
        if ref.kind == "pil":
            # A decoded image keeps the format it was read in (`datasets` decodes JPEG columns
            # to PIL images whose format is "JPEG"): encoding it back as such is several times
            # faster than PNG and keeps the request small; otherwise PNG, lossless.
            own = (ref.to_pil().format or "").upper()
            return cls(ref.to_data_url(format="JPEG" if own in ("JPEG", "MPO") else "PNG"), ref)
        target = None if ref.format in SENDABLE_FORMATS else "PNG"
        return cls(ref.to_data_url(format=target), ref)

    def __repr__(self) -> str:
        return f"ImageURL({self.ref!r})"


def image_url_part(ref: ImageRef) -> dict[str, Any]:
    """``{"type": "image_url", "image_url": {"url": ImageURL}}`` for one image."""
    return {"type": "image_url", "image_url": {"url": ImageURL.of(ref)}}
