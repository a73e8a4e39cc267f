"""One image preparation for every backend: what a local model receives (PIL) and what an HTTP
backend sends (bytes) show the same pixels: EXIF orientation applied, 16-bit and unusual modes
converted faithfully, malformed EXIF ignored, resize; per-part options kept."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from doubles import DescribingLLM
from http_servers import serve
from pixtill.images import (
    ImageFetchError,
    ImageRef,
    ResizePolicy,
    encode_image,
    fetch_url_sync,
)
from pixtill.models.llms._wire import anthropic_messages, openai_messages
from pixtill.models.llms.transformers import _prepare
from pixtill.steps.tasks import ChatGeneration


def encoded(image: Image.Image, format: str = "PNG", **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def sideways_jpeg(orientation: int = 6, exif_bytes: bytes | None = None) -> bytes:
    """40x20 pixels, red left half and blue right half, stored with an EXIF orientation."""
    image = Image.new("RGB", (40, 20), (230, 20, 20))
    image.paste((20, 20, 230), (20, 0, 40, 20))
    if exif_bytes is not None:
        return encoded(image, "JPEG", quality=95, exif=exif_bytes)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", quality=95, exif=exif)


def decoded_data_url(url: str) -> Image.Image:
    """The image a server decodes from a data URL (Pillow's warnings about bad EXIF ignored)."""
    data = base64.b64decode(url.partition(",")[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = Image.open(io.BytesIO(data))
        image.load()
    return image


def http_image(ref: ImageRef, resize: ResizePolicy | None) -> Image.Image:
    """The image as an OpenAI-compatible backend sends it."""
    chat = [{"role": "user", "content": [{"type": "image", "image": ref}]}]
    messages = asyncio.run(openai_messages(chat, resize))
    return decoded_data_url(messages[0]["content"][0]["image_url"]["url"])


def local_image(ref: ImageRef) -> Image.Image:
    """The image as TransformersLLM hands it to its processor."""
    chat = [{"role": "user", "content": [{"type": "image", "image": ref}]}]
    (image,) = _prepare(chat).images
    assert isinstance(image, Image.Image)
    return image


# -- orientation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size"), [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))]
)
def test_exif_orientation_is_applied_for_every_backend(
    orientation: int, size: tuple[int, int]
) -> None:
    ref = ImageRef.from_value(sideways_jpeg(orientation))
    local = local_image(ref)
    sent = http_image(ref, ResizePolicy(max_side=39)).convert("RGB")  # resized: re-encoded
    assert local.size == size
    assert sent.size == ResizePolicy(max_side=39).target_size(*size)
    # The same pixels: the red half is on the same side in both.
    small = local.resize(sent.size)
    diff = np.abs(np.asarray(small, dtype=int) - np.asarray(sent, dtype=int)).mean()
    assert diff < 30


@pytest.mark.parametrize(
    "broken",
    [
        b"Exif\x00\x00this is not a TIFF header at all",  # "SyntaxError: not a TIFF file"
        b"Exif\x00\x00II",  # cut in the header
        b"Exif\x00\x00II*\x00\xff\xff\xff\x00",  # the first directory out of bounds
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01",  # cut entry
    ],
)
def test_malformed_exif_is_ignored_with_and_without_resize(broken: bytes) -> None:
    data = sideways_jpeg(exif_bytes=broken)
    ref = ImageRef.from_value(data)
    ref.validate()
    assert local_image(ref).size == (40, 20)
    assert http_image(ref, None).size == (40, 20)
    assert http_image(ref, ResizePolicy(max_side=10)).size == (10, 5)  # was "not a TIFF file"
    assert ImageRef.from_value(data).to_bytes(format="PNG")[:4] == b"\x89PNG"


# -- modes ---------------------------------------------------------------------------------------


def ramp16() -> Image.Image:
    values = np.tile(np.arange(0, 65536, 1024, dtype=np.uint16), (4, 1))  # 64 wide, 0..64512
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    return image


def assert_ramp(image: Image.Image) -> None:
    """Black to white left to right, on an 8-bit scale (16-bit images are read as 16-bit)."""
    if image.mode.startswith("I"):
        row = np.asarray(image, dtype=int)[1] // 257
        assert row.max() > 200, "16-bit stays 16-bit when sent as PNG"
    else:
        row = np.asarray(image.convert("L"), dtype=int)[1]
    assert row[0] < 8 and row[-1] > 240, row  # black to white, not all white
    assert np.all(np.diff(row) >= -2)  # increasing (resampling may wobble a little)


@pytest.mark.parametrize("format", ["PNG", "TIFF"])
def test_a_16_bit_ramp_stays_a_ramp_for_every_backend(format: str) -> None:
    ref = ImageRef.from_value(encoded(ramp16(), format))
    assert_ramp(local_image(ref))
    assert_ramp(http_image(ref, ResizePolicy(max_side=32)))
    assert_ramp(Image.open(io.BytesIO(ref.to_bytes(format="JPEG"))))
    assert_ramp(Image.open(io.BytesIO(encode_image(ramp16(), "WEBP"))))


def test_32_bit_and_float_grayscale_are_scaled_not_clipped() -> None:
    ints = Image.fromarray(np.tile(np.arange(0, 65536, 1024, dtype=np.int32), (4, 1)))
    floats = Image.fromarray(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (4, 1)))
    for image in (ints, floats):
        assert_ramp(ImageRef.from_value(image).to_model_image())
        assert_ramp(Image.open(io.BytesIO(encode_image(image, "JPEG"))))


def transparent(mode: str) -> Image.Image:
    """Left half opaque dark, right half fully transparent (hiding black)."""
    rgba = Image.new("RGBA", (8, 4), (0, 0, 0, 0))
    rgba.paste((30, 30, 30, 255), (0, 0, 4, 4))
    if mode == "P":
        image = Image.new("P", (8, 4), 1)
        image.putpalette([30, 30, 30, 0, 0, 0])
        image.paste(0, (0, 0, 4, 4))
        image.info["transparency"] = 1  # palette index 1 (black) is transparent
        return image
    return rgba.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "PA"])
