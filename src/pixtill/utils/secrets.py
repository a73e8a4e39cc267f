"""Credentials hidden inside plain configuration: header values, URL passwords, query keys.

`api_key` fields are ``SecretStr`` and excluded from dumps; but a credential can also sit in a
plain field: ``generation_kwargs={"extra_headers": {"Authorization": "Bearer ..."}}``,
``base_url="http://user:password@host/v1"`` or ``base_url="https://host/v1?key=..."``. These
helpers find such values (so errors a server echoes can be scrubbed of them) and mask them as
``***`` (so reprs, dumps, saved configurations and cache keys never hold them).

A name is a credential's when one of its ``-``/``_``-separated words is ``key``, ``apikey``,
``token``, ``secret``, ``password``, ``passwd``, ``cookie``, ``auth``, ``authorization``,
``credential(s)`` or ``signature`` (``Authorization``, ``Proxy-Authorization``, ``x-api-key``,
``api-key``, ``X-Auth-Token``, ``access_token``; not ``max_tokens``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "is_secret_name",
    "mask_config",
    "mask_url",
    "masked_credentials",
    "refuse_masked_credentials",
    "secret_values_in",
]

MASK = "***"
_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "cookie",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "signature",
        "sig",
    }
)
_MIN_SECRET = 4  # shorter values are not scrubbed from texts (they would mangle them)


def is_secret_name(name: str) -> bool:
    """Whether a header, query parameter or keyword named ``name`` carries a credential."""
    words = re.split(r"[-_.\s]+", name.strip().lower())
    return any(word in _SECRET_WORDS for word in words)


def _looks_like_url(text: str) -> bool:
    return "://" in text


def mask_url(url: str) -> str:
    """``url`` with the userinfo password and credential query values replaced by ``***``
    (unchanged when it holds none, or does not parse)."""
    if not _looks_like_url(url):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) and v for k, v in pairs):
            query = urlencode(
                [(k, MASK if is_secret_name(k) and v else v) for k, v in pairs], safe="*"
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _url_secrets(url: str) -> list[str]:
    if not _looks_like_url(url):
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if is_secret_name(k) and v]
    except ValueError:
        return []
    return found


def mask_config(value: Any, name: str = "") -> Any:
    """``value`` (nested dicts, lists, strings) with every credential masked: the string value
    of a credential-named key, and the secret parts of URLs. Other values are returned as is
    (the same object when nothing changed)."""
    if isinstance(value, str):
        if name and is_secret_name(name) and value:
            return MASK
        return mask_url(value)
    if isinstance(value, dict):
        out = {k: mask_config(v, str(k)) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, (list, tuple)):
        items = [mask_config(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    return value


def secret_values_in(value: Any, name: str = "") -> list[str]:
    """The credentials `mask_config` would hide in ``value`` (``Bearer <token>``: the token
    too), at least 4 characters each."""
    found: list[str] = []
    if isinstance(value, str):
        if name and is_secret_name(name):
            found.append(value)
            token = value.partition(" ")[2].strip()
            if token:
                found.append(token)
        found += _url_secrets(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            found += secret_values_in(v, str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            found += secret_values_in(v)
    return [s for s in found if len(s) >= _MIN_SECRET]


def masked_credentials(value: Any, where: str) -> list[str]:
    """Where ``value`` (as ``mask_config`` walks it) holds ``***`` in place of a credential:
    a configuration saved with its credentials masked and loaded back. Each entry names the
    place, e.g. ``"generation_kwargs['extra_headers']['Authorization']"`` or ``"the password
    in base_url"``; no value is quoted."""
    found: list[str] = []
    if isinstance(value, str):
        if MASK not in value:
            return found
        if _looks_like_url(value):
            found += _masked_url_parts(value, where)
        elif is_secret_name(_last_key(where)) and value.split()[-1:] == [MASK]:
            found.append(where)  # "***", or "Bearer ***"
    elif isinstance(value, dict):
        for k, v in value.items():
            found += masked_credentials(v, f"{where}[{str(k)!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += masked_credentials(v, f"{where}[{i}]")
    return found


def _last_key(where: str) -> str:
    """The last ``['name']`` of a place such as ``generation_kwargs['extra_headers']['X']``."""
    match = re.search(r"\['([^']*)'\]$", where)
    return match.group(1) if match else ""


def _masked_url_parts(url: str, where: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [f"the password in {where}"] if parts.password == MASK else []
        found += [
            f"the {k!r} query parameter of {where}"
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if is_secret_name(k) and v == MASK
        ]
    except ValueError:
        return []
    return found


def refuse_masked_credentials(owner: str, fields: dict[str, Any]) -> None:
    """Raise ValueError when ``fields`` (``{field name: value}``) hold ``***`` in place of a
    credential: a saved configuration never holds one, so a loaded one must be given its
    credentials again before a request is sent (else the server answers 401). The message
    names each place and how to give it again; it quotes no value."""
    places = [p for name, value in fields.items() for p in masked_credentials(value, name)]
    if not places:
        return
    raise ValueError(
        f"{owner}: {' and '.join(places)} holds '***' instead of a credential: credentials are "
        "never saved with a configuration, so it was masked when this one was saved. Give it "
        "again before running: as the model's argument, with `pixtill run --param "
        "<step>.llm.<field>=...` or with Pipeline.run(parameters={'<step>': {'llm': {...}}}); "
        "the API key itself comes from api_key= or the provider's environment variable "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, HF_TOKEN)"
    )
