"""A fake image-edit server: OpenAI's ``/v1/images/edits`` (multipart) and Hugging Face's
image-to-image task route, checking requests as the real ones do.

    POST /v1/images/edits            multipart: model, prompt, image (file), mask (PNG file of
                                     the image's size, with an alpha channel), n, size,
                                     quality, ...; unknown fields refused; answers b64_json
    POST /models/{owner}/{name}      {"inputs": <base64 image>, "parameters": {"prompt", ...}};
                                     answers raw PNG bytes of the input's size

Every image part must decode as an image whose format matches its declared media type.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

_EDIT_FIELDS = frozenset(
    {"model", "prompt", "image", "mask", "n", "size", "quality", "background", "output_format"}
    | {"response_format", "user", "input_fidelity"}
)
_I2I_PARAMETERS = frozenset(
    {"prompt", "negative_prompt", "guidance_scale", "num_inference_steps", "target_size", "seed"}
)
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def solid_png(size: tuple[int, int], seed: str) -> bytes:
    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@dataclass
class Edit:
    route: str
    prompt: str
    fields: dict[str, str]
    image: tuple[str, tuple[int, int]]  # (format, size) as decoded
    mask: tuple[str, tuple[int, int], str] | None = None  # (format, size, mode)
    headers: dict[str, str] = field(default_factory=dict)


class FakeEdits:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.received: list[Edit] = []
        self.rejected: list[str] = []
        self.files: dict[str, bytes] = {}  # images answered by URL (response_format=url)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_post("/models/{owner}/{name}", self._image_to_image)
        app.router.add_get("/files/{name}", self._file)
        return app

    async def _file(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:  # the key must never go to the image host
            return self._refuse(400, "credentials sent to the image host")
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    def _refuse(self, status: int, message: str) -> web.Response:
        self.rejected.append(message)
        return web.json_response({"error": {"message": message}}, status=status)

    def _authorised(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == (
            f"Bearer {self.api_key}"
        )

    async def _edits(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._refuse(401, "invalid api key")
        if request.content_type != "multipart/form-data":
            return self._refuse(400, f"expected multipart/form-data, got {request.content_type}")
        fields: dict[str, str] = {}
        files: dict[str, tuple[bytes, str, str]] = {}
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""  # type: ignore[union-attr]
            if name not in _EDIT_FIELDS:
                return self._refuse(400, f"unknown field {name!r}")
            if part.filename:  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
                ctype = part.headers.get("Content-Type", "")
                files[name] = (bytes(data), ctype, part.filename)  # type: ignore[union-attr]
            else:
                fields[name] = await part.text()  # type: ignore[union-attr]
        if "image" not in files or not fields.get("prompt") or not fields.get("model"):
            return self._refuse(400, "image, prompt and model are required")
        data, ctype, _ = files["image"]
        try:
            image = _decoded(data)
        except Exception as exc:
            return self._refuse(400, f"the image does not decode: {exc}")
        if _MIME.get(image.format or "") != ctype:
            return self._refuse(400, f"image is {image.format} but was sent as {ctype}")
        if fields["model"] == "dall-e-2" and image.format != "PNG":
            return self._refuse(400, "dall-e-2 takes PNG images only")
        mask = None
        if "mask" in files:
            mdata, mctype, _ = files["mask"]
            try:
                mimage = _decoded(mdata)
            except Exception as exc:
                return self._refuse(400, f"the mask does not decode: {exc}")
            if mimage.format != "PNG" or mctype != "image/png":
                return self._refuse(400, "the mask must be a PNG")
            if mimage.size != image.size:
                return self._refuse(400, "the mask and the image must have the same size")
            if "A" not in mimage.getbands():
                return self._refuse(400, "the mask needs an alpha channel")
            mask = (mimage.format, mimage.size, mimage.mode)
        try:
            n = int(fields.get("n", "1"))
        except ValueError:
            return self._refuse(400, "n must be an integer")
        if not 1 <= n <= 10:
            return self._refuse(400, "n must be between 1 and 10")
        prompt = fields["prompt"]
        self.received.append(Edit("edits", prompt, fields, (image.format or "", image.size), mask))
        index = len(self.received)
        pngs = [solid_png(image.size, f"{prompt}#{index}#{k}") for k in range(n)]
        if fields.get("response_format") == "url":
            data_out = []
            for k, data in enumerate(pngs):
                name = f"edit-{index}-{k}.png"
                self.files[name] = data
                data_out.append({"url": f"{request.url.origin()}/files/{name}"})
        else:
            data_out = [{"b64_json": base64.b64encode(data).decode()} for data in pngs]
        answer: dict[str, Any] = {"created": 0, "data": data_out}
        if fields["model"].startswith("gpt-image"):  # token usage, as OpenAI reports it
            words = len(prompt.split())
            image_tokens = 65  # what the input image costs, the same for each request
            answer["usage"] = {
                "input_tokens": words + image_tokens,
                "output_tokens": 272 * n,
                "total_tokens": words + image_tokens + 272 * n,
                "input_tokens_details": {"text_tokens": words, "image_tokens": image_tokens},
            }
        return web.json_response(answer)

    async def _image_to_image(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._refuse(401, "invalid token")
        try:
            payload: Any = await request.json()
        except ValueError:
            return self._refuse(400, "the body is not JSON")
        if not isinstance(payload, dict) or set(payload) - {"inputs", "parameters"}:
            return self._refuse(400, "unknown fields")
        parameters = payload.get("parameters") or {}
        if set(parameters) - _I2I_PARAMETERS:
            return self._refuse(400, f"invalid parameters {sorted(parameters)}")
        try:
            image = _decoded(base64.b64decode(payload["inputs"], validate=True))
        except Exception as exc:
            return self._refuse(400, f"inputs is not a base64 image: {exc}")
        prompt = str(parameters.get("prompt", ""))
        self.received.append(
            Edit(
                "image-to-image",
                prompt,
                {k: str(v) for k, v in parameters.items()},
                (image.format or "", image.size),
                headers={"x-use-cache": request.headers.get("x-use-cache", "")},
            )
        )
        salt = parameters.get("seed", len(self.received))
        return web.Response(
            body=solid_png(image.size, f"{prompt}#{salt}"), content_type="image/png"
        )
