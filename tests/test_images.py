from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from pixtill.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ImageError,
    ImageFetchError,
    ImageNotFoundError,
    ImageRef,
    ImageTooLargeError,
    ImageTypeMismatchError,
    ResizePolicy,
    coerce_image,
    encode_image,
    fetch_url,
    fetch_url_sync,
    is_image_value,
)

# -- helpers -----------------------------------------------------------------------------------


def make_image(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    width, height = size
    pixels = bytes(
        channel
        for y in range(height)
        for x in range(width)
        for channel in ((x * 7) % 256, (y * 11) % 256, ((x + y) * 5) % 256, 255 if x % 2 else 128)
    )
    return Image.frombytes("RGBA", size, pixels).convert(mode)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def png() -> bytes:
    return encoded(make_image(), "PNG")


class LocalServer:
    """An aiohttp server on 127.0.0.1 in its own thread and loop, so that blocking calls made
    from a test's event loop can still reach it."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.release = threading.Event()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits.append(name)
        if name == "slow":
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            return web.Response(body=b"late")
        if name == "stream":  # chunked: no Content-Length to check up front
            response = web.StreamResponse()
            await response.prepare(request)
            try:
                for _ in range(16):
                    await response.write(b"x" * 32 * 1024)
                await response.write_eof()
            except ConnectionError:
                pass
            return response
        if name not in self.routes:
            raise web.HTTPNotFound()
        return web.Response(body=self.routes[name], content_type="application/octet-stream")

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.02)
        await runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"

    def stop(self) -> None:
        self.release.set()
        self._stop.set()
        self._thread.join(10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    local.start()
    try:
        yield local
    finally:
        local.stop()


# -- errors ------------------------------------------------------------------------------------


def test_error_location_formatting_and_at() -> None:
    err = ImageNotFoundError("no such file: 'x.png'")
    assert str(err) == "no such file: 'x.png'"
    assert str(err.at(row=3, column="image")) == "row 3, column 'image': no such file: 'x.png'"
    assert str(err.at(row=3, column=None)) == "row 3: no such file: 'x.png'"
    assert str(err.at(row=None, column="image")) == "column 'image': no such file: 'x.png'"
    located = err.at(row=3, column="image")
    assert type(located) is ImageNotFoundError
    assert (located.message, located.row, located.column) == (err.message, 3, "image")
    assert isinstance(located, ValueError)
    again = pickle.loads(pickle.dumps(located))
    assert type(again) is ImageNotFoundError
    assert str(again) == str(located)


def test_coerce_image_locates_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError) as info:
        coerce_image(str(tmp_path / "missing.png"), row=2, column="image")
    assert str(info.value).startswith("row 2, column 'image': no such file")
    assert (info.value.row, info.value.column) == (2, "image")
    with pytest.raises(ImageTypeMismatchError, match=r"^row 2, column 'image': declared"):
        coerce_image("https://example.com/a.png", "base64", row=2, column="image")
    with pytest.raises(ImageDecodeError, match=r"^column 'pic': "):
        coerce_image("not an image at all", column="pic")


def test_coerce_image_returns_refs_as_is(png: bytes) -> None:
    ref = ImageRef.from_value(png)
    assert coerce_image(ref, "url", row=1, column="image") is ref
    assert ImageRef.from_value(ref) is ref
    stricter = ImageRef.from_value(ref, max_pixels=10)
    assert stricter is not ref
    assert stricter.max_pixels == 10
    assert ref.max_pixels == DEFAULT_MAX_PIXELS
    assert stricter == ref


# -- resize policy -----------------------------------------------------------------------------


def test_resize_policy_max_side() -> None:
    assert ResizePolicy(max_side=100).target_size(400, 200) == (100, 50)
    assert ResizePolicy(max_side=100).target_size(200, 400) == (50, 100)
    assert ResizePolicy(max_side=333).target_size(1000, 1000) == (333, 333)


def test_resize_policy_max_pixels() -> None:
    width, height = ResizePolicy(max_pixels=10_000).target_size(400, 200)
    assert width * height <= 10_000
    assert width * height > 9_000
    assert abs(width / height - 2) < 0.05


def test_resize_policy_both_limits_take_the_stricter() -> None:
    assert ResizePolicy(max_side=100, max_pixels=1_000_000).target_size(400, 200) == (100, 50)
    width, height = ResizePolicy(max_side=300, max_pixels=5_000).target_size(400, 200)
    assert width * height <= 5_000
    assert max(width, height) <= 300
    assert abs(width / height - 2) < 0.1


def test_resize_policy_never_upscales() -> None:
    assert ResizePolicy(max_side=1000).target_size(40, 30) == (40, 30)
    assert ResizePolicy(max_pixels=10**9).target_size(40, 30) == (40, 30)
    assert ResizePolicy().target_size(40, 30) == (40, 30)
    assert ResizePolicy(max_side=40, max_pixels=1200).target_size(40, 30) == (40, 30)


def test_resize_policy_extreme_aspect_keeps_one_pixel() -> None:
    assert ResizePolicy(max_side=100).target_size(10_000, 1) == (100, 1)
    width, height = ResizePolicy(max_pixels=100).target_size(10_000, 1)
    assert (width, height) == (100, 1)


def test_resize_policy_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_side"):
        ResizePolicy(max_side=0)
    with pytest.raises(ValueError, match="max_pixels"):
        ResizePolicy(max_pixels=-5)


# -- every accepted form -----------------------------------------------------------------------


def test_all_forms_share_one_content_hash(tmp_path: Path, png: bytes) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    wrapped = "\n".join(b64[i : i + 60] for i in range(0, len(b64), 60)) + "\n"
    forms: list[tuple[object, str]] = [
        (b64, "bytes"),
        (wrapped, "bytes"),
        (f"data:image/png;base64,{b64}", "bytes"),
        (str(path), "path"),
        (path, "path"),
        (path.as_uri(), "path"),
        (png, "bytes"),
        (bytearray(png), "bytes"),
        (memoryview(png), "bytes"),
        ({"bytes": png, "path": None}, "bytes"),
        ({"bytes": None, "path": str(path)}, "path"),
        ({"bytes": png, "path": "/nowhere/else.png"}, "bytes"),  # bytes win
    ]
    for value, kind in forms:
        ref = ImageRef.from_value(value)
        assert ref.kind == kind, value if not isinstance(value, (bytes, bytearray)) else kind
        assert ref.content_hash() == sha256(png)
        assert ref.reference() == f"sha256:{sha256(png)}"
        assert ref.get_bytes() == png
        assert ref.format == "PNG"
        assert ref.size == (64, 48)
    assert ImageRef.from_value(path).path == path.absolute()


def test_url_form_is_lazy_and_hashes_like_the_bytes(server: LocalServer, png: bytes) -> None:
    server.routes["cat.png"] = png
    ref = ImageRef.from_value(server.url("cat.png"))
    assert ref.kind == "url"
    assert ref.url == server.url("cat.png")
    assert ref.reference() == server.url("cat.png")
    assert server.hits == []  # nothing fetched at construction
    assert ref.get_bytes() == png
    assert ref.content_hash() == sha256(png)
    assert ref.format == "PNG"
    assert ref.to_data_url() == "data:image/png;base64," + base64.b64encode(png).decode()
    assert server.hits == ["cat.png"]  # fetched once, then cached


def test_url_form_async(server: LocalServer, png: bytes) -> None:
    server.routes["cat.png"] = png

    async def main() -> tuple[bytes, str, str]:
        async with aiohttp.ClientSession() as session:
            first = ImageRef.from_value(server.url("cat.png"), "url")
            data = await first.aget_bytes(session)
            second = ImageRef.from_value(server.url("cat.png"), "url")
            url = await second.ato_data_url(ResizePolicy(max_side=16), "JPEG", session=session)
            plain = await ImageRef.from_value(server.url("cat.png")).ato_data_url()
            return data, url, plain

    data, url, plain = asyncio.run(main())
    assert data == png
    assert url.startswith("data:image/jpeg;base64,")
    small = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (small.format, small.size) == ("JPEG", (16, 12))
    assert plain == "data:image/png;base64," + base64.b64encode(png).decode()


def test_get_bytes_of_a_url_inside_a_running_loop(server: LocalServer, png: bytes) -> None:
    server.routes["cat.png"] = png

    async def main() -> bytes:
        return ImageRef.from_value(server.url("cat.png")).get_bytes()

    assert asyncio.run(main()) == png
    assert fetch_url_sync(server.url("cat.png")) == png


def test_pil_form_hashes_its_png_encoding() -> None:
    image = make_image((20, 10), "RGBA")
    ref = ImageRef.from_value(image, "PIL")
    assert ref.kind == "pil"
    assert ref.format == "PNG"
    assert ref.mime_type == "image/png"
    assert ref.size == (20, 10)
    assert ref.to_pil() is image
    data = ref.get_bytes()
    assert data.startswith(b"\x89PNG")
    assert ref.content_hash() == sha256(data)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.tobytes() == image.tobytes()
    # deterministic: an equal image gives the same hash; the same hash as those bytes
    assert ImageRef.from_value(image.copy()).content_hash() == ref.content_hash()
    assert ImageRef.from_value(data) == ref


def test_lazily_opened_pil_image_is_loaded_and_checked(tmp_path: Path, png: bytes) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(png)
    bad.write_bytes(png[:-30])
    with Image.open(good) as lazy:
        assert ImageRef.from_value(lazy).to_pil().tobytes() == make_image().tobytes()
    with Image.open(bad) as lazy:
        ref = ImageRef.from_value(lazy, "PIL")
        with pytest.raises(ImageDecodeError, match="cannot decode the PIL image"):
            ref.validate()


def test_path_is_read_lazily_and_each_time(tmp_path: Path, png: bytes) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png)
    ref = ImageRef.from_value(path)
    path.unlink()
    with pytest.raises(ImageNotFoundError, match="no such file"):
        ref.get_bytes()
    with pytest.raises(ImageNotFoundError):
        ref.validate()


def test_equality_and_hash(tmp_path: Path, png: bytes) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png)
    from_b64 = ImageRef.from_value(base64.b64encode(png).decode())
    from_path = ImageRef.from_value(path)
    assert from_b64 == from_path
    assert len({from_b64, from_path, ImageRef.from_value(png)}) == 1
    other = ImageRef.from_value(encoded(make_image((8, 8)), "PNG"))
    assert other != from_b64
    url_a = ImageRef.from_value("https://example.com/a.png")
    assert url_a == ImageRef.from_value("https://example.com/a.png")
    assert url_a != ImageRef.from_value("https://example.com/b.png")
    assert url_a != from_b64
    assert from_b64 != "not a ref"


# -- format sniffing ---------------------------------------------------------------------------


def test_format_is_sniffed_not_taken_from_the_name(tmp_path: Path, png: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(png)
    ref = ImageRef.from_value(path)
    assert (ref.format, ref.mime_type) == ("PNG", "image/png")
    assert ref.to_data_url().startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("WEBP", "image/webp"), ("GIF", "image/gif"), ("JPEG", "image/jpeg"), ("BMP", "image/bmp")],
)
def test_format_sniffing(fmt: str, mime: str) -> None:
    data = encoded(make_image((30, 20)), fmt)
    ref = ImageRef.from_value(data)
    assert (ref.format, ref.mime_type, ref.size) == (fmt, mime, (30, 20))
    assert ref.to_data_url() == f"data:{mime};base64," + base64.b64encode(data).decode()


def test_data_url_declared_mime_is_ignored(png: bytes) -> None:
    lying = "data:image/jpeg;base64," + base64.b64encode(png).decode()
    ref = ImageRef.from_value(lying, "url")
    assert ref.kind == "bytes"
    assert ref.format == "PNG"
    assert ref.to_data_url().startswith("data:image/png;base64,")


# -- bytes out, resizing -----------------------------------------------------------------------


def test_to_bytes_returns_original_bytes_when_nothing_to_do() -> None:
    data = encoded(make_image((40, 20)), "JPEG", quality=70)
    ref = ImageRef.from_value(data)
    assert ref.to_bytes() is data
    assert ref.to_bytes(format="jpg") is data
    assert ref.to_bytes(ResizePolicy(max_side=40)) is data
    assert ref.to_bytes(ResizePolicy(max_side=100, max_pixels=800), format="JPEG") is data
    assert ref.to_base64() == base64.b64encode(data).decode()


def test_resize_keeps_the_format_and_aspect() -> None:
    png = ImageRef.from_value(encoded(make_image((400, 200)), "PNG"))
    small = Image.open(io.BytesIO(png.to_bytes(ResizePolicy(max_side=100))))
    assert (small.format, small.size) == ("PNG", (100, 50))
    assert png.to_pil(ResizePolicy(max_side=100)).size == (100, 50)
    assert png.to_pil().size == (400, 200)

    jpeg = ImageRef.from_value(encoded(make_image((400, 200)), "JPEG"))
    small = Image.open(io.BytesIO(jpeg.to_bytes(ResizePolicy(max_pixels=5_000))))
    assert small.format == "JPEG"
    assert small.width * small.height <= 5_000
    assert abs(small.width / small.height - 2) < 0.1


def test_reencode_to_another_format() -> None:
    ref = ImageRef.from_value(encoded(make_image((40, 20), "RGBA"), "PNG"))
    as_jpeg = ref.to_bytes(format="JPEG")
    assert as_jpeg[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(as_jpeg)).mode == "RGB"
    as_webp = ref.to_data_url(ResizePolicy(max_side=10), format="webp")
    assert as_webp.startswith("data:image/webp;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(as_webp.split(",", 1)[1])))
    assert (decoded.format, decoded.size) == ("WEBP", (10, 5))
    with pytest.raises(ImageError, match="cannot write images as"):
        ref.to_bytes(format="NOPE")


def test_palette_image_resizes_smoothly() -> None:
    image = make_image((60, 60)).convert("P", palette=Image.Palette.ADAPTIVE)
    ref = ImageRef.from_value(encoded(image, "GIF"))
    out = Image.open(io.BytesIO(ref.to_bytes(ResizePolicy(max_side=30))))
    assert (out.format, out.size) == ("GIF", (30, 30))


def test_resize_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated by 90 degrees
    data = encoded(make_image((40, 20)), "JPEG", exif=exif.tobytes())
    ref = ImageRef.from_value(data)
    assert ref.size == (40, 20)
    out = Image.open(io.BytesIO(ref.to_bytes(ResizePolicy(max_side=20))))
    assert out.size == (10, 20)


def test_encode_image_converts_modes() -> None:
    rgba = make_image((8, 8), "RGBA")
    assert encode_image(rgba, "jpg")[:3] == b"\xff\xd8\xff"
    assert encode_image(rgba.convert("CMYK"), "PNG").startswith(b"\x89PNG")
    assert encode_image(rgba, "image/webp")[8:12] == b"WEBP"


# -- bad input ---------------------------------------------------------------------------------


def test_corrupt_base64() -> None:
    with pytest.raises(ImageDecodeError, match="neither a URL, a data URL, base64"):
        ImageRef.from_value("iVBORw0KGgoAAAANSUhEUgAA!!!AAEAAAABCAYAAAAfFcSJAAAADUlEQVR4")
    with pytest.raises(ImageDecodeError, match="invalid base64"):
        ImageRef.from_value("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQV", "base64")
    with pytest.raises(ImageDecodeError, match="data URL with invalid base64"):
        ImageRef.from_value("data:image/png;base64,iVBORw0KGgo$$$")
    with pytest.raises(ImageDecodeError, match="no known image format"):
        ImageRef.from_value(base64.b64encode(b"just some text, no image").decode())


def test_truncated_png_fails_validate_and_decode(png: bytes) -> None:
    ref = ImageRef.from_value(png[: len(png) - 30])
    assert (ref.format, ref.size) == ("PNG", (64, 48))  # the header is intact
    with pytest.raises(ImageDecodeError, match="corrupt or truncated PNG"):
        ref.validate()
    with pytest.raises(ImageDecodeError, match="cannot decode the PNG image"):
        ref.to_pil()
    ImageRef.from_value(png).validate()


def test_truncated_jpeg_fails_the_cheap_validate() -> None:
    data = encoded(make_image((64, 64)), "JPEG")
    ref = ImageRef.from_value(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        ref.validate()  # the structure check, no pixel decode
    with pytest.raises(ImageDecodeError):
        ref.validate(decode=True)


def test_missing_paths(tmp_path: Path) -> None:
    for value in (
        str(tmp_path / "nope.png"),
        tmp_path / "nope.png",
        (tmp_path / "nope.png").as_uri(),
        "images/cat.jpg",
        {"bytes": None, "path": str(tmp_path / "nope.png")},
    ):
        with pytest.raises(ImageNotFoundError, match="no such file"):
            ImageRef.from_value(value)
    with pytest.raises(ImageNotFoundError, match="is a directory"):
        ImageRef.from_value(tmp_path)
    with pytest.raises(ImageNotFoundError, match="no such file"):
        ImageRef.from_value(str(tmp_path / "nope"), "path")


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not pixels\n" * 10)
    ref = ImageRef.from_value(str(path))
    with pytest.raises(ImageDecodeError, match="cannot identify the image format"):
        ref.validate()
    with pytest.raises(ImageDecodeError):
        _ = ref.format
    with pytest.raises(ImageDecodeError):
        ref.to_pil()
    with pytest.raises(ImageDecodeError):
        ImageRef.from_value(b"plain text bytes").to_data_url()


def test_huge_header_is_refused_without_decoding() -> None:
    bomb = png_claiming(30000, 30000)
    ref = ImageRef.from_value(bomb)
    assert ref.size == (30000, 30000)  # reporting the size is fine
    message = (
        "image is 30000x30000 = 900000000 pixels, over the limit of 100000000 "
        "(raise max_pixels to allow it)"
    )
    with pytest.raises(ImageTooLargeError) as info:
        ref.validate()
    assert str(info.value) == message
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        ref.to_pil()
    with pytest.raises(ImageTooLargeError):
        ref.to_bytes(ResizePolicy(max_side=512))
    with pytest.raises(ImageTooLargeError):
        ref.to_data_url(format="JPEG")
    assert time.perf_counter() - started < 2
    # as base64 it is still accepted (only the header is read) and refused when checked
    located = coerce_image(base64.b64encode(bomb).decode(), row=4, column="image")
    with pytest.raises(ImageTooLargeError) as info:
        located.validate()
    assert str(info.value.at(row=4, column="image")) == f"row 4, column 'image': {message}"
    # a raised limit lets the header and structure check pass (nothing is decoded)
    ImageRef.from_value(bomb, max_pixels=10**9).validate()


def test_own_limit_applies_not_pillows() -> None:
    # Over Pillow's warning threshold (about 89.5 million pixels), under our default limit:
    # no DecompressionBombWarning may escape (pytest turns warnings into errors).
    ImageRef.from_value(png_claiming(10_000, 9_000)).validate()
    with pytest.raises(ImageTooLargeError, match="over the limit of 1000"):
        ImageRef.from_value(encoded(make_image((40, 30)), "PNG"), max_pixels=1000).to_pil()
    with pytest.raises(ImageTooLargeError):
        ImageRef.from_value(make_image((40, 30)), max_pixels=1000).validate()


@pytest.mark.parametrize(
    ("image_type", "value", "looks_like"),
    [
        ("url", "BASE64", "base64 data"),
        ("url", "PATH", "a local path"),
        ("url", "PIL", "a PIL image"),
        ("url", "BYTES", "raw bytes"),
        ("base64", "https://example.com/cat.png", "an http(s) URL"),
        ("base64", "PATH", "a local path"),
        ("base64", "PIL", "a PIL image"),
        ("base64", "images/cat.png", "a local path"),
        ("PIL", "BASE64", "base64 data"),
        ("PIL", "BYTES", "raw bytes"),
        ("PIL", "https://example.com/cat.png", "an http(s) URL"),
        ("path", "https://example.com/cat.png", "an http(s) URL"),
        ("path", "DATA_URL", "a data URL"),
        ("path", "BASE64", "base64 data"),
        ("path", "PIL", "a PIL image"),
        ("path", "HF", "a Hugging Face image dict"),
    ],
)
def test_declared_type_mismatch(
    tmp_path: Path, png: bytes, image_type: str, value: object, looks_like: str
) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    value = {
        "BASE64": b64,
        "PATH": str(path),
        "PIL": make_image((4, 4)),
        "BYTES": png,
        "DATA_URL": "data:image/png;base64," + b64,
        "HF": {"bytes": png, "path": None},
    }.get(value, value)  # type: ignore[call-overload]
    with pytest.raises(ImageTypeMismatchError) as info:
        ImageRef.from_value(value, image_type)  # type: ignore[arg-type]
    assert (
        str(info.value)
        == f"declared image_type={image_type!r} but the value looks like {looks_like}"
    )
    assert b64[:20] not in str(info.value)


def test_declared_types_accept_their_forms(tmp_path: Path, png: bytes) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    data_url = "data:image/png;base64," + b64
    assert ImageRef.from_value("https://example.com/a.png", "url").kind == "url"
    assert ImageRef.from_value(data_url, "url").kind == "bytes"
    assert ImageRef.from_value(b64, "base64").kind == "bytes"
    assert ImageRef.from_value(data_url, "base64").kind == "bytes"
    assert ImageRef.from_value(make_image((4, 4)), "PIL").kind == "pil"
    assert ImageRef.from_value(str(path), "path").kind == "path"
    assert ImageRef.from_value(path.as_uri(), "path").kind == "path"


def test_unsupported_values() -> None:
    for value in (42, None, 3.5, ["a.png"], {"image": "x"}):
        with pytest.raises(ImageTypeMismatchError, match="is not an image"):
            ImageRef.from_value(value)
    with pytest.raises(ImageDecodeError, match="neither bytes nor a path"):
        ImageRef.from_value({"bytes": None, "path": None})
    with pytest.raises(ImageDecodeError, match="zero bytes"):
        ImageRef.from_value(b"")
    with pytest.raises(ValueError, match="unknown image_type"):
        ImageRef.from_value(b"x", "jpeg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        ImageRef.from_value(b"x", max_pixels=0)


def test_no_image_data_in_messages_or_repr(tmp_path: Path) -> None:
    data = encoded(make_image((200, 200)), "PNG")
    b64 = base64.b64encode(data).decode()
    corrupt = b64[:3000] + "!" + b64[3000:]
    with pytest.raises(ImageDecodeError) as info:
        ImageRef.from_value(corrupt)
    assert len(str(info.value)) < 150
    assert b64[40:80] not in str(info.value)
    with pytest.raises(ImageTypeMismatchError) as mismatch:
        ImageRef.from_value(b64, "url")
    assert b64[:20] not in str(mismatch.value)

    path = tmp_path / "a.png"
    path.write_bytes(data)
    refs = [
        ImageRef.from_value(b64),
        ImageRef.from_value("data:image/png;base64," + b64),
        ImageRef.from_value(data),
        ImageRef.from_value(make_image((20, 20))),
        ImageRef.from_value(path),
        ImageRef.from_value("https://example.com/a.png"),
    ]
    for ref in refs:
        text = repr(ref)
        assert b64[:16] not in text
        assert len(text) < 200
        assert text.startswith(f"ImageRef(kind={ref.kind!r}")
    assert sha256(data)[:12] in repr(refs[0])
    assert str(path) in repr(refs[4])
    assert "https://example.com/a.png" in repr(refs[5])


def test_is_image_value(png: bytes) -> None:
    b64 = base64.b64encode(png).decode()
    yes: list[object] = [
        make_image((2, 2)),
        png,
        bytearray(png),
        ImageRef.from_value(png),
        {"bytes": png, "path": None},
        {"bytes": None, "path": "a.png"},
        "data:image/png;base64," + b64,
    ]
    no: list[object] = [
        "a caption",
        "https://example.com/a.png",
        b64,
        {"bytes": None, "path": None},
        {"text": "x"},
        {"bytes": "not bytes", "path": None},
        42,
        None,
    ]
    assert all(is_image_value(value) for value in yes)
    assert not any(is_image_value(value) for value in no)


# -- fetching ----------------------------------------------------------------------------------


def test_fetch_errors(server: LocalServer) -> None:
    server.routes["big"] = b"x" * 200_000

    async def main() -> None:
        with pytest.raises(ImageFetchError, match="HTTP 404"):
            await fetch_url(server.url("missing"))
        with pytest.raises(ImageFetchError, match="over the limit of 100000 bytes"):
            await fetch_url(server.url("big"), max_bytes=100_000)
        assert len(await fetch_url(server.url("big"), max_bytes=200_000)) == 200_000
        with pytest.raises(ImageFetchError, match="over the limit of 100000 bytes"):
            await fetch_url(server.url("stream"), max_bytes=100_000)
        started = time.perf_counter()
        with pytest.raises(ImageFetchError, match=r"timed out after 0\.3 s"):
            await fetch_url(server.url("slow"), timeout=0.3)
        assert time.perf_counter() - started < 3
        with pytest.raises(ImageFetchError, match="not an http"):
            await fetch_url("ftp://example.com/a.png")

    asyncio.run(main())
    ref = ImageRef.from_value(server.url("missing"))
    with pytest.raises(ImageFetchError, match="HTTP 404"):
        ref.get_bytes()
    with pytest.raises(ImageFetchError, match="HTTP 404"):
        coerce_image(server.url("missing"), row=1).validate()


def test_fetch_with_a_caller_session(server: LocalServer, png: bytes) -> None:
    server.routes["cat.png"] = png

    async def main() -> bytes:
        async with aiohttp.ClientSession() as session:
            data = await fetch_url(server.url("cat.png"), session=session)
            assert not session.closed
            return data

    assert asyncio.run(main()) == png


# -- base64 in data URLs: the URL-safe alphabet and missing padding ----------------------------


def _png_whose_base64_has_plus_and_slash() -> bytes:
    for seed in range(64):
        data = encoded(make_image((16 + seed, 9)), "PNG")
        text = base64.b64encode(data).decode()
        if "+" in text and "/" in text and text.endswith("="):
            return data
    raise AssertionError("no test image with '+', '/' and padding")


@pytest.mark.parametrize("padding", [True, False])
def test_a_data_url_in_the_url_safe_alphabet_is_read(padding: bool) -> None:
    data = _png_whose_base64_has_plus_and_slash()
    text = base64.urlsafe_b64encode(data).decode()
    assert "-" in text and "_" in text
    ref = ImageRef.from_value("data:image/png;base64," + (text if padding else text.rstrip("=")))
    assert ref.get_bytes() == data
    # what is sent on is ordinary base64, whatever alphabet came in
    assert ref.to_data_url() == "data:image/png;base64," + base64.b64encode(data).decode()


def test_a_data_url_without_padding_is_read() -> None:
    data = _png_whose_base64_has_plus_and_slash()
    text = base64.b64encode(data).decode().rstrip("=")
    assert ImageRef.from_value(f"data:image/png;base64,{text}").get_bytes() == data


@pytest.mark.parametrize(
    "payload",
    [
        "iVBORw0KGgo$$$",  # not base64 at all
        "iVBORw0K-Ggo+AAAA",  # both alphabets in one text
        "iVBORw0KGgoAA",  # 13 characters: no padding makes that whole
        "iVBORw0K=Ggo",  # padding in the middle
    ],
)
def test_garbage_in_a_data_url_is_still_refused(payload: str) -> None:
    with pytest.raises(ImageDecodeError, match="data URL with invalid base64"):
        ImageRef.from_value(f"data:image/png;base64,{payload}")
