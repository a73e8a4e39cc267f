"""``multipart/form-data`` bodies (RFC 7578) for the upload routes (image edits, batch files).

The body is built once as bytes, so a retried request resends exactly the same bytes; the
engine (`RequestEngine.post_body`) sends it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["FilePart", "encode_multipart", "new_boundary"]


@dataclass(frozen=True)
class FilePart:
    """A file field: its bytes, the file name sent with it, and its media type."""

    data: bytes
    filename: str
    content_type: str = "application/octet-stream"


def _quoted(value: str) -> str:
    # Quotes and line breaks would end the header early; browsers percent-escape them too.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def new_boundary() -> str:
    """A random multipart boundary (128 bits: it will not occur in the data)."""
    return "pixtill-" + secrets.token_hex(16)


def encode_multipart(
    fields: list[tuple[str, str | FilePart]], boundary: str | None = None
) -> tuple[bytes, str]:
    """``(body, content type)`` of a form with ``fields`` in order (a name may repeat, e.g.
    ``image[]``). Text fields are UTF-8; a `FilePart` goes with its file name and media type.
    ``boundary``: one from `new_boundary` when the content type must be known before the body
    is built (a body built later, in the request's slot)."""
    boundary = boundary or new_boundary()
    chunks: list[bytes] = []
    for name, value in fields:
        chunks.append(f"--{boundary}\r\n".encode())
        if isinstance(value, FilePart):
            chunks.append(
                f'Content-Disposition: form-data; name="{_quoted(name)}"; '
                f'filename="{_quoted(value.filename)}"\r\n'
                f"Content-Type: {value.content_type}\r\n\r\n".encode()
            )
            chunks.append(value.data)
        else:
            chunks.append(
                f'Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode()
            )
            chunks.append(value.encode())
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
