"""Image tasks hand models OpenAI-format messages; images stay references everywhere else."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from doubles import DescribingLLM
from pixtill.image_url import ImageURL
from pixtill.images import ImageRef, ResizePolicy
from pixtill.models.llms._wire import _image_of, openai_messages
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration, TextGenerationWithImage
from pixtill.steps.tasks.references import replace_images, stored_input
from sample_images import image_bytes

URL = "https://example.invalid/cat.jpg"


def vision(**kwargs: Any) -> TextGenerationWithImage:
    task = TextGenerationWithImage(llm=DescribingLLM(), **kwargs)
    task.load()
    return task


def image_url_of(messages: list[dict[str, Any]]) -> Any:
    (part,) = [p for p in messages[-1]["content"] if p["type"] == "image_url"]
    assert set(part) == {"type", "image_url"} and set(part["image_url"]) == {"url"}
    return part["image_url"]["url"]


def test_a_web_url_is_given_as_is_with_the_system_prompt_first() -> None:
    messages = vision(system_prompt="Be brief.", image_type="url").format_input(
        {"instruction": "What is it?", "image": URL}
    )
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": URL}},
            ],
        },
    ]


def test_base64_becomes_a_data_url_with_the_real_mime_type_and_the_same_base64() -> None:
    jpeg = base64.b64encode(image_bytes(6, 4, format="JPEG")).decode()
    url = image_url_of(
        vision(image_type="base64").format_input({"instruction": "x", "image": jpeg})
    )
    assert url == f"data:image/jpeg;base64,{jpeg}"
    assert isinstance(url, str) and isinstance(url, ImageURL)


@pytest.mark.parametrize("kind", ["PIL", "path", "bytes", "hf-dict"])
def test_every_local_form_becomes_a_data_url_of_the_same_pixels(kind: str, tmp_path: Path) -> None:
    png = image_bytes(5, 3, format="PNG")
    path = tmp_path / "a.png"
    path.write_bytes(png)
    if kind == "PIL":
        with Image.open(path) as opened:
            opened.load()
            value: Any = opened
    else:
        value = {"path": str(path), "bytes": png, "hf-dict": {"bytes": png, "path": None}}[kind]
    image_type = {"PIL": "PIL", "path": "path"}.get(kind, "auto")
    url = image_url_of(
        vision(image_type=image_type).format_input({"instruction": "x", "image": value})
    )
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as decoded:
        assert decoded.size == (5, 3)


def test_a_format_chat_apis_refuse_is_sent_as_png() -> None:
    bmp = image_bytes(3, 3, format="BMP")
    url = image_url_of(vision().format_input({"instruction": "x", "image": bmp}))
    assert url.startswith("data:image/png;base64,")


def test_the_url_is_a_real_string_for_every_serialiser() -> None:
    jpeg = base64.b64encode(image_bytes(6, 4, format="JPEG")).decode()
    messages = vision().format_input({"instruction": "x", "image": jpeg})
    expected = f"data:image/jpeg;base64,{jpeg}"
    assert json.loads(json.dumps(messages))[0]["content"][1]["image_url"]["url"] == expected
    assert orjson.loads(orjson.dumps(messages))[0]["content"][1]["image_url"]["url"] == expected
    assert (
        image_url_of(messages).startswith("data:image/jpeg")
        and f"{image_url_of(messages)}" == expected
    )
    again = pickle.loads(pickle.dumps(messages))
    assert image_url_of(again) == expected and isinstance(image_url_of(again), ImageURL)
    assert image_url_of(copy.deepcopy(messages)) == expected


def test_backends_get_the_checked_reference_back_without_decoding_again() -> None:
    png = image_bytes(7, 7)
    messages = vision().format_input({"instruction": "x", "image": png})
    url = image_url_of(messages)
    assert ImageRef.from_value(url) is url.ref
    assert _image_of(messages[-1]["content"][1]) is url.ref
    # A plain string with the same data URL is decoded into an equal reference.
    assert ImageRef.from_value(str(url)) == url.ref and ImageRef.from_value(str(url)) is not url.ref


def test_raw_input_stores_references_never_base64() -> None:
    png = image_bytes(8, 8)
    task = vision(system_prompt="Sys.")
    rows = next(
        task.process([{"instruction": "x", "image": png}, {"instruction": "y", "image": URL}])
    )
    first, second = (r[METADATA_COLUMN]["raw_input_text_generation_with_image_0"] for r in rows)
    digest = ImageRef.from_value(png).content_hash()
    assert first[1]["content"][1] == {"type": "image_url", "image_url": {"url": f"sha256:{digest}"}}
    assert second[1]["content"][1] == {"type": "image_url", "image_url": {"url": URL}}
    # One Arrow type per column: the system prompt becomes a list of parts in image tasks.
    assert first[0] == {"role": "system", "content": [{"type": "text", "text": "Sys."}]}
    assert base64.b64encode(png).decode()[:40] not in json.dumps(first)


def test_user_built_data_urls_are_replaced_too_but_text_is_left_alone() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(image_bytes(2, 2)).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": data_url},
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "image_url", "image_url": data_url},
            ],
        }
    ]
    stored = replace_images(messages)[0]["content"]
    assert stored[0]["text"] == data_url
    assert stored[1]["image_url"]["url"].startswith("sha256:")
    assert stored[2]["image_url"].startswith("sha256:")


def test_text_only_raw_input_keeps_distilabels_string_contents() -> None:
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": "hi"}]
    assert stored_input(messages) == messages
    assert stored_input(messages, content_as_parts=True)[1] == {
        "role": "user",
        "content": [{"type": "text", "text": "hi"}],
    }


def test_chat_generation_produces_image_url_parts_and_one_stored_shape() -> None:
    task = ChatGeneration(llm=DescribingLLM())
    task.load()
    png = image_bytes(4, 4)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image", "image": png}, {"type": "text", "text": "?"}],
        }
    ]
    formatted = task.format_input({"messages": messages})
    assert formatted[0]["content"][0]["type"] == "image_url"
    assert formatted[0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    rows = next(task.process([{"messages": [{"role": "user", "content": "plain"}]}]))
    stored = rows[0][METADATA_COLUMN]["raw_input_chat_generation_0"]
    assert stored == [{"role": "user", "content": [{"type": "text", "text": "plain"}]}]


def test_openai_wire_reencodes_from_the_reference_only_when_resizing() -> None:
    big = image_bytes(64, 32)
    messages = vision().format_input({"instruction": "x", "image": big})
    url = image_url_of(messages)
    unchanged = asyncio.run(openai_messages(messages))
    assert unchanged[0]["content"][1]["image_url"]["url"] is url  # sent as built, not re-encoded
    kept = asyncio.run(openai_messages(messages, ResizePolicy(max_pixels=64 * 32)))
    assert kept[0]["content"][1]["image_url"]["url"] is url
    shrunk = asyncio.run(openai_messages(messages, ResizePolicy(max_pixels=16 * 8)))
    sent = shrunk[0]["content"][1]["image_url"]["url"]
    assert sent != url
    small = ImageRef.from_value(sent)
    assert small.size[0] * small.size[1] <= 16 * 8


def test_a_pil_image_read_from_a_jpeg_is_sent_as_jpeg() -> None:
    with Image.open(io.BytesIO(image_bytes(8, 6, format="JPEG"))) as opened:
        opened.load()
        url = image_url_of(vision().format_input({"instruction": "x", "image": opened}))
    assert url.startswith("data:image/jpeg;base64,")
    made = Image.new("RGB", (8, 6))  # made in memory: no format, sent losslessly
    url = image_url_of(vision().format_input({"instruction": "x", "image": made}))
    assert url.startswith("data:image/png;base64,")
