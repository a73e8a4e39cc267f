"""Hugging Face text-to-image: serverless (hf-inference), Inference Endpoints, or any server
with the same task API (``{"inputs": prompt, "parameters": {...}}`` in, image bytes out)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import model_validator
from typing_extensions import Self

from pixtill.images import ImageError, ImageRef
from pixtill.models.huggingface_location import HF_ROUTER_URL, HuggingFaceLocation
from pixtill.models.image_generation.base import (
    AsyncImageGenerationModel,
    ImageGenerationOutput,
)
from pixtill.models.image_generation.openai import gather_generations, image_b64_from_bytes
from pixtill.models.image_generation.params import check_hf_text_to_image_params
from pixtill.models.remote import InvalidResponseError, excerpt
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import split_request_options
from pixtill.models.results import Generation, ModelResult
from pixtill.models.transport import RequestEngine

__all__ = ["InferenceEndpointsImageGeneration", "image_b64_from_response"]

# Keys under which JSON-answering servers put the image.
_IMAGE_KEYS = ("image", "images", "b64_json", "generated_image", "data", "output")


class InferenceEndpointsImageGeneration(HuggingFaceLocation, AsyncImageGenerationModel):
    """Text-to-image through Hugging Face's inference task API.

    Give exactly one of ``model_id`` (serverless: ``POST
    https://router.huggingface.co/hf-inference/models/<model_id>``), ``endpoint_name`` (a
    dedicated Inference Endpoint, URL looked up at ``load()``) or ``base_url`` (the full URL to
    POST to). Token as for `InferenceEndpointsLLM`.

    ``generation_kwargs`` (``negative_prompt``, ``width``, ``height``, ``num_inference_steps``,
    ``guidance_scale``, ``seed``, ...) go into ``parameters``; unset ones are left out.
    ``extra_body``'s keys join ``parameters`` (as in huggingface_hub); ``extra_headers`` are
    HTTP headers and ``extra_query`` URL query parameters. The answer is raw image bytes (a
    JSON body holding a base64 image is understood too).
    ``num_generations`` are separate requests; with a ``seed``, generation ``k`` uses
    ``seed + k`` so the images differ and stay reproducible. Without a seed the server's cache
    is bypassed so the images differ.
    """

    @model_validator(mode="after")
    def _check_generation_kwargs(self) -> Self:
        check_hf_text_to_image_params(type(self).__name__, self.generation_kwargs)
        return self

    def generate(
        self, inputs: list[str], num_generations: int = 1, **kwargs: Any
    ) -> list[list[ImageGenerationOutput]]:
        """`agenerate` for each prompt; ill-typed parameters raise here, before any request."""
        check_hf_text_to_image_params(type(self).__name__, kwargs)
        return super().generate(inputs, num_generations, **kwargs)

    def _task_url(self) -> str:
        if self.base_url:
            return self.base_url
        root = self._root_url()
        if root == HF_ROUTER_URL:
            return f"{root}/hf-inference/models/{self.model_id}"
        return root  # a dedicated endpoint serves its model at its root

    def _extra_headers(self) -> dict[str, str]:
        return {"Accept": "image/png, image/*;q=0.9, application/json;q=0.5"}

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
        parameters = dict(request.settings)
        check_hf_text_to_image_params(type(self).__name__, parameters)
        options = split_request_options(parameters, type(self).__name__)
        # As huggingface_hub's ``extra_body``: provider parameters, sent in ``parameters``.
        parameters.update(options.body)
        engine = await self._aengine()
        seed = parameters.get("seed")
        url = options.url(self._task_url())
        headers = dict(options.headers)
        if request.n > 1 and seed is None:
            headers["x-use-cache"] = "false"  # identical requests would get one cached image

        async def one(k: int) -> list[Generation]:
            params = parameters
            if isinstance(seed, int) and k > 0:
                params = {**parameters, "seed": seed + k}
            payload: dict[str, Any] = {"inputs": prompt}
            if params:
                payload["parameters"] = params
            return [await self._request(engine, url, payload, headers or None)]

        return await gather_generations(
            type(self).__name__, [(1, one(k)) for k in range(request.n)]
        )

    async def _request(
        self,
        engine: RequestEngine,
        url: str,
        payload: dict[str, Any],
        headers: dict[str, str] | None,
    ) -> Generation:
        body, content_type = await self._post_bytes(engine, url, payload, headers=headers)
        return Generation.of_image(image_b64_from_response(body, content_type, type(self).__name__))


def image_b64_from_response(body: bytes, content_type: str, backend: str) -> str:
    """The base64 image of a Hugging Face task API answer: the body's image bytes, or the image
    inside a JSON body (see `_image_from_json`). Raises `InvalidResponseError` naming
    ``backend`` for malformed JSON or a body holding no valid image."""
    if content_type.endswith("json") or body[:1] in (b"{", b"["):
        try:
            decoded = json.loads(body)
        except ValueError:
            raise InvalidResponseError(
                backend, f"malformed JSON body ({content_type}, {len(body)} bytes)"
            ) from None
        return _image_from_json(decoded, backend)
    return image_b64_from_bytes(body, backend, f"the response ({content_type})")


def _image_from_json(value: Any, backend: str) -> str:
    """The base64 image inside a JSON answer (``{"image": ...}``, ``[{"generated_image": ...}]``,
    ``{"data": [{"b64_json": ...}]}`` ...)."""
    found = _find_image_string(value)
    if found is None:
        raise InvalidResponseError(backend, f"no image in the JSON response: {excerpt(value)}")
    try:
        data = ImageRef.from_value(found, "base64").get_bytes()
    except ImageError as exc:
        raise InvalidResponseError(
            backend, f"the JSON response's image is invalid: {exc}"
        ) from None
    return image_b64_from_bytes(data, backend, "the JSON response's image")


def _find_image_string(value: Any, depth: int = 0) -> str | None:
    if depth > 4:
        return None
    if isinstance(value, str):
        return value if len(value) >= 16 else None
    if isinstance(value, list):
        return _find_image_string(value[0], depth + 1) if value else None
    if isinstance(value, dict):
        for key in _IMAGE_KEYS:
            if key in value:
                found = _find_image_string(value[key], depth + 1)
                if found is not None:
                    return found
    return None
