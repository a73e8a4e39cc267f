"""What every HTTP backend shares: engine settings, the engine's lifecycle, and secrets.

`RemoteModel` is a configuration mixin for the network backends (`OpenAILLM`, `AnthropicLLM`,
`InferenceEndpointsLLM`, `OpenAIImageGeneration`, `InferenceEndpointsImageGeneration`). Its
fields are plain configuration; what ``load()`` (or the first call) builds - the
:class:`~pixtill.models.transport.RequestEngine`, the resolved credentials - lives in one
`RemoteRuntime` object, dropped by copies and pickles and closed by ``aclose()`` / ``unload()``.
The engine is the only owner of the in-flight window: backends hand it a payload *builder*, so
images are encoded only once a request has its slot.

Secrets: API keys are ``SecretStr`` fields excluded from ``model_dump``, ``repr`` and ``str``.
A key not given as an argument is read from the environment at load time; either way it then
travels only as a request header through the engine (never in URLs, payloads, logs or metadata),
and a failed request's error is scrubbed of it in case a server echoes it back. Copies and
pickles of a model carry its configuration, never its engine or resolved credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr, field_validator
from typing_extensions import Self

from pixtill.errors import ModelUnavailableError
from pixtill.images import ResizePolicy
from pixtill.models._failures import scrub_secrets
from pixtill.models.base import BaseModel
from pixtill.models.credentials import SecretField, resolve_secret, secret_parts
from pixtill.models.http import Clock, ErrorKind, Transport
from pixtill.models.transport import EngineConfig, Payload, RequestEngine, RequestError
from pixtill.utils.secrets import refuse_masked_credentials, secret_values_in

__all__ = [
    "InvalidResponseError",
    "RemoteModel",
    "RemoteRuntime",
    "SecretField",
    "excerpt",
    "merged_params",
    "resolve_secret",
]


class InvalidResponseError(RuntimeError):
    """A 2xx response whose body is not what the backend's API promises."""

    kind = ErrorKind.INVALID_RESPONSE  # read by `ResultError.of`

    def __init__(self, backend: str, message: str) -> None:
        self.backend = backend
        super().__init__(f"{backend}: {message}")


@dataclass(slots=True)
class RemoteRuntime:
    """What a `RemoteModel` builds to send requests: never copied, pickled or dumped."""

    engine: RequestEngine
    secrets: tuple[str, ...] = ()  # strings scrubbed from error texts
    post_auth: dict[str, str] | None = None  # credentials sent with each POST, if per request


