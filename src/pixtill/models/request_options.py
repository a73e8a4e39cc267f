"""The SDKs' per-request options in ``generation_kwargs``: ``extra_headers``, ``extra_query``
and ``extra_body``.

Code written for the OpenAI and Anthropic SDKs passes them with the generation parameters
(``generation_kwargs={"extra_headers": {"OpenAI-Project": "proj_..."}}``). They are not fields
of the request body: as in the SDKs, ``extra_headers`` become HTTP headers of the request,
``extra_query`` query parameters of its URL, and ``extra_body``'s keys are merged into the JSON
body. Header values are never logged (a credential in one is scrubbed from errors, see
`pixtill.utils.secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = ["SDK_OPTIONS", "RequestOptions", "split_request_options"]

SDK_OPTIONS = ("extra_headers", "extra_query", "extra_body")


@dataclass(frozen=True)
class RequestOptions:
    """Headers, query parameters and body fields to add to one request."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    def url(self, url: str) -> str:
        """``url`` with ``query`` appended to its query string."""
        if not self.query:
            return url
        parts = urlsplit(url)
        extra = urlencode(self.query)
        query = f"{parts.query}&{extra}" if parts.query else extra
        return urlunsplit(parts._replace(query=query))


def _strings(owner: str, name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(
            f"{owner}: generation_kwargs[{name!r}] must map names to values, "
            f"got {type(value).__name__}"
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is None:  # the SDKs' way to leave a default header out
            continue
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            # The value may be a credential: name its type only.
            raise ValueError(
                f"{owner}: generation_kwargs[{name!r}][{key!r}] must be text, "
                f"got {type(item).__name__}"
            )
        out[key] = str(item)
    return out


def split_request_options(params: dict[str, Any], owner: str) -> RequestOptions:
    """Remove ``extra_headers``, ``extra_query`` and ``extra_body`` from ``params`` (in place)
    and return them as `RequestOptions`. Raises ValueError naming ``owner`` when one is not a
    mapping of names to text (``extra_body``: to any JSON value); no value is quoted."""
    headers = _strings(owner, "extra_headers", params.pop("extra_headers", None) or {})
    query = _strings(owner, "extra_query", params.pop("extra_query", None) or {})
    body = params.pop("extra_body", None) or {}
    if not isinstance(body, Mapping):
        raise ValueError(
            f"{owner}: generation_kwargs['extra_body'] must be a mapping, got {type(body).__name__}"
        )
    return RequestOptions(headers, query, dict(body))
