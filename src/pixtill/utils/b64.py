"""Strict base64 for images, on `pybase64` (SIMD; the stdlib is ~40x slower on 40 KB images).

Every image a task sends is decoded to be checked and hashed, so decoding speed is request
throughput: with `binascii` the decode alone cost more CPU than a whole bare HTTP request.
"""

from __future__ import annotations

import binascii

import pybase64

_WHITESPACE = " \n\r\t"


def compact_b64(text: str) -> str:
    """``text`` without the whitespace that wrapped base64 (MIME, PEM) may contain."""
    return "".join(text.split()) if any(c in text for c in _WHITESPACE) else text


def decode_b64(text: str) -> tuple[str, bytes] | None:
    """``(compact text, bytes)`` when ``text`` is strict base64 (standard alphabet, padding
    required, whitespace ignored); None otherwise."""
    if not text or not text.isascii():
        return None
    try:  # the usual case, unwrapped: no need to scan the text for whitespace first
        return text, pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    compact = compact_b64(text)
    if not compact or compact is text:
        return None
    try:
        return compact, pybase64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_b64(data: bytes | bytearray | memoryview) -> str:
    """Standard base64 text of ``data``."""
    return pybase64.b64encode(data).decode("ascii")