def excerpt(value: Any, limit: int = 200) -> str:
    """A short description of an unexpected response body for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class RemoteModel(BaseModel):
    """Settings and lifecycle of a model served over HTTP (mix in before `AsyncLLM` or
    `AsyncImageGenerationModel`).

    Subclasses declare ``base_url`` (and ``api_key`` when they need one) and implement
    `_auth_headers` (called once, at load time).
    """

    # A refused value is not echoed in the error (pydantic's "input_value=..."): a base_url
    # may carry a password or a ?key= that must never reach a log.
    model_config = ConfigDict(hide_input_in_errors=True)

    base_url: str | None = Field(default=None, description="Root URL of the server.")
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="Requests in flight at most (a sliding window)."
    )
    timeout: float = Field(
        default=60.0, gt=0, description="Seconds per attempt (a timed-out request is retried once)."
    )
    max_retries: int = Field(
        default=6, ge=0, description="Retries of a request after 429/408/5xx/timeouts."
    )
    backoff_base: float = Field(default=0.5, ge=0, description="First retry delay (seconds).")
    backoff_max: float = Field(default=30.0, ge=0, description="Longest retry delay (seconds).")
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(
        default=None, gt=0, description="Pace requests by an estimate of the tokens they use."
    )
    image_resize: ResizePolicy | None = Field(
        default=None,
        description="Shrink images before sending them (URLs the server fetches are untouched).",
    )
    trust_env: bool = Field(
        default=False, description="Honour HTTP(S)_PROXY / NO_PROXY from the environment."
    )

    # Built by `load()` or the first call; never copied nor pickled.
    _runtime: RemoteRuntime | None = PrivateAttr(default=None)

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host: ``localhost:11434/v1`` or ``htp://...`` would otherwise
        fail every row with a client error instead of saying what is wrong."""
        if value is None:
            return value
        scheme, sep, rest = value.strip().partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
            shown = value.strip().partition("?")[0].rpartition("@")[2]  # no password nor ?key=
            guess = f"; did you mean 'http://{shown}'?" if not sep else ""
            raise ValueError(
                f"base_url must be an http:// or https:// URL with a host, got {shown!r}{guess}"
            )
        return value

    # ----------------------------------------------------------------- for subclasses

    def _auth_headers(self) -> dict[str, str]:
        """Headers that carry credentials (resolved at load time). None by default."""
        return {}

    def _extra_headers(self) -> dict[str, str]:
        """Headers every request carries that are not secret."""
        return {}

    def _prepare(self) -> None:
        """Resolve what the backend needs before its first request (may block: runs at
        ``load()``, or in a worker thread on the first call)."""

    @property
    def _auth_per_request(self) -> bool:
        """True when credentials go with each POST instead of living in the engine (so that
        fetching a URL on another host, e.g. a generated image, never carries the key)."""
        return False

    # ----------------------------------------------------------------- copies

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle the configuration only: no engine, sessions or resolved credentials."""
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = _without_runtime(private)
        return state

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A deep copy of the configuration, without the runtime state (``model_copy(deep=True)``
        of a model in use would otherwise try to copy its connections and event loop)."""
        clone = self.__copy__()
        if clone.__pydantic_private__:
            clone.__pydantic_private__ = _without_runtime(clone.__pydantic_private__)
        return BaseModel.__deepcopy__(clone, memo)

    # ----------------------------------------------------------------- lifecycle

    def load(self) -> None:
        super().load()
        if self._runtime is None:
            self._runtime = self._build_runtime()

    def load_with(self, *, transport: Transport | None = None, clock: Clock | None = None) -> None:
        """Like ``load()``, with the engine's transport and/or clock replaced (tests inject
        `~pixtill.models.http.MockTransport` or `~pixtill.models.http.ManualClock`, so retries
        and ``Retry-After`` pauses cost no wall time). A runtime built before is replaced."""
        super().load()
        self._runtime = self._build_runtime(transport=transport, clock=clock)

    def unload(self) -> None:
        super().unload()  # closes the engine on the model's loop (``aclose``) if it has one
        self._runtime = None

    async def aclose(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.engine.close()

    @property
    def engine(self) -> RequestEngine | None:
        """The request engine once loaded (None before ``load()`` / the first call)."""
        return None if self._runtime is None else self._runtime.engine

    def _engine_config(self) -> EngineConfig:
        return EngineConfig(
            max_concurrent_requests=self.max_concurrent_requests,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            trust_env=self.trust_env,
        )

    def _build_runtime(
        self, *, transport: Transport | None = None, clock: Clock | None = None
    ) -> RemoteRuntime:
        refuse_masked_credentials(
            type(self).__name__,
            {"generation_kwargs": self.generation_kwargs, "base_url": self.base_url},
        )
        self._prepare()
        auth = self._auth_headers()
        headers = self._extra_headers()
        post_auth = None
        if self._auth_per_request:
            post_auth = auth or None
        else:
            headers.update(auth)
        engine = RequestEngine(
            self._engine_config(),
            headers=headers,
            transport=transport,
            clock=clock,
            origins=[self.base_url] if self.base_url else (),
        )
        # Besides the API key: credential headers, a password in base_url, a ?key= query
        # value, credentials in generation_kwargs (e.g. extra_headers={"Authorization": ...}).
        secrets = secret_parts(auth.values()) + secret_values_in(headers)
        secrets += secret_values_in(self.generation_kwargs) + secret_values_in(self.base_url or "")
        unique = sorted(set(secrets), key=len, reverse=True)  # the longest first: whole ones
        return RemoteRuntime(engine, tuple(unique), post_auth)

    async def _aruntime(self) -> RemoteRuntime:
        """The runtime, built on first use when ``load()`` was not called."""
        runtime = self._runtime
        if runtime is None:
            built = await asyncio.to_thread(self._build_runtime)
            runtime = self._runtime = self._runtime or built
        return runtime

    async def _aengine(self) -> RequestEngine:
        """The engine, built on first use when ``load()`` was not called."""
        return (await self._aruntime()).engine

    @property
    def _request_auth(self) -> dict[str, str] | None:
        """Credentials to send with each POST when `_auth_per_request` is set (else None)."""
        return None if self._runtime is None else self._runtime.post_auth

    def request_stats(self) -> dict[str, float | int] | None:
        """The engine's live counters: in flight, done, retried, failed, rate limited..."""
        engine = self.engine
        return None if engine is None else engine.stats.snapshot()

    # ----------------------------------------------------------------- requests

    async def _post_json(
        self,
        engine: RequestEngine,
        url: str,
        payload: Payload,
        *,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
    ) -> Any:
        """`RequestEngine.post_json`, with a failure's error scrubbed of secrets (and a dead
        server's error naming this model)."""
        error: Exception
        try:
            return await engine.post_json(url, payload, headers=headers, tokens=tokens)
        except RequestError as exc:
            error = self._scrub(exc)
        except ModelUnavailableError as exc:
            error = self._unavailable(exc)
        raise error  # outside the handler: the unscrubbed error is not its __context__

    async def _post_bytes(
        self,
        engine: RequestEngine,
        url: str,
        payload: Payload,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, str]:
        error: Exception
        try:
            return await engine.post_bytes(url, payload, headers=headers)
        except RequestError as exc:
            error = self._scrub(exc)
        except ModelUnavailableError as exc:
            error = self._unavailable(exc)
        raise error

    async def _get_bytes(
        self, engine: RequestEngine, url: str, *, timeout: float, max_bytes: int
    ) -> bytes:
        try:
            return await engine.get_bytes(url, timeout=timeout, max_bytes=max_bytes)
        except RequestError as exc:
            error = self._scrub(exc)
        raise error

    # ----------------------------------------------------------------- errors

    def scrub_text(self, text: str) -> str:
        """``text`` without this model's secrets, nor the start of one that a truncated error
        body cut (at least 8 characters of it)."""
        return scrub_secrets(text, () if self._runtime is None else self._runtime.secrets)

    def describe_error(self, exc: BaseException) -> str:
        return self.scrub_text(super().describe_error(exc))

    def _unavailable(self, exc: ModelUnavailableError) -> ModelUnavailableError:
        """``exc`` naming this model, without secrets a server may have echoed."""
        clean = self.scrub_text
        return ModelUnavailableError(
            clean(exc.cause), url=clean(exc.url), hint=exc.hint, model=self.model_name
        )

    def _scrub(self, exc: RequestError) -> RequestError:
        """``exc`` with any secret removed (servers sometimes echo a bad key back)."""
        text = str(exc)
        if self.scrub_text(text) == text:
            return exc
        clean = self.scrub_text

        return RequestError(
            exc.reason,
            status=exc.status,
            body=clean(exc.body),
            attempts=exc.attempts,
            retryable=exc.retryable,
            method=exc.method,
            url=clean(exc.url),
            detail=clean(exc.detail),
            kind=exc.kind,
        )


_RUNTIME_DEFAULTS: dict[str, Any] = {
    "_runtime": None,
    "_loop_thread": None,  # the async bridge's background loop (see `AsyncBridge`)
}


def _without_runtime(private: dict[str, Any]) -> dict[str, Any]:
    return {k: _RUNTIME_DEFAULTS.get(k, v) for k, v in private.items()}


def merged_params(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``generation_kwargs`` with a call's keyword arguments on top (``None`` values dropped)."""
    params = {**defaults, **overrides} if overrides else dict(defaults)
    return {k: v for k, v in params.items() if v is not None}
