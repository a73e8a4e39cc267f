from __future__ import annotations

import base64
from pathlib import Path

from PIL import Image

from doubles import DescribingLLM
from pixtill.steps.tasks import METADATA_COLUMN, ChatGeneration
from sample_images import image_bytes


def test_multi_turn_dialogue_with_images_in_every_form(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(image_bytes(6, 6))
    data_url = (
        "data:image/jpeg;base64," + base64.b64encode(image_bytes(4, 4, format="JPEG")).decode()
    )
    messages = [
        {"role": "system", "content": "You read documents."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": "What is this?"},
            ],
        },
        {"role": "assistant", "content": "A small square."},
        {
            "role": "user",
            "content": [
                {"type": "image", "path": str(path)},
                {"type": "image", "image": Image.new("RGB", (3, 2))},
                {"type": "image", "url": "https://example.invalid/bee.jpg"},
                {"type": "text", "text": "And these?"},
            ],
        },
    ]
    task = ChatGeneration(name="chat", llm=DescribingLLM())
    task.load()
    [row] = next(task.process([{"messages": messages}]))
    assert row["generation"] == (
        "[0] saw system: You read documents. | user: <JPEG 4x4> What is this? | "
        "assistant: A small square. | user: <PNG 6x6> <PNG 3x2> "
        "<url https://example.invalid/bee.jpg> And these?"
    )
    raw = str(row[METADATA_COLUMN]["raw_input_chat"])
    assert "base64," not in raw and "sha256:" in raw


def test_bad_messages_name_row_and_column() -> None:
    task = ChatGeneration(name="chat", llm=DescribingLLM())
    task.load()
    rows = next(
        task.process(
            [
                {"messages": [{"role": "user", "content": "hi"}]},
                {"messages": [{"role": "user", "content": [{"type": "image", "image": "@@@"}]}]},
                {"messages": [{"role": "assistant", "content": "last"}]},
                {"messages": [{"role": "wizard", "content": "x"}]},
            ]
        )
    )
    assert rows[0]["generation"] == "[0] saw user: hi"
    for index in (1, 2, 3):
        assert rows[index]["generation"] is None
        assert f"row {index}, column 'messages'" in rows[index][METADATA_COLUMN]["error_chat"]
