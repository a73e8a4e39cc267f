"""Fake model servers that speak each provider's wire format and check requests like the real
ones do (unknown fields refused, images decoded, media types compared with the bytes).

One aiohttp app serves every route:

    POST /v1/chat/completions     OpenAI chat (``tgi=True``: TGI's Messages API, which refuses n>1)
    POST /v1/messages             Anthropic Messages API
    POST /v1/images/generations   OpenAI Images API (b64_json or url answers)
    GET  /files/{name}            images the Images API answered with by URL
    GET  /static/{name}           images registered with ``add_static`` (to pass as URLs)
    POST /models/{owner}/{name}   Hugging Face text-to-image (raw PNG bytes)

Failures are scripted per request by markers in its text (so one row fails, its neighbours
don't); attempts are counted per request text:

    [[429:N]]    429 without Retry-After for the first N attempts
    [[429ra:N]]  429 with ``Retry-After: 0.3`` for the first N attempts
    [[500:N]]    500 for the first N attempts
    [[status:C]] always status C
    [[hang]]     never answers (the client must time out)
    [[badjson]]  200 with a malformed JSON body
    [[nochoices]] 200 with a well-formed body lacking choices/content/data
    [[echokey]]  401 whose body echoes the credentials it got
    [[json]]     (text-to-image) answer with JSON holding base64 instead of raw bytes
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import io
import json
import re
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from pixtill.models._aiohttp import AiohttpTransport
from pixtill.models.http import ErrorKind, HttpRequest, HttpResponse, ManualClock, TransportError

__all__ = [
    "FAST",
    "FakeProviders",
    "ImageSeen",
    "Received",
    "example_for_schema",
    "free_port",
    "loaded",
    "png",
]

_MARKER = re.compile(r"\[\[([a-z0-9]+)(?::([0-9.]+))?\]\]")
_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_OPENAI_CHAT_KEYS = frozenset(
    {
        "model",
        "messages",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "response_format",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "user",
        "stream",
    }
)
_ANTHROPIC_KEYS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
    }
)
_ANTHROPIC_MEDIA = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_IMAGES_KEYS = frozenset(
    {"model", "prompt", "n", "size", "quality", "style", "response_format", "user", "background"}
)
_T2I_PARAMETERS = frozenset(
    {
        "negative_prompt",
        "width",
        "height",
        "num_inference_steps",
        "guidance_scale",
        "seed",
        "scheduler",
    }
)
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


def png(width: int, height: int, seed: str = "") -> bytes:
    """A small solid PNG whose colour depends on ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), tuple(digest[:3])).save(buffer, format="PNG")
    return buffer.getvalue()


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {key: example_for_schema(sub) for key, sub in props.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {"type": "string"}))]
    if kind == "integer":
        return 7
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    return "text"


@dataclass
class ImageSeen:
    """One image the server received: how it came, and what it decoded to."""

    source: str  # "data" (base64 inside the request) or "url"
    format: str | None  # PNG, JPEG...; None for a URL the server did not fetch
    size: tuple[int, int] | None
    url: str | None = None
    media_type: str | None = None


@dataclass
class Received:
    """A request that passed validation."""

    route: str
    text: str
    images: list[ImageSeen] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)


