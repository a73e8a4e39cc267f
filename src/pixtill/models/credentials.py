"""API keys of the HTTP backends: how they are declared, resolved and recognised.

A key is a ``SecretStr`` field (`SecretField`) that is never dumped nor shown in ``repr``; when
it is not given as an argument it is read from the environment at load time
(`resolve_secret`). `secret_parts` lists what a credential header's value gives away, so that
errors can be scrubbed of it (see `RemoteModel.scrub_text`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pydantic import Field, SecretStr

__all__ = ["SecretField", "resolve_secret", "secret_parts"]


def SecretField(description: str) -> Any:
    """A secret: never dumped, never shown in ``repr``."""
    return Field(default=None, exclude=True, repr=False, description=description)


def resolve_secret(value: SecretStr | None, *env_vars: str) -> str | None:
    """The argument's value, else the first environment variable that is set and non-empty."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    for name in env_vars:
        found = os.environ.get(name)
        if found:
            return found
    return None


def secret_parts(values: Iterable[str]) -> list[str]:
    """The secret strings inside header values (``Bearer <key>`` -> the key too); strings
    shorter than 4 characters are left out (scrubbing them would mangle ordinary text)."""
    parts: list[str] = []
    for value in values:
        parts.append(value)
        _, _, token = value.partition(" ")
        if len(token) >= 4:
            parts.append(token)
    return [p for p in parts if len(p) >= 4]
