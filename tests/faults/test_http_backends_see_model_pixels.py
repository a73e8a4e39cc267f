"""HTTP backends (OpenAI-compatible, Anthropic) send the pixels a local model receives
(`ImageRef.to_model_image`): upright by EXIF, CMYK / palette / 16-bit converted, transparency
flattened onto white. Checked on what a fake server on 127.0.0.1 receives, through the tasks
(which build `ImageURL` data URLs) and through raw `ImageRef` parts; images that need nothing
go out byte for byte, http URLs untouched."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from http_servers import serve
from models.fake_providers import FAST, FakeProviders, loaded
from pixtill.image_url import ImageURL
from pixtill.images import ImageRef
from pixtill.models.llms import AnthropicLLM, OpenAILLM
from pixtill.steps.tasks import ChatGeneration, TextGenerationWithImage

KEY = "sk-test-pixels"


def encoded(image: Image.Image, format: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def halves(mode: str = "RGB") -> Image.Image:
    """40x20: red left half, blue right half (asymmetric, so a rotation shows)."""
    image = Image.new("RGB", (40, 20), (230, 20, 20))
    image.paste((20, 20, 230), (20, 0, 40, 20))
    return image.convert(mode)


def oriented_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(halves(), "JPEG", quality=95, exif=exif)


def cmyk_jpeg() -> bytes:
    return encoded(halves("CMYK"), "JPEG", quality=95)


def rgba_png() -> bytes:
    image = Image.new("RGBA", (16, 8), (0, 0, 0, 0))  # black hidden under alpha 0
    image.paste((20, 200, 20, 255), (0, 0, 8, 8))
    return encoded(image, "PNG")


def palette_png() -> bytes:
    image = Image.new("P", (16, 8), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(1, (0, 0, 8, 8))
    return encoded(image, "PNG", transparency=0)  # index 0 (black) is transparent


def palette_gif() -> bytes:
    image = Image.new("P", (16, 8), 0)
    image.putpalette([0, 0, 0, 30, 30, 200] + [0] * 762)
    image.paste(1, (8, 0, 16, 8))
    return encoded(image, "GIF", transparency=0)


def opaque_gif() -> bytes:
    image = Image.new("P", (16, 8), 0)
    image.putpalette([250, 250, 0, 30, 30, 200] + [0] * 762)
    image.paste(1, (8, 0, 16, 8))
    return encoded(image, "GIF")


def gray16_png() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (4, 1))
    return encoded(Image.fromarray(ramp), "PNG")


KINDS: dict[str, Callable[[], bytes]] = {
    "orientation 6": oriented_jpeg,
    "CMYK JPEG": cmyk_jpeg,
    "RGBA transparent PNG": rgba_png,
    "palette PNG with transparency": palette_png,
    "GIF with transparency": palette_gif,
    "opaque GIF": opaque_gif,
    "16-bit grayscale PNG": gray16_png,
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decoded(data_url: str) -> Image.Image:
    data = base64.b64decode(data_url.partition(",")[2])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_same_pixels(sent: Image.Image, expected: Image.Image, lossy: bool) -> None:
    """``sent`` decoded naively (as a server does: no EXIF, convert to RGB) equals ``expected``
    (exactly when lossless; within JPEG error otherwise)."""
    assert sent.size == expected.size
    naive = np.asarray(sent.convert("RGB"), dtype=np.int16)
    want = np.asarray(expected, dtype=np.int16)
    if lossy:
        assert np.abs(naive - want).mean() < 3.0
    else:
        assert np.array_equal(naive, want)


@pytest.fixture
def fake() -> FakeProviders:
    return FakeProviders(api_key=KEY)


@pytest.fixture
def url(fake: FakeProviders) -> Iterator[str]:
    with serve(fake.app()) as base:
        yield base


def openai_task(base: str) -> TextGenerationWithImage:
    llm = OpenAILLM(model="gpt-4o-mini", base_url=f"{base}/v1", api_key=KEY, **FAST)
    return TextGenerationWithImage(name="vision", llm=llm)


def anthropic_task(base: str) -> TextGenerationWithImage:
    llm = AnthropicLLM(model="claude-test", base_url=base, api_key=KEY, **FAST)
    return TextGenerationWithImage(name="claude", llm=llm)


def sent_openai(fake: FakeProviders) -> list[str]:
    (received,) = fake.received_on("chat")
    parts = received.payload["messages"][-1]["content"]
    return [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]


def sent_anthropic(fake: FakeProviders) -> list[str]:
    (received,) = fake.received_on("messages")
    blocks = received.payload["messages"][-1]["content"]
    return [
        f"data:{b['source']['media_type']};base64,{b['source']['data']}"
        for b in blocks
        if b.get("type") == "image"
    ]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_what_the_server_receives_is_what_a_local_model_sees(
    fake: FakeProviders, url: str, kind: str, provider: str
) -> None:
    data = KINDS[kind]()
    expected = ImageRef.from_value(data).to_model_image()
    task = openai_task(url) if provider == "openai" else anthropic_task(url)
    with loaded(task):
        rows = next(task.process([{"instruction": "Describe it.", "image": b64(data)}]))
    assert rows[0]["generation"] is not None
    (sent,) = sent_openai(fake) if provider == "openai" else sent_anthropic(fake)
    lossy = sent.startswith("data:image/jpeg")
    # Lossless sources stay lossless; a JPEG stays a JPEG.
    assert lossy == data.startswith(b"\xff\xd8")
    assert_same_pixels(decoded(sent), expected, lossy)


@pytest.mark.parametrize("kind", list(KINDS))
def test_raw_image_parts_are_prepared_too(fake: FakeProviders, url: str, kind: str) -> None:
    """A chat whose parts hold an `ImageRef` or a plain data URL string (a user's own
    messages), not the task's `ImageURL`."""
    data = KINDS[kind]()
    expected = ImageRef.from_value(data).to_model_image()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare."},
                {"type": "image_url", "image_url": {"url": f"data:image/x;base64,{b64(data)}"}},
            ],
        }
    ]
    task = ChatGeneration(
        name="chat",
        llm=OpenAILLM(model="gpt-4o-mini", base_url=f"{url}/v1", api_key=KEY, **FAST),
    )
    with loaded(task):
        next(task.process([{"messages": messages}]))
    (sent,) = sent_openai(fake)
    assert_same_pixels(decoded(sent), expected, sent.startswith("data:image/jpeg"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_image_url_data_urls_hold_the_prepared_pixels(kind: str) -> None:
    data = KINDS[kind]()
    ref = ImageRef.from_value(data)
    # An opaque palette converts exactly: it goes out as it is (zero copy).
    assert ref.needs_preparation() is (kind != "opaque GIF")
    url = ImageURL.of(ref)
    assert_same_pixels(decoded(url), ref.to_model_image(), url.startswith("data:image/jpeg"))


def test_a_pil_image_needing_preparation_is_prepared() -> None:
    rgba = Image.open(io.BytesIO(rgba_png()))
    ref = ImageRef.from_value(rgba)
    url = ImageURL.of(ref)
    assert url.startswith("data:image/png")
    assert decoded(url).mode == "RGB"
    assert_same_pixels(decoded(url), ref.to_model_image(), lossy=False)


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_images_that_need_nothing_go_out_byte_for_byte(
    fake: FakeProviders, url: str, format: str
) -> None:
    data = encoded(halves(), format, quality=95) if format == "JPEG" else encoded(halves(), "PNG")
    assert not ImageRef.from_value(data).needs_preparation()
    gray = encoded(halves("L"), format)
    assert not ImageRef.from_value(gray).needs_preparation()
    assert ImageURL.of(ImageRef.from_value(opaque_gif())).partition(",")[2] == b64(opaque_gif())
    with loaded(openai_task(url)) as task:
        next(task.process([{"instruction": "Describe it.", "image": b64(data)}]))
    (sent,) = sent_openai(fake)
    assert sent.partition(",")[2] == b64(data)


def test_http_urls_are_passed_through_untouched(fake: FakeProviders, url: str) -> None:
    path = fake.add_static("sideways.jpg", oriented_jpeg(), "image/jpeg")
    with loaded(openai_task(url)) as task:
        next(task.process([{"instruction": "Describe it.", "image": f"{url}{path}"}]))
    assert sent_openai(fake) == [f"{url}{path}"]
