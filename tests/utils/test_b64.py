from __future__ import annotations

import base64
import os

import pytest

from pixtill.utils.b64 import compact_b64, decode_b64, encode_b64


def test_round_trip_matches_the_standard_library() -> None:
    data = os.urandom(3001)
    text = encode_b64(data)
    assert text == base64.b64encode(data).decode("ascii")
    assert decode_b64(text) == (text, data)


def test_wrapped_base64_is_compacted_then_decoded() -> None:
    data = os.urandom(200)
    text = base64.encodebytes(data).decode("ascii")  # MIME: newline every 76 characters
    assert "\n" in text
    assert decode_b64(text) == (compact_b64(text), data)


@pytest.mark.parametrize("text", ["", " ", "QQ=", "QQ", "Q===", "****", "QQ==é", "data:,QQ=="])
def test_not_strict_base64(text: str) -> None:
    assert decode_b64(text) is None
