"""OpenAI's Images API (``POST /images/generations``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from typing_extensions import Self

from pixtill.errors import ModelUnavailableError
from pixtill.images import ImageError, ImageRef
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.image_generation.params import check_openai_image_params
from pixtill.models.remote import (
    InvalidResponseError,
    RemoteModel,
    SecretField,
    excerpt,
    merged_params,
    resolve_secret,
)
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import RequestOptions, split_request_options
from pixtill.models.results import Generation, ModelResult, ResultError
from pixtill.models.transport import RequestEngine
from pixtill.utils.b64 import encode_b64

__all__ = [
    "OpenAIImageGeneration",
    "gather_generations",
    "image_b64_from_bytes",
    "openai_auth_headers",
    "split_usage",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
_RESERVED = ("model", "prompt", "n")
_NO_OPTIONS = RequestOptions()


def image_b64_from_bytes(data: bytes, backend: str, what: str = "the response") -> str:
    """Base64 of ``data`` once its header shows it is an image (an error page is not)."""
    try:
        ImageRef.from_value(data).format  # noqa: B018 - reads the header only
    except ImageError as exc:
        raise InvalidResponseError(
            backend, f"{what} is not an image ({len(data)} bytes: {exc})"
        ) from None
    return encode_b64(data)


def split_usage(body: Any, count: int) -> list[tuple[int | None, int | None]]:
    """``(input_tokens, output_tokens)`` per image of an Images API answer with ``usage``
    (gpt-image models): the prompt's tokens for each, the output tokens split evenly; Nones
    when the answer has no usage."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict) or count < 1:
        return [(None, None)] * max(count, 0)
    ins, outs = usage.get("input_tokens"), usage.get("output_tokens")
    ins = ins if isinstance(ins, int) and not isinstance(ins, bool) else None
    if not isinstance(outs, int) or isinstance(outs, bool):
        return [(ins, None)] * count
    base, extra = divmod(outs, count)
    return [(ins, base + (1 if k < extra else 0)) for k in range(count)]


async def gather_generations(
    backend: str, jobs: list[tuple[int, Awaitable[list[Generation]]]]
) -> ModelResult:
    """Run requests concurrently; each ``(count, request)`` should give ``count`` generations.

    One generation per expected image, in order: a failed request (or a short answer) gives
    failed generations for its images only, its error kept as data (`ResultError`); when
    nothing at all succeeded the first error is raised (the request failed as a whole).
    """
    if len(jobs) == 1:  # no gather: one request, its error is the error
        count, request = jobs[0]
        results: list[list[Generation] | BaseException] = [await request]
    else:
        results = await asyncio.gather(*(job for _, job in jobs), return_exceptions=True)
    generations: list[Generation] = []
    first_error: Exception | None = None
    for (count, _), result in zip(jobs, results):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception) or isinstance(result, ModelUnavailableError):
                raise result
            first_error = first_error or result
            generations += [Generation.failed(result)] * count
            continue
        generations += result[:count]
        if len(result) < count:
            short = ResultError(
                f"{backend}: asked for {count} images, got {len(result)}", "invalid_response"
            )
            generations += [Generation.failed(short)] * (count - len(result))
    if first_error is not None and all(not g.ok for g in generations):
        raise first_error
    return ModelResult.of(generations)