class _Reject(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _openai_error(status: int, message: str, code: str = "invalid_request_error") -> _Reject:
    body = {"error": {"message": message, "type": code, "param": None, "code": None}}
    return _Reject(web.json_response(body, status=status))


def _anthropic_error(status: int, message: str, kind: str = "invalid_request_error") -> _Reject:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return _Reject(web.json_response(body, status=status))


def _decode_image(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return str(image.format), image.size


class FakeProviders:
    """The fake servers' shared state; ``app()`` builds the aiohttp application."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        tgi: bool = False,
        max_choices: int | None = None,
        retry_after: str = "0.3",
    ) -> None:
        self.api_key = api_key
        self.tgi = tgi  # TGI's Messages API: n > 1 is a 422
        self.max_choices = max_choices  # answer with at most this many choices
        self.retry_after = retry_after
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self.rejected: list[tuple[int, str]] = []  # (status, reason) of validation failures
        self.static: dict[str, tuple[bytes, str]] = {}
        self.files: dict[str, bytes] = {}
        self.file_gets = 0
        self.in_flight = 0
        self.max_in_flight = 0

    # ----------------------------------------------------------------- plumbing

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_post("/models/{owner}/{name}", self._text_to_image)
        return app

    def add_static(self, name: str, data: bytes, content_type: str = "image/png") -> str:
        """Serve ``data`` at ``/static/<name>``; returns the path (join it to the base URL)."""
        self.static[name] = (data, content_type)
        return f"/static/{name}"

    def received_on(self, route: str) -> list[Received]:
        return [r for r in self.received if r.route == route]

    async def _json(self, request: web.Request, error: Any) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise error(400, f"expected application/json, got {request.content_type}")
        try:
            payload = json.loads(await request.read())
        except ValueError as exc:
            raise error(400, f"could not parse the JSON body: {exc}") from None
        if not isinstance(payload, dict):
            raise error(400, "the body must be a JSON object")
        return payload

    async def _scripted(self, request: web.Request, text: str, route: str) -> web.Response | None:
        """The scripted answer for this attempt, if its text carries a marker."""
        self.attempts[text] += 1
        attempt = self.attempts[text]
        for name, arg in _MARKER.findall(text):
            count = int(float(arg)) if arg else 0
            if name == "429" and attempt <= count:
                return web.json_response({"error": {"message": "Rate limit reached"}}, status=429)
            if name == "429ra" and attempt <= count:
                return web.json_response(
                    {"error": {"message": "Rate limit reached"}},
                    status=429,
                    headers={"Retry-After": self.retry_after},
                )
            if name == "500" and attempt <= count:
                return web.json_response({"error": {"message": "internal error"}}, status=500)
            if name == "status":
                return web.json_response({"error": {"message": "scripted failure"}}, status=count)
            if name == "hang":
                await asyncio.sleep(60)
            if name == "badjson":
                return web.Response(body=b'{"choices": [{"mess', content_type="application/json")
            if name == "nochoices":
                return web.json_response({"id": "x", "object": "chat.completion", "model": "m"})
            if name == "echokey":
                got = request.headers.get("Authorization") or request.headers.get("x-api-key")
                return web.json_response(
                    {"error": {"message": f"Incorrect API key provided: {got}"}}, status=401
                )
        return None

    def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    # ----------------------------------------------------------------- images in requests

    async def _fetch_local(self, url: str) -> ImageSeen:
        """A URL image: fetched and decoded when it points at this test machine."""
        if not url.startswith("http://127.0.0.1"):
            return ImageSeen("url", None, None, url=url)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"could not download the image: HTTP {resp.status}")
            data = await resp.read()
        fmt, size = _decode_image(data)
        return ImageSeen("url", fmt, size, url=url)

    @staticmethod
    def _decode_b64(data: str, media_type: str) -> ImageSeen:
        raw = base64.b64decode(data, validate=True)
        fmt, size = _decode_image(raw)
        if _MIME.get(fmt) != media_type:
            raise ValueError(f"the image is {fmt} but was declared {media_type}")
        return ImageSeen("data", fmt, size, media_type=media_type)

    # ----------------------------------------------------------------- OpenAI chat / TGI

    def _check_auth_bearer(self, request: web.Request) -> None:
        if self.api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            raise _openai_error(401, "Incorrect API key provided", "invalid_api_key")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            return await self._chat_inner(request)
        except _Reject as rejected:
            self.rejected.append((rejected.response.status, rejected.response.text or ""))
            return rejected.response
        finally:
            self.in_flight -= 1

    async def _chat_inner(self, request: web.Request) -> web.StreamResponse:
        self._check_auth_bearer(request)
        payload = await self._json(request, _openai_error)
        unknown = set(payload) - _OPENAI_CHAT_KEYS
        if unknown:
            raise _openai_error(400, f"Unrecognized request argument supplied: {sorted(unknown)}")
        if not isinstance(payload.get("model"), str):
            raise _openai_error(400, "you must provide a model parameter")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _openai_error(400, "'messages' must be a non-empty array")
        texts: list[str] = []
        images: list[ImageSeen] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                "system",
                "user",
                "assistant",
                "developer",
            ):
                raise _openai_error(400, f"messages[{i}]: invalid role")
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            if not isinstance(content, list):
                raise _openai_error(400, f"messages[{i}].content must be a string or an array")
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "image_url":
                    images.append(await self._openai_image(part, where))
                else:
                    raise _openai_error(400, f"{where}: invalid content part {part!r:.80}")
        text = "\n".join(texts)
        scripted = await self._scripted(request, text, "chat")
        if scripted is not None:
            return scripted

        n = payload.get("n", 1)
        if not isinstance(n, int) or n < 1 or n > 128:
            raise _openai_error(400, "n must be an integer between 1 and 128")
        if self.tgi and n > 1:
            raise _Reject(
                web.json_response(
                    {
                        "error": "Input validation error: `n` must be `1`",
                        "error_type": "validation",
                    },
                    status=422,
                )
            )
        content_for = self._answer_maker(payload.get("response_format"), text, images)
        self.received.append(Received("chat", text, images, payload, {"n": str(n)}))
        count = n if self.max_choices is None else min(n, self.max_choices)
        choices = [
            {
                "index": k,
                "message": {"role": "assistant", "content": content_for(k)},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for k in range(count)
        ]
        prompt_tokens = len(text.split()) + 10 * len(images)
        completion = sum(len(str(c["message"]["content"]).split()) for c in choices)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": payload["model"],
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                },
            }
        )

    async def _openai_image(self, part: dict[str, Any], where: str) -> ImageSeen:
        image_url = part.get("image_url")
        if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
            raise _openai_error(400, f"{where}: image_url must be an object with a url")
        if set(image_url) - {"url", "detail"}:
            raise _openai_error(400, f"{where}: unknown image_url fields")
        if image_url.get("detail", "auto") not in ("auto", "low", "high"):
            raise _openai_error(400, f"{where}: invalid detail")
        url: str = image_url["url"]
        if url.startswith("data:"):
            match = _DATA_URL.match(url)
            if match is None:
                raise _openai_error(400, f"{where}: invalid image data URL")
            try:
                return self._decode_b64(match.group(2), match.group(1))
            except (binascii.Error, ValueError, OSError) as exc:
                raise _openai_error(
                    400, f"{where}: You uploaded an unsupported image: {exc}"
                ) from None
        if url.startswith(("http://", "https://")):
            try:
                seen = await self._fetch_local(url)
            except (ValueError, OSError, aiohttp.ClientError) as exc:
                raise _openai_error(400, f"{where}: {exc}") from None
            if "detail" in image_url:
                seen.media_type = f"detail={image_url['detail']}"
            return seen
        raise _openai_error(400, f"{where}: image_url.url must be an http(s) or data URL")

    @staticmethod
    def _answer_maker(response_format: Any, text: str, images: list[ImageSeen]) -> Any:
        described = ", ".join(
            f"{im.format} {im.size[0]}x{im.size[1]}" if im.size else f"url {im.url}"
            for im in images
        )
        if response_format is None:
            return lambda k: f"[{k}] {text} | images: {described or 'none'}"
        if not isinstance(response_format, dict):
            raise _openai_error(400, "response_format must be an object")
        kind = response_format.get("type")
        if kind == "json_object":
            return lambda k: json.dumps({"answer": f"[{k}] {text}"})
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if (
                not isinstance(spec, dict)
                or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(spec.get("name", "")))
                or not isinstance(spec.get("schema"), dict)
            ):
                raise _openai_error(400, "response_format.json_schema needs a name and a schema")
            schema = spec["schema"]
            return lambda k: json.dumps(example_for_schema(schema))
        raise _openai_error(400, f"invalid response_format type {kind!r}")

    # ----------------------------------------------------------------- Anthropic

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            return await self._messages_inner(request)
        except _Reject as rejected:
            self.rejected.append((rejected.response.status, rejected.response.text or ""))
            return rejected.response
        finally:
            self.in_flight -= 1

    async def _messages_inner(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            raise _anthropic_error(401, "invalid x-api-key", "authentication_error")
        if "Authorization" in request.headers:
            raise _anthropic_error(400, "unexpected Authorization header")
        if not request.headers.get("anthropic-version"):
            raise _anthropic_error(400, "anthropic-version: header is required")
        payload = await self._json(request, _anthropic_error)
        unknown = set(payload) - _ANTHROPIC_KEYS
        if unknown:
            raise _anthropic_error(400, f"{sorted(unknown)[0]}: Extra inputs are not permitted")
        if not isinstance(payload.get("model"), str):
            raise _anthropic_error(400, "model: Field required")
        if not isinstance(payload.get("max_tokens"), int):
            raise _anthropic_error(400, "max_tokens: Field required")
        system = payload.get("system")
        texts: list[str] = []
        if system is not None:
            if isinstance(system, str):
                texts.append(system)
            elif isinstance(system, list) and all(
                isinstance(b, dict) and b.get("type") == "text" for b in system
            ):
                texts.extend(b["text"] for b in system)
            else:
                raise _anthropic_error(400, "system: must be a string or text blocks")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _anthropic_error(400, "messages: at least one message is required")
        images: list[ImageSeen] = []
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise _anthropic_error(400, f"messages.{i}.role: Unexpected role {role!r}")
            if i == 0 and role != "user":
                raise _anthropic_error(400, "messages: first message must use the user role")
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            if not isinstance(content, list):
                raise _anthropic_error(400, f"messages.{i}.content: invalid")
            for j, block in enumerate(content):
                where = f"messages.{i}.content.{j}"
                kind = block.get("type") if isinstance(block, dict) else None
                if kind == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif kind == "image":
                    images.append(await self._anthropic_image(block, where))
                else:
                    raise _anthropic_error(400, f"{where}: invalid block {block!r:.80}")
        text = "\n".join(texts)
        scripted = await self._scripted(request, text, "messages")
        if scripted is not None:
            return scripted
        self.received.append(Received("messages", text, images, payload, {"system": str(system)}))
        described = ", ".join(
            f"{im.format} {im.size[0]}x{im.size[1]}" if im.size else f"url {im.url}"
            for im in images
        )
        answer = f"{text} | images: {described or 'none'}"
        content: list[dict[str, Any]] = [{"type": "text", "text": answer}]
        stop_reason = "end_turn"
        choice = payload.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool":  # a forced tool call
            tools = {t.get("name"): t for t in payload.get("tools") or [] if isinstance(t, dict)}
            tool = tools.get(choice.get("name"))
            if tool is None or not isinstance(tool.get("input_schema"), dict):
                raise _anthropic_error(400, "tool_choice: no such tool with an input_schema")
            tool_input = example_for_schema(tool["input_schema"])
            content = [{"type": "tool_use", "id": "toolu_fake", "name": tool["name"]}]
            content[0]["input"] = tool_input
            stop_reason = "tool_use"
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": payload["model"],
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": len(text.split()) + 10 * len(images),
                    "output_tokens": len(answer.split()),
                },
            }
        )

    async def _anthropic_image(self, block: dict[str, Any], where: str) -> ImageSeen:
        source = block.get("source")
        if not isinstance(source, dict):
            raise _anthropic_error(400, f"{where}.source: Field required")
        kind = source.get("type")
        if kind == "base64":
            media_type = source.get("media_type")
            if media_type not in _ANTHROPIC_MEDIA:
                raise _anthropic_error(400, f"{where}.source.media_type: invalid {media_type!r}")
            try:
                return self._decode_b64(str(source.get("data")), str(media_type))
            except (binascii.Error, ValueError, OSError) as exc:
                raise _anthropic_error(400, f"{where}.source: invalid image: {exc}") from None
        if kind == "url" and isinstance(source.get("url"), str):
            try:
                return await self._fetch_local(source["url"])
            except (ValueError, OSError, aiohttp.ClientError) as exc:
                raise _anthropic_error(400, f"{where}.source: {exc}") from None
        raise _anthropic_error(400, f"{where}.source.type: invalid {kind!r}")

    # ----------------------------------------------------------------- OpenAI images

    async def _images(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            return await self._images_inner(request)
        except _Reject as rejected:
            self.rejected.append((rejected.response.status, rejected.response.text or ""))
            return rejected.response
        finally:
            self.in_flight -= 1

    async def _images_inner(self, request: web.Request) -> web.StreamResponse:
        self._check_auth_bearer(request)
        payload = await self._json(request, _openai_error)
        unknown = set(payload) - _IMAGES_KEYS
        if unknown:
            raise _openai_error(400, f"Unknown parameter: {sorted(unknown)[0]}")
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _openai_error(400, "prompt: a non-empty string is required")
        model = str(payload.get("model", "dall-e-2"))
        n = payload.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise _openai_error(400, "n must be between 1 and 10")
        if model == "dall-e-3" and n != 1:
            raise _openai_error(400, "You must provide n=1 for this model.")
        response_format = payload.get("response_format", "url")
        if model.startswith("gpt-image") and "response_format" in payload:
            raise _openai_error(400, "Unknown parameter: 'response_format'.")
        if response_format not in ("url", "b64_json"):
            raise _openai_error(400, "response_format must be url or b64_json")
        match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", str(payload.get("size", "32x32")))
        if match is None:
            raise _openai_error(400, "invalid size")
        width, height = int(match.group(1)), int(match.group(2))
        scripted = await self._scripted(request, prompt, "images")
        if scripted is not None:
            return scripted
        self.received.append(Received("images", prompt, [], payload))
        data = []
        for k in range(n):
            image = png(width, height, f"{prompt}#{self.attempts[prompt]}#{k}")
            if response_format == "b64_json" or model.startswith("gpt-image"):
                encoded = base64.b64encode(image).decode()
                data.append({"b64_json": encoded, "revised_prompt": prompt})
            else:
                name = hashlib.sha256(image).hexdigest()[:16] + ".png"
                self.files[name] = image
                data.append({"url": f"{request.url.origin()}/files/{name}"})
        answer: dict[str, Any] = {"created": 0, "data": data}
        if model.startswith("gpt-image"):  # token usage, as OpenAI reports it for these models
            words = len(prompt.split())
            answer["usage"] = {
                "input_tokens": words,
                "output_tokens": 272 * n + 1,  # not a multiple of n: the split must add up
                "total_tokens": words + 272 * n + 1,
                "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
            }
        return web.json_response(answer)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self.file_gets += 1
        if "Authorization" in request.headers:  # the key must never go to the image host
            return web.json_response({"error": "unexpected credentials"}, status=400)
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        found = self.static.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    # ----------------------------------------------------------------- HF text-to-image

    async def _text_to_image(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            return await self._text_to_image_inner(request)
        except _Reject as rejected:
            self.rejected.append((rejected.response.status, rejected.response.text or ""))
            return rejected.response
        finally:
            self.in_flight -= 1

    async def _text_to_image_inner(self, request: web.Request) -> web.StreamResponse:
        self._check_auth_bearer(request)
        payload = await self._json(request, _openai_error)
        if set(payload) - {"inputs", "parameters", "options"}:
            raise _openai_error(400, "unknown fields")
        prompt = payload.get("inputs")
        if not isinstance(prompt, str) or not prompt:
            raise _openai_error(400, "inputs: a non-empty string is required")
        parameters = payload.get("parameters", {})
        if not isinstance(parameters, dict) or set(parameters) - _T2I_PARAMETERS:
            raise _openai_error(400, f"invalid parameters {parameters!r}")
        width = int(parameters.get("width", 64))
        height = int(parameters.get("height", 64))
        if not (8 <= width <= 2048 and 8 <= height <= 2048):
            raise _openai_error(400, "width/height out of range")
        scripted = await self._scripted(request, prompt, "text-to-image")
        if scripted is not None:
            return scripted
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        self.received.append(
            Received(
                "text-to-image",
                prompt,
                [],
                payload,
                {"model": model, "x-use-cache": request.headers.get("x-use-cache", "")},
            )
        )
        seed = parameters.get("seed")
        salt = f"seed={seed}" if seed is not None else f"attempt={len(self.received)}"
        image = png(width, height, f"{prompt}#{salt}")
        if "[[json]]" in prompt:
            return web.json_response({"image": base64.b64encode(image).decode()})
        return web.Response(body=image, content_type="image/png")


# --------------------------------------------------------------------- test helpers

FAST: dict[str, Any] = {
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "timeout": 60.0,
    "max_retries": 3,
}
"""Engine settings that make retries cost milliseconds. The timeout is a safety net only (tests
of timeouts use `HangingTransport` and virtual time): long, so that a loaded machine never
turns a slow local answer into a retry the test did not expect."""

REAL_TIMEOUT = 60.0
"""The wall-clock timeout `HangingTransport` gives the attempts it sends to the real server."""


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def loaded(step: Any) -> Iterator[Any]:
    """``step.load()`` ... ``step.unload()`` (stops the model's loop and closes its engine)."""
    step.load()
    try:
        yield step
    finally:
        step.unload()


class HangingTransport:
    """The default (aiohttp) transport, except that an attempt whose body holds ``[[hang]]``
    (or whose URL ends with one of ``hang_urls``, e.g. an image download) waits out its whole
    timeout on ``clock`` - virtual time - and times out, as a server that never answers would
    make it: timeout handling is tested without waiting on the wall clock. ``hung`` counts
    those attempts. Every other attempt goes to the real server with a generous wall-clock
    timeout instead of the test's short one, so that a busy machine cannot turn a slow answer
    into a timeout the test did not script."""

    def __init__(self, clock: ManualClock, hang_urls: tuple[str, ...] = ()) -> None:
        self.clock = clock
        self.inner = AiohttpTransport()
        self.hang_urls = hang_urls
        self.hung = 0

    def hangs(self, request: HttpRequest) -> bool:
        if request.body is not None and b"[[hang]]" in request.body:
            return True
        return bool(self.hang_urls) and request.url.endswith(self.hang_urls)

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self.hangs(request):
            self.hung += 1
            await self.clock.sleep(request.timeout)
            raise TransportError(ErrorKind.TIMEOUT, "timeout")
        return await self.inner.send(dataclasses.replace(request, timeout=REAL_TIMEOUT))

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextmanager
def loaded_with_hangs(
    step: Any, hang_urls: tuple[str, ...] = ()
) -> Iterator[tuple[Any, HangingTransport]]:
    """`loaded`, with the step's model sending through a `HangingTransport` on a virtual
    clock."""
    clock = ManualClock()
    transport = HangingTransport(clock, hang_urls)
    with loaded(step):
        step.model.load_with(transport=transport, clock=clock)
        yield step, transport
