"""OpenAI's image edits route (``POST /images/edits``, multipart upload)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field, SecretStr

from pixtill.errors import ModelUnavailableError
from pixtill.models.build_once import once
from pixtill.models.image_editing._encode import check_mask, upload_bytes
from pixtill.models.image_editing.base import AsyncImageEditingModel, EditInput
from pixtill.models.image_generation.base import ImageGenerationOutput
from pixtill.models.image_generation.openai import (
    OPENAI_BASE_URL,
    gather_generations,
    image_b64_from_bytes,
    openai_auth_headers,
    split_usage,
)
from pixtill.models.multipart import FilePart, encode_multipart, new_boundary
from pixtill.models.remote import (
    InvalidResponseError,
    RemoteModel,
    SecretField,
    excerpt,
)
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import RequestOptions, split_request_options
from pixtill.models.results import Generation, ModelResult
from pixtill.models.transport import RequestEngine, RequestError
from pixtill.utils.fast_json import loads

__all__ = ["OpenAIImageEditing"]

_RESERVED = ("model", "prompt", "n", "image", "mask")
# What the route takes: dall-e-2 only PNG, gpt-image models PNG, JPEG and WEBP.
_FORMATS = {"dall-e-2": frozenset({"PNG"})}
_DEFAULT_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class OpenAIImageEditing(RemoteModel, AsyncImageEditingModel):
    """Image editing with OpenAI's Images API (gpt-image-1, dall-e-2) or a compatible server.

    Each edit is one ``multipart/form-data`` POST to ``{base_url}/images/edits`` with the
    ``image`` file, the optional ``mask`` file (PNG; transparent pixels mark what to change; it
    must have the image's size), the ``prompt``, ``model`` and ``n``. Images are encoded at send
    time: PNG, JPEG and WEBP go as they are (dall-e-2 gets PNG), any other format as PNG, after
    ``image_resize`` if set. ``generation_kwargs`` (``size``, ``quality``, ``background``,
    ``output_format``, ``response_format``...) become form fields; the SDK's ``extra_headers``
    are HTTP headers, ``extra_query`` URL query parameters and ``extra_body``'s keys form fields
    (`split_request_options`). ``num_generations`` goes as
    ``n``, split into requests of at most ``max_n_per_request`` images. Answers carry base64
    images (``b64_json``) or URLs, which are fetched without the API key.
    """

    model: str = Field(default="gpt-image-1", description="Image model, e.g. 'gpt-image-1'.")
    base_url: str = Field(default=OPENAI_BASE_URL, description="Root of the API (with /v1).")
    api_key: SecretStr | None = SecretField("API key; defaults to OPENAI_API_KEY at load time.")
    max_n_per_request: int = Field(default=10, ge=1, description="Images per request at most.")
    fetch_timeout: float = Field(default=60.0, gt=0, description="Seconds to fetch an image URL.")
    max_image_bytes: int = Field(default=50 * 2**20, ge=1, description="Size cap of a fetch.")

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def _auth_per_request(self) -> bool:
        return True  # answered image URLs live on other hosts: they never get the key

    def _auth_headers(self) -> dict[str, str]:
        return openai_auth_headers(self.api_key, self.base_url, type(self).__name__)

    def check_edit(self, edit: EditInput) -> None:
        """The edits API's rules for a mask: the image's size, and an alpha channel (its
        transparent pixels mark the area to change; it is sent as PNG). Checked here so the
        row fails naming the ``mask`` column rather than with the server's bare HTTP 400. A
        mask or image given as a URL is checked by the server (nothing is fetched here)."""
        mask = edit.get("mask")
        if mask is None or mask.kind == "url" or edit["image"].kind == "url":
            return
        check_mask(mask, edit["image"])

    @canonical_edge
    async def agenerate(
        self, input: EditInput, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        request = ModelRequest.of_call(input, num_generations, kwargs, self.generation_kwargs)
        return (await self._agenerate_result(request)).to_image_outputs()

    async def _agenerate_result(self, request: ModelRequest[EditInput]) -> ModelResult:
        input = request.input
        engine = await self._aengine()
        params = dict(request.settings)
        options = split_request_options(params, type(self).__name__)
        params.update(options.body)  # the SDK sends extra_body's keys as form fields too
        for key in _RESERVED:
            params.pop(key, None)
        if self.model.startswith("gpt-image"):
            params.pop("response_format", None)  # always base64; the API refuses the field
        formats = _FORMATS.get(self.model, _DEFAULT_FORMATS)

        async def fetch(url: str) -> bytes:  # inside the request's slot (see `upload_bytes`)
            return await self._get_bytes(
                engine, url, timeout=self.fetch_timeout, max_bytes=self.max_image_bytes
            )

        async def build_fields() -> list[tuple[str, str | FilePart]]:
            image, fmt = await upload_bytes(input["image"], formats, self.image_resize, fetch)
            fields: list[tuple[str, str | FilePart]] = [
                ("model", self.model),
                ("prompt", input["prompt"]),
                ("image", FilePart(image, f"image.{fmt.lower()}", _MIME[fmt])),
            ]
            mask = input.get("mask")
            if mask is not None:
                data, _ = await upload_bytes(mask, frozenset({"PNG"}), self.image_resize, fetch)
                fields.append(("mask", FilePart(data, "mask.png", "image/png")))
            return fields + [(k, v if isinstance(v, str) else str(v)) for k, v in params.items()]

        fields = once(build_fields)  # built in the first request's slot, shared by the others
        per, total = self.max_n_per_request, request.n
        counts = [min(per, total - start) for start in range(0, total, per)]
        return await gather_generations(
            type(self).__name__,
            [(count, self._request(engine, fields, count, options)) for count in counts],
        )

    async def _request(
        self,
        engine: RequestEngine,
        fields: Callable[[], Awaitable[list[tuple[str, str | FilePart]]]],
        n: int,
        options: RequestOptions,
    ) -> list[Generation]:
        boundary = new_boundary()

        async def body() -> bytes:
            return encode_multipart([*await fields(), ("n", str(n))], boundary)[0]

        content_type = f"multipart/form-data; boundary={boundary}"
        url = options.url(f"{self.base_url.rstrip('/')}/images/edits")
        headers = {**(self._request_auth or {}), **options.headers}
        error: Exception
        try:
            raw, _ = await engine.post_body(url, body, content_type, headers=headers or None)
        except RequestError as exc:
            error = self._scrub(exc)
        except ModelUnavailableError as exc:  # a dead server: the run's problem, named
            error = self._unavailable(exc)
        else:
            return await self._images(engine, raw)
        raise error  # outside the handler: the unscrubbed error is not its __context__

    async def _images(self, engine: RequestEngine, raw: bytes) -> list[Generation]:
        backend = type(self).__name__
        try:
            answer = loads(raw)
        except ValueError:
            raise InvalidResponseError(backend, f"malformed JSON body ({len(raw)} bytes)") from None
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data:
            raise InvalidResponseError(backend, f"the response has no data: {excerpt(answer)}")
        images: list[str] = []
        for k, item in enumerate(data):
            b64 = item.get("b64_json") if isinstance(item, dict) else None
            link = item.get("url") if isinstance(item, dict) else None
            if isinstance(b64, str) and b64:
                images.append(b64)
            elif isinstance(link, str) and link:
                fetched = await self._get_bytes(
                    engine, link, timeout=self.fetch_timeout, max_bytes=self.max_image_bytes
                )
                images.append(image_b64_from_bytes(fetched, backend, "the image at the URL"))
            else:
                raise InvalidResponseError(backend, f"image {k} has neither b64_json nor url")
        usage = split_usage(answer, len(images))
        return [Generation.of_image(image, None, *tokens) for image, tokens in zip(images, usage)]