class OpenAIImageGeneration(RemoteModel, AsyncImageGenerationModel):
    """Text-to-image with OpenAI's Images API (DALL·E, gpt-image) or a compatible server.

    ``generation_kwargs`` go into the request (``size``, ``quality``, ``style``, ...), except the
    SDK's ``extra_headers`` (HTTP headers), ``extra_query`` (URL query parameters) and
    ``extra_body`` (body fields), sent as the SDK sends them (`split_request_options`). Images come
    back as base64 (``response_format="b64_json"``, which gpt-image models always use); with
    ``generation_kwargs={"response_format": "url"}`` the server answers with URLs, which are
    fetched (with ``fetch_timeout`` and ``max_image_bytes``) and converted to base64, without the
    API key. ``num_generations`` is sent as ``n``, split into requests of at most
    ``max_n_per_request`` images (dall-e-3 takes only 1).

    ``response_format``, ``quality``, ``size`` and ``style`` are checked against the values the
    API documents for the model (`check_openai_image_params`): a bad value in
    ``generation_kwargs`` fails construction, one passed to `generate`/`agenerate` raises
    ``ValueError`` at the call.

    As in distilabel, an OpenAI SDK client (``openai.AsyncOpenAI`` or a compatible object with
    ``images.generate``) assigned to ``_aclient`` is used instead of pixtill's HTTP engine;
    its retries and limits are then the SDK's.
    """

    _aclient: Any = PrivateAttr(default=None)

    model: str = Field(default="dall-e-3", description="Image model, e.g. 'dall-e-3'.")
    base_url: str = Field(default=OPENAI_BASE_URL, description="Root of the API (with /v1).")
    api_key: SecretStr | None = SecretField("API key; defaults to OPENAI_API_KEY at load time.")
    max_n_per_request: int | None = Field(
        default=None,
        ge=1,
        description="Images per request at most (default: 1 for dall-e-3, else 10).",
    )
    fetch_timeout: float = Field(default=60.0, gt=0, description="Seconds to fetch an image URL.")
    max_image_bytes: int = Field(default=50 * 2**20, ge=1, description="Size cap of a fetch.")

    @property
    def model_name(self) -> str:
        return self.model

    @model_validator(mode="after")
    def _check_generation_kwargs(self) -> Self:
        check_openai_image_params(type(self).__name__, self.model, self.generation_kwargs)
        return self

    def _checked_params(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = merged_params(self.generation_kwargs, kwargs)
        check_openai_image_params(type(self).__name__, self.model, params)
        return params

    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        """`agenerate` for each prompt; bad parameters raise here, before any request."""
        self._checked_params(kwargs)
        return super().generate(inputs, num_generations, **kwargs)

    @property
    def _auth_per_request(self) -> bool:
        return True  # image URLs live on other hosts: the engine itself carries no key

    def _auth_headers(self) -> dict[str, str]:
        return openai_auth_headers(self.api_key, self.base_url, type(self).__name__)

    @property
    def n_per_request(self) -> int:
        if self.max_n_per_request is not None:
            return self.max_n_per_request
        return 1 if self.model == "dall-e-3" else 10

    @canonical_edge
    async def agenerate(
        self, input: str, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        request = ModelRequest.of_call(input, num_generations, kwargs, self.generation_kwargs)
        return (await self._agenerate_result(request)).to_image_outputs()

    async def _agenerate_result(self, request: ModelRequest[str]) -> ModelResult:
        prompt = request.input
        if not isinstance(prompt, str):
            raise ValueError(f"{type(self).__name__}: the prompt must be a string, got {prompt!r}")
        params = dict(request.settings)
        check_openai_image_params(type(self).__name__, self.model, params)
        options = split_request_options(params, type(self).__name__)
        for key in _RESERVED:
            params.pop(key, None)
        if self.model.startswith("gpt-image"):
            params.pop("response_format", None)  # always base64; the API refuses the field
        elif params.get("response_format") != "url":
            params["response_format"] = "b64_json"
        payload: dict[str, Any] = {"model": self.model, "prompt": prompt, **params}
        per, total = self.n_per_request, request.n
        counts = [min(per, total - start) for start in range(0, total, per)]
        send = self._request if self._aclient is None else self._sdk_request
        # Without options the call keeps its three arguments (a request stand-in may take three).
        extra = (options,) if options != _NO_OPTIONS else ()
        engine = await self._aengine()
        return await gather_generations(
            type(self).__name__,
            [(count, send(engine, payload, count, *extra)) for count in counts],
        )

    async def _sdk_request(
        self,
        engine: RequestEngine,
        payload: dict[str, Any],
        n: int,
        options: RequestOptions = _NO_OPTIONS,
    ) -> list[Generation]:
        """One request through the SDK client in ``_aclient``; URLs are fetched as usual."""
        sdk_options = {  # handed back to the SDK, which sends them itself
            name: value
            for name, value in (
                ("extra_headers", options.headers),
                ("extra_query", options.query),
                ("extra_body", options.body),
            )
            if value
        }
        response = await self._aclient.images.generate(**payload, n=n, **sdk_options)
        data = [
            {"b64_json": getattr(item, "b64_json", None), "url": getattr(item, "url", None)}
            for item in getattr(response, "data", None) or []
        ]
        images = await self._images_of(engine, data)
        return [Generation.of_image(image) for image in images]

    async def _request(
        self,
        engine: RequestEngine,
        payload: dict[str, Any],
        n: int,
        options: RequestOptions = _NO_OPTIONS,
    ) -> list[Generation]:
        url = options.url(f"{self.base_url.rstrip('/')}/images/generations")
        headers = {**(self._request_auth or {}), **options.headers}
        payload = {**payload, **options.body, "n": n}
        body = await self._post_json(engine, url, payload, headers=headers or None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            raise InvalidResponseError(
                type(self).__name__, f"the response has no data: {excerpt(body)}"
            )
        images = await self._images_of(engine, data)
        usage = split_usage(body, len(images))
        return [Generation.of_image(image, None, *tokens) for image, tokens in zip(images, usage)]

    async def _images_of(self, engine: RequestEngine, data: list[Any]) -> list[str]:
        """Base64 images of the response's ``data`` items, fetching those given as URLs."""
        backend = type(self).__name__
        if not data:
            raise InvalidResponseError(backend, "the response has no images")
        images: list[str] = []
        fetches: dict[int, str] = {}
        for k, item in enumerate(data):
            b64 = item.get("b64_json") if isinstance(item, dict) else None
            link = item.get("url") if isinstance(item, dict) else None
            if isinstance(b64, str) and b64:
                images.append(b64)
            elif isinstance(link, str) and link:
                images.append("")
                fetches[k] = link
            else:
                raise InvalidResponseError(backend, f"image {k} has neither b64_json nor url")
        if fetches:
            fetched = await asyncio.gather(*(self._fetch(engine, u) for u in fetches.values()))
            for k, image in zip(fetches, fetched):
                images[k] = image
        return images

    async def _fetch(self, engine: RequestEngine, url: str) -> str:
        data = await self._get_bytes(
            engine, url, timeout=self.fetch_timeout, max_bytes=self.max_image_bytes
        )
        return image_b64_from_bytes(data, type(self).__name__, "the image at the returned URL")


def openai_auth_headers(api_key: SecretStr | None, base_url: str, backend: str) -> dict[str, str]:
    """``Authorization: Bearer`` with ``api_key`` (else OPENAI_API_KEY); no header for another
    server without a key. Raises ValueError naming ``backend`` when OpenAI's own API would be
    called without a key."""
    key = resolve_secret(api_key, "OPENAI_API_KEY")
    if key is None:
        if base_url.rstrip("/") == OPENAI_BASE_URL:
            raise ValueError(f"{backend}: no API key: pass api_key= or set OPENAI_API_KEY")
        return {}
    return {"Authorization": f"Bearer {key}"}
