"""Hugging Face image-to-image: serverless (hf-inference), Inference Endpoints, or any server
with the same task API (``{"inputs": <base64 image>, "parameters": {"prompt": ...}}`` in, image
bytes out)."""

from __future__ import annotations

from typing import Any

from pixtill.images.fetch import DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_FETCH_BYTES
from pixtill.models.build_once import once
from pixtill.models.huggingface_location import HF_ROUTER_URL, HuggingFaceLocation
from pixtill.models.image_editing._encode import upload_bytes
from pixtill.models.image_editing.base import AsyncImageEditingModel, EditInput
from pixtill.models.image_generation.base import ImageGenerationOutput
from pixtill.models.image_generation.huggingface.inference_endpoints import (
    image_b64_from_response,
)
from pixtill.models.image_generation.openai import gather_generations
from pixtill.models.request import ModelRequest, canonical_edge
from pixtill.models.request_options import split_request_options
from pixtill.models.results import Generation, ModelResult
from pixtill.models.transport import Payload, RequestEngine
from pixtill.utils.b64 import encode_b64

__all__ = ["InferenceEndpointsImageEditing"]

_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})


class InferenceEndpointsImageEditing(HuggingFaceLocation, AsyncImageEditingModel):
    """Image-to-image through Hugging Face's inference task API (e.g. an instruct-pix2pix or
    a FLUX Kontext model).

    Where the model is served, and the token: as for `InferenceEndpointsImageGeneration`
    (``model_id`` serverless, ``endpoint_name`` or ``base_url``). The image goes as base64 in
    ``inputs``, the prompt as ``parameters.prompt``; ``generation_kwargs`` (``negative_prompt``,
    ``guidance_scale``, ``num_inference_steps``, ``target_size``, ``seed``...) join it in
    ``parameters``, as do ``extra_body``'s keys (as in huggingface_hub); ``extra_headers`` are
    HTTP headers and ``extra_query`` URL query parameters. The task API has no mask: an edit
    with a mask fails its row with a clear error. ``num_generations`` are separate requests
    (``seed + k`` for generation ``k`` when a seed is set, else the server's cache is bypassed
    so the images differ).
    """

    def _task_url(self) -> str:
        if self.base_url:
            return self.base_url
        root = self._root_url()
        if root == HF_ROUTER_URL:
            return f"{root}/hf-inference/models/{self.model_id}"
        return root

    def _extra_headers(self) -> dict[str, str]:
        return {"Accept": "image/png, image/*;q=0.9, application/json;q=0.5"}

    @property
    def _auth_per_request(self) -> bool:
        return (
            True  # an image URL in a row lives on another host: fetching it never sends the token
        )

    @canonical_edge
    async def agenerate(
        self, input: EditInput, num_generations: int = 1, **kwargs: Any
    ) -> list[ImageGenerationOutput]:
        request = ModelRequest.of_call(input, num_generations, kwargs, self.generation_kwargs)
        return (await self._agenerate_result(request)).to_image_outputs()

    async def _agenerate_result(self, request: ModelRequest[EditInput]) -> ModelResult:
        input = request.input
        if input.get("mask") is not None:
            raise ValueError(
                "InferenceEndpointsImageEditing: the image-to-image task API takes no mask; "
                "use OpenAIImageEditing or DiffusersImageEditing for masked edits"
            )
        engine = await self._aengine()
        parameters = dict(request.settings)
        options = split_request_options(parameters, type(self).__name__)
        # As huggingface_hub's ``extra_body``: provider parameters, sent in ``parameters``.
        parameters.update(options.body)
        parameters.pop("prompt", None)
        seed = parameters.get("seed")
        url = options.url(self._task_url())
        headers = dict(options.headers)
        if request.n > 1 and seed is None:
            headers["x-use-cache"] = "false"  # identical requests would get one cached image

        async def fetch(image_url: str) -> bytes:  # inside the request's slot
            return await self._get_bytes(
                engine,
                image_url,
                timeout=DEFAULT_FETCH_TIMEOUT,
                max_bytes=DEFAULT_MAX_FETCH_BYTES,
            )

        async def encode() -> str:
            data, _ = await upload_bytes(input["image"], _FORMATS, self.image_resize, fetch)
            return encode_b64(data)

        image = once(encode)  # built in the first request's slot, shared by the others

        async def one(k: int) -> list[Generation]:
            params = {"prompt": input["prompt"], **parameters}
            if isinstance(seed, int) and k > 0:
                params["seed"] = seed + k

            async def payload() -> dict[str, Any]:
                return {"inputs": await image(), "parameters": params}

            return [await self._request(engine, url, payload, headers or None)]

        return await gather_generations(
            type(self).__name__, [(1, one(k)) for k in range(request.n)]
        )

    async def _request(
        self,
        engine: RequestEngine,
        url: str,
        payload: Payload,
        headers: dict[str, str] | None,
    ) -> Generation:
        auth = {**(self._request_auth or {}), **(headers or {})}
        body, content_type = await self._post_bytes(engine, url, payload, headers=auth or None)
        return Generation.of_image(image_b64_from_response(body, content_type, type(self).__name__))