def test_transparency_is_flattened_onto_white_for_every_backend(mode: str) -> None:
    image = transparent(mode)
    for prepared in (
        ImageRef.from_value(image).to_model_image(),
        local_image(ImageRef.from_value(encoded(image.convert("RGBA")))),
        Image.open(io.BytesIO(encode_image(image, "JPEG"))).convert("RGB"),
    ):
        pixels = np.asarray(prepared.convert("RGB"), dtype=int)
        assert pixels[:, :4].mean() < 60  # the opaque half
        assert pixels[:, 4:].mean() > 230  # white, not the black under alpha 0


@pytest.mark.parametrize("mode", ["CMYK", "1", "L", "P", "YCbCr", "LAB", "HSV", "I;16B"])
def test_every_mode_becomes_rgb_for_local_models(mode: str) -> None:
    source = Image.new("RGB", (6, 4), (200, 120, 40))
    image = ramp16().convert("I;16B") if mode == "I;16B" else source.convert(mode)
    prepared = ImageRef.from_value(image).to_model_image(ResizePolicy(max_side=3))
    assert prepared.mode == "RGB" and max(prepared.size) == 3


# -- per-part options ----------------------------------------------------------------------------


def test_openai_per_part_detail_is_kept() -> None:
    png = encoded(Image.new("RGB", (64, 64), (9, 9, 9)))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                {"type": "image", "image": ImageRef.from_value(png), "detail": "high"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        }
    ]
    for resize in (None, ResizePolicy(max_side=16)):
        parts = asyncio.run(openai_messages(chat, resize, "auto"))[0]["content"]
        assert [p["image_url"]["detail"] for p in parts] == ["low", "high", "auto"]
        assert parts[2]["image_url"]["url"] == "https://x.test/a.png"
        if resize is not None:  # the same resize applies to an image_url part's data URL
            assert decoded_data_url(parts[0]["image_url"]["url"]).size == (16, 16)


