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


_URL_SAFE = str.maketrans("-_", "+/")


def decode_b64_lenient(text: str) -> tuple[str, bytes] | None:
    """`decode_b64`, also accepting the URL-safe alphabet (``-``/``_``, RFC 4648 section 5)
    and missing ``=`` padding, as data URLs written by JavaScript's ``base64url`` helpers,
    JWT-style tools and some servers carry. Returns ``(standard padded text, bytes)``, so the
    text can be sent on as ordinary base64; None for garbage: other characters, both
    alphabets mixed, or a length no padding can fix (1 more than a multiple of 4)."""
    strict = decode_b64(text)
    if strict is not None or not text or not text.isascii():
        return strict
    compact = compact_b64(text).rstrip("=")
    if ("-" in compact or "_" in compact) and ("+" in compact or "/" in compact):
        return None
    standard = compact.translate(_URL_SAFE)
    if len(standard) % 4 == 1:
        return None
    standard += "=" * (-len(standard) % 4)
    try:
        return standard, pybase64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_b64(data: bytes | bytearray | memoryview) -> str:
    """Standard base64 text of ``data``."""
    return pybase64.b64encode(data).decode("ascii")
