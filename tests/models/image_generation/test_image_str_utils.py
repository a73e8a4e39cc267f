from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from pixtill.images import ImageDecodeError
from pixtill.models.image_generation.utils import image_from_str, image_to_str


def gradient(size: tuple[int, int] = (32, 24), mode: str = "RGB") -> Image.Image:
    width, height = size
    pixels = bytes(
        channel
        for y in range(height)
        for x in range(width)
        for channel in ((x * 8) % 256, (y * 10) % 256, 90, 255 if (x + y) % 3 else 0)
    )
    return Image.frombytes("RGBA", size, pixels).convert(mode)


def decoded_bytes(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_png_round_trip_is_lossless() -> None:
    image = gradient(mode="RGBA")
    text = image_to_str(image)
    assert not text.startswith("data:")
    assert decoded_bytes(text).startswith(b"\x89PNG\r\n\x1a\n")
    back = image_from_str(text)
    assert (back.format, back.mode, back.size) == ("PNG", "RGBA", image.size)
    assert back.tobytes() == image.tobytes()


def test_jpeg_requested() -> None:
    text = image_to_str(gradient(mode="RGBA"), "JPEG")
    assert decoded_bytes(text)[:3] == b"\xff\xd8\xff"
    back = image_from_str(text)
    assert (back.format, back.mode, back.size) == ("JPEG", "RGB", (32, 24))
    assert decoded_bytes(image_to_str(gradient().convert("P"), "jpg"))[:3] == b"\xff\xd8\xff"


def test_webp_requested() -> None:
    data = decoded_bytes(image_to_str(gradient(), "webp"))
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    assert image_from_str(base64.b64encode(data).decode()).format == "WEBP"


def test_format_defaults_to_the_image_s_own_then_png() -> None:
    buffer = io.BytesIO()
    gradient().save(buffer, format="JPEG")
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert opened.format == "JPEG"
    assert decoded_bytes(image_to_str(opened))[:3] == b"\xff\xd8\xff"
    assert gradient().format is None
    assert decoded_bytes(image_to_str(gradient())).startswith(b"\x89PNG")


def test_image_from_str_accepts_a_data_url_and_sniffs_the_format() -> None:
    text = image_to_str(gradient(), "PNG")
    back = image_from_str(f"data:image/jpeg;base64,{text}")  # the declared type is wrong
    assert back.format == "PNG"
    assert back.tobytes() == gradient().tobytes()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert image_from_str(wrapped).tobytes() == gradient().tobytes()


def test_image_from_str_rejects_garbage() -> None:
    with pytest.raises(ImageDecodeError):
        image_from_str("definitely not base64!")
    with pytest.raises(ImageDecodeError):
        image_from_str(base64.b64encode(b"text, not an image").decode())