def test_chat_generation_keeps_detail_through_formatting() -> None:
    png = encoded(Image.new("RGB", (8, 8), (9, 9, 9)))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    task = ChatGeneration(name="chat", llm=DescribingLLM())
    part = {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    chat = task.format_input({"messages": [{"role": "user", "content": [part]}]})
    parts = asyncio.run(openai_messages(chat))[0]["content"]
    assert parts[0]["image_url"]["detail"] == "low"


def test_anthropic_cache_control_is_kept() -> None:
    png = encoded(Image.new("RGB", (8, 8), (9, 9, 9)))
    part = {
        "type": "image",
        "image": ImageRef.from_value(png),
        "cache_control": {"type": "ephemeral"},
    }
    _, messages = asyncio.run(anthropic_messages([{"role": "user", "content": [part]}]))
    assert messages[0]["content"][0]["cache_control"] == {"type": "ephemeral"}


# -- the blocking fetch --------------------------------------------------------------------------


@pytest.fixture
def image_server() -> Iterator[str]:
    png = encoded(Image.new("RGB", (8, 8), (1, 2, 3)))

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "hang.png":
            await asyncio.sleep(10)
        if name == "big.png":
            return web.Response(body=b"\0" * 200_000, content_type="image/png")
        if name == "ok.png":
            return web.Response(body=png, content_type="image/png")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{name}", handler)
    with serve(app) as base:
        yield base


def test_blocking_fetch_starts_no_thread_and_works_inside_a_loop(
    image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_threads(self: threading.Thread) -> None:
        raise AssertionError("fetch_url_sync started a thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    assert fetch_url_sync(f"{image_server}/ok.png")[:4] == b"\x89PNG"

    async def inside() -> bytes:
        return fetch_url_sync(f"{image_server}/ok.png")

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(inside())[:4] == b"\x89PNG"
    finally:
        loop.close()
    assert ImageRef.from_value(f"{image_server}/ok.png").to_pil().size == (8, 8)


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.png", "HTTP 404"), ("hang.png", "timed out"), ("big.png", "over the limit")],
)
def test_blocking_fetch_failures(image_server: str, name: str, message: str) -> None:
    with pytest.raises(ImageFetchError, match=message):
        fetch_url_sync(f"{image_server}/{name}", timeout=0.3, max_bytes=100_000)


def vllm_image(ref: ImageRef) -> Image.Image:
    """The image as the offline vLLM engine decodes it (a plain ``convert("RGB")``)."""
    from pixtill.models.llms.vllm import vllm_messages

    chat = [{"role": "user", "content": [{"type": "image", "image": ref}]}]
    messages, _ = vllm_messages(chat)
    return decoded_data_url(messages[0]["content"][0]["image_url"]["url"]).convert("RGB")


def test_the_offline_vllm_engine_sees_what_transformers_sees() -> None:
    upright = vllm_image(ImageRef.from_value(sideways_jpeg(6)))
    assert upright.size == local_image(ImageRef.from_value(sideways_jpeg(6))).size == (20, 40)
    assert_ramp(vllm_image(ImageRef.from_value(encoded(ramp16()))))
    pixels = np.asarray(vllm_image(ImageRef.from_value(transparent("RGBA"))), dtype=int)
    assert pixels[:, 4:].mean() > 230
    plain = encoded(Image.new("RGB", (8, 8), (5, 6, 7)), "JPEG")
    url = "data:image/jpeg;base64," + base64.b64encode(plain).decode()
    from pixtill.models.llms.vllm import vllm_messages

    part = {"type": "image", "image": ImageRef.from_value(plain)}
    messages, _ = vllm_messages([{"role": "user", "content": [part]}])
    assert messages[0]["content"][0]["image_url"]["url"] == url  # nothing to prepare: as is
